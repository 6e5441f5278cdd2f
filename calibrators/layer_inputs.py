"""Second moments of weighted layers' inputs: the Gram matrix X^T X that error-compensating
weight rounding (`quant.gptq`) minimizes the layer's output error against.

For a Conv, X holds the input patches the kernel sees (im2col rows, one per output position;
columns ordered channel, kernel row, kernel column, as the weight is laid out), one matrix per
group. For a Gemm/MatMul, X is the input itself. Streaming over batches: memory is the Gram
matrices (k x k per layer and group) plus one batch of patches, whatever the number of images.
"""

from __future__ import annotations

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view

from deploy_robust.calibrators.collect import stream_tensors
from deploy_robust.data import Dataset
from deploy_robust.progress import check_deadline


def supports(node: onnx.NodeProto) -> bool:
    """Whether the node's input patches can be formed here (2-D Conv with explicit pads; Gemm without transA)."""
    attrs = {a.name: a for a in node.attribute}
    if node.op_type == "Conv":
        auto_pad = attrs["auto_pad"].s.decode() if "auto_pad" in attrs else "NOTSET"
        return auto_pad == "NOTSET"
    if node.op_type == "Gemm":
        return not (attrs["transA"].i if "transA" in attrs else 0)
    return node.op_type == "MatMul"


def input_grams(
    model: onnx.ModelProto, nodes: list[onnx.NodeProto], dataset: Dataset, batch_size: int = 32
) -> dict[str, np.ndarray]:
    """{node name: float64 array (groups, k, k)} accumulated over `dataset` (nodes `supports` accepts)."""
    nodes = [n for n in nodes if supports(n)]
    if not nodes:
        return {}
    inits = {i.name: i for i in model.graph.initializer}
    grams: dict[str, np.ndarray] = {}
    tensors = sorted({n.input[0] for n in nodes})
    for values in stream_tensors(model, tensors, dataset, batch_size, "weight rounding (input statistics)"):
        for node in nodes:
            check_deadline()  # a tune's budget stops the statistics between layers
            rows = _rows(node, values[node.input[0]], inits[node.input[1]])
            gram = np.matmul(rows.transpose(0, 2, 1), rows).astype(np.float64)
            grams[node.name] = grams[node.name] + gram if node.name in grams else gram
    return grams


def _rows(node: onnx.NodeProto, x: np.ndarray, weight: onnx.TensorProto) -> np.ndarray:
    """The node's input as (groups, rows, k) float32 rows."""
    x = x.astype(np.float32, copy=False)
    if node.op_type != "Conv":
        return x.reshape(1, -1, x.shape[-1])
    attrs = {a.name: list(a.ints) if a.ints else a.i for a in node.attribute}
    kh, kw = weight.dims[2], weight.dims[3]
    pads = attrs.get("pads", [0, 0, 0, 0])
    sh, sw = attrs.get("strides", [1, 1])
    dh, dw = attrs.get("dilations", [1, 1])
    group = attrs.get("group", 1)
    return conv_patches(x, (kh, kw), (sh, sw), pads, (dh, dw), group)


def conv_patches(
    x: np.ndarray,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    pads: list[int],
    dilations: tuple[int, int],
    group: int,
) -> np.ndarray:
    """im2col: (groups, n * out_h * out_w, channels_per_group * kh * kw); pads as ONNX orders them
    (top, left, bottom, right)."""
    n, c = x.shape[:2]
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    padded = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    windows = sliding_window_view(padded, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw, ::dh, ::dw]  # n, c, out_h, out_w, kh, kw
    out_h, out_w = windows.shape[2:4]
    per_group = c // group
    windows = windows.reshape(n, group, per_group, out_h, out_w, kh, kw)
    return windows.transpose(1, 0, 3, 4, 2, 5, 6).reshape(group, n * out_h * out_w, per_group * kh * kw)
