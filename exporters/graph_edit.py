"""Small editing helpers over an ONNX graph: who produces and consumes a tensor, fresh names, rewiring."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper


class GraphEditor:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.graph = model.graph
        self.inits = {i.name: i for i in self.graph.initializer}
        self._names = {n for node in self.graph.node for n in (*node.input, *node.output)} | set(self.inits)
        self._names |= {i.name for i in self.graph.input} | {o.name for o in self.graph.output}
        self._node_names = {n.name for n in self.graph.node}
        self.refresh()

    def refresh(self) -> None:
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in self.graph.node:
            for out in node.output:
                self.producer[out] = node
            for inp in node.input:
                if inp:
                    self.consumers[inp].append(node)

    def fresh(self, base: str) -> str:
        name, i = base, 0
        while name in self._names or name in self._node_names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    def add_initializer(self, base: str, array: np.ndarray) -> str:
        name = self.fresh(base)
        tensor = numpy_helper.from_array(np.asarray(array), name)
        self.graph.initializer.append(tensor)
        self.inits[name] = tensor
        return name

    def remove_unused_initializers(self) -> None:
        used = {i for node in self.graph.node for i in node.input}
        keep = [i for i in self.graph.initializer if i.name in used]
        del self.graph.initializer[:]
        self.graph.initializer.extend(keep)
        self.inits = {i.name: i for i in keep}

    def make_node(self, op: str, inputs: list[str], outputs: list[str], base: str, **attrs) -> onnx.NodeProto:
        return helper.make_node(op, inputs, outputs, name=self.fresh(base), **attrs)

    def topological_sort(self) -> None:
        """Reorder nodes so that every input is produced before use (after insertions)."""
        available = {i.name for i in self.graph.input} | set(self.inits) | {""}
        pending = list(self.graph.node)
        ordered = []
        while pending:
            progressed = False
            rest = []
            for node in pending:
                if all(i in available for i in node.input):
                    ordered.append(node)
                    available.update(node.output)
                    progressed = True
                else:
                    rest.append(node)
            if not progressed:
                raise RuntimeError(f"graph has a cycle or a missing input near {rest[0].name}")
            pending = rest
        del self.graph.node[:]
        self.graph.node.extend(ordered)
        self.refresh()


def int4_tensor(name: str, values: np.ndarray) -> onnx.TensorProto:
    """An ONNX INT4 tensor from int8 values in [-8, 7], packed two per byte, low nibble first."""
    flat = values.astype(np.int8).reshape(-1)
    nibbles = (flat & 0x0F).astype(np.uint8)
    if len(nibbles) % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    packed = nibbles[0::2] | (nibbles[1::2] << 4)
    return helper.make_tensor(name, onnx.TensorProto.INT4, list(values.shape), packed.tobytes(), raw=True)
