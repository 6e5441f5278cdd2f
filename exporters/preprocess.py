"""Float-graph rewrites before quantization, each exact: the rewritten graph computes the same numbers."""

from __future__ import annotations

import onnx
from onnx import numpy_helper

from deploy_robust.exporters.graph_edit import GraphEditor


def reduce_mean_to_global_pool(model: onnx.ModelProto) -> int:
    """ReduceMean over all spatial axes with keepdims=1 -> GlobalAveragePool (which has an integer kernel)."""
    editor = GraphEditor(model)
    changed = 0
    for node in list(model.graph.node):
        if node.op_type != "ReduceMean":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1] in editor.inits:
            axes = numpy_helper.to_array(editor.inits[node.input[1]]).tolist()
        if attrs.get("keepdims", 1) != 1 or axes is None or sorted(a % 4 for a in axes) != [2, 3]:
            continue
        replacement = onnx.helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output), name=node.name)
        index = list(model.graph.node).index(node)
        model.graph.node.remove(node)
        model.graph.node.insert(index, replacement)
        changed += 1
    if changed:
        GraphEditor(model).remove_unused_initializers()
    return changed
