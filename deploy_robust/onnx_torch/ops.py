"""The float ONNX ops, in torch: arithmetic and activations, linear layers, pooling, shapes and data movement."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from deploy_robust.errors import UserError
from deploy_robust.onnx_torch.graph import OPS, TORCH_DTYPES, Handler, as_ints, as_tensor, is_static, register


# ---- arithmetic and activations -------------------------------------------------------


def _binary(fn: Callable, np_fn: Callable) -> Handler:
    def run(args, attrs):
        a, b = args
        if is_static(a) and is_static(b):
            return np_fn(np.asarray(a), np.asarray(b))
        a, b = (as_tensor(v) if is_static(v) else v for v in (a, b))
        return fn(a, b)

    return run


OPS["Add"] = _binary(torch.add, np.add)
OPS["Sub"] = _binary(torch.sub, np.subtract)
OPS["Mul"] = _binary(torch.mul, np.multiply)
OPS["Div"] = _binary(
    lambda a, b: torch.div(a, b) if a.is_floating_point() else torch.div(a, b, rounding_mode="trunc"),
    lambda a, b: a / b if a.dtype.kind == "f" else np.trunc(a / b).astype(a.dtype),
)
OPS["Pow"] = _binary(torch.pow, np.power)
OPS["Max"] = _binary(torch.maximum, np.maximum)
OPS["Min"] = _binary(torch.minimum, np.minimum)

OPS["Less"] = _binary(torch.lt, np.less)
OPS["Greater"] = _binary(torch.gt, np.greater)
OPS["Equal"] = _binary(torch.eq, np.equal)
OPS["LessOrEqual"] = _binary(torch.le, np.less_equal)
OPS["GreaterOrEqual"] = _binary(torch.ge, np.greater_equal)

for _op, _fn in {
    "Relu": F.relu,
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
    "Neg": torch.neg,
    "Exp": torch.exp,
    "Log": torch.log,
    "Sqrt": torch.sqrt,
    "Erf": torch.erf,
    "Abs": torch.abs,
    "Softplus": F.softplus,
    "Identity": lambda x: x,
}.items():
    OPS[_op] = (lambda fn: lambda args, attrs: fn(args[0]))(_fn)


def _piecewise_constant(fn):
    def run(args, attrs):
        x = args[0]
        if attrs.get("_ste") and isinstance(x, torch.Tensor) and x.is_floating_point():
            return x + (fn(x) - x).detach()  # forward exact, backward identity (BPDA)
        return fn(x)

    return run


for _op, _fn in {"Round": torch.round, "Floor": torch.floor, "Ceil": torch.ceil, "Sign": torch.sign}.items():
    OPS[_op] = _piecewise_constant(_fn)


@register("LeakyRelu")
def _leaky_relu(args, attrs):
    return F.leaky_relu(args[0], attrs.get("alpha", 0.01))


@register("HardSigmoid")
def _hard_sigmoid(args, attrs):
    return torch.clamp(attrs.get("alpha", 0.2) * args[0] + attrs.get("beta", 0.5), 0, 1)


@register("HardSwish")
def _hard_swish(args, attrs):
    return F.hardswish(args[0])


@register("Gelu")
def _gelu(args, attrs):
    return F.gelu(args[0], approximate=attrs.get("approximate", "none"))


@register("Clip")
def _clip(args, attrs):
    x = args[0]
    lo = args[1] if len(args) > 1 and args[1] is not None else attrs.get("min")
    hi = args[2] if len(args) > 2 and args[2] is not None else attrs.get("max")
    lo = float(np.asarray(lo)) if lo is not None and is_static(lo) else lo
    hi = float(np.asarray(hi)) if hi is not None and is_static(hi) else hi
    return torch.clamp(x, lo, hi)


@register("LogSoftmax")
def _log_softmax(args, attrs):
    return torch.log_softmax(args[0], dim=attrs.get("axis", -1))


@register("Softmax")
def _softmax_only(args, attrs):
    return torch.softmax(args[0], dim=attrs.get("axis", -1))


@register("Dropout")
def _dropout(args, attrs):
    return args[0]


# ---- linear layers ----------------------------------------------------------------------


def _split_pads(pads: list[int], spatial: int) -> tuple[list[int] | None, list[int]]:
    """ONNX pads (begins then ends) -> symmetric per-dim padding, or None and an F.pad list."""
    begins, ends = pads[:spatial], pads[spatial:]
    if begins == ends:
        return begins, []
    pad_list: list[int] = []
    for b, e in zip(reversed(begins), reversed(ends)):
        pad_list += [b, e]
    return None, pad_list


def _auto_pads(attrs: dict, x: torch.Tensor, kernel: list[int], strides: list[int], dilations: list[int]) -> list[int]:
    auto = attrs.get("auto_pad", "NOTSET")
    spatial = len(kernel)
    if auto in ("NOTSET", "VALID"):
        return list(attrs.get("pads", [0] * 2 * spatial)) if auto == "NOTSET" else [0] * 2 * spatial
    begins, ends = [], []
    for i in range(spatial):
        size = x.shape[2 + i]
        out = math.ceil(size / strides[i])
        total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size)
        small, large = total // 2, total - total // 2
        begins.append(small if auto == "SAME_UPPER" else large)
        ends.append(large if auto == "SAME_UPPER" else small)
    return begins + ends


@register("Conv")
def _conv(args, attrs):
    x, w = args[0], args[1]
    b = args[2] if len(args) > 2 else None
    spatial = w.dim() - 2
    kernel = list(attrs.get("kernel_shape", w.shape[2:]))
    strides = list(attrs.get("strides", [1] * spatial))
    dilations = list(attrs.get("dilations", [1] * spatial))
    padding, pad_list = _split_pads(_auto_pads(attrs, x, kernel, strides, dilations), spatial)
    if pad_list:
        x, padding = F.pad(x, pad_list), [0] * spatial
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[spatial]
    return conv(x, w, b, strides, padding, dilations, attrs.get("group", 1))


@register("Gemm")
def _gemm(args, attrs):
    a, b = args[0], args[1]
    c = args[2] if len(args) > 2 else None
    if attrs.get("transA", 0):
        a = a.transpose(0, 1)
    if attrs.get("transB", 0):
        b = b.transpose(0, 1)
    y = attrs.get("alpha", 1.0) * (a @ b)
    if c is not None:
        y = y + attrs.get("beta", 1.0) * c
    return y


@register("MatMul")
def _matmul(args, attrs):
    return torch.matmul(args[0], args[1])


@register("BatchNormalization")
def _batchnorm(args, attrs):
    x, scale, bias, mean, var = args[:5]
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=attrs.get("epsilon", 1e-5))


# ---- pooling ---------------------------------------------------------------------------


def _pool_geometry(args, attrs, pad_value: float = 0.0):
    """Input (explicitly padded if the pads are asymmetric), kernel, strides and symmetric padding."""
    x = args[0]
    kernel = list(attrs["kernel_shape"])
    spatial = len(kernel)
    strides = list(attrs.get("strides", [1] * spatial))
    dilations = list(attrs.get("dilations", [1] * spatial))
    padding, pad_list = _split_pads(_auto_pads(attrs, x, kernel, strides, dilations), spatial)
    if pad_list:
        x, padding = F.pad(x, pad_list, value=pad_value), [0] * spatial
    return x, kernel, strides, padding, dilations, bool(pad_list)


@register("MaxPool")
def _maxpool(args, attrs):
    x, kernel, strides, padding, dilations, _ = _pool_geometry(args, attrs, pad_value=float("-inf"))
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[len(kernel)]
    return pool(x, kernel, strides, padding, dilations, ceil_mode=bool(attrs.get("ceil_mode", 0)))


@register("AveragePool")
def _avgpool(args, attrs):
    include_pad = bool(attrs.get("count_include_pad", 0))
    x, kernel, strides, padding, _, padded = _pool_geometry(args, attrs)
    if padded and not include_pad:
        raise UserError(
            f"AveragePool node {attrs['_node']}: asymmetric padding without count_include_pad is not supported"
        )
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[len(kernel)]
    return pool(x, kernel, strides, padding, ceil_mode=bool(attrs.get("ceil_mode", 0)), count_include_pad=include_pad)


@register("GlobalAveragePool")
def _global_avgpool(args, attrs):
    x = args[0]
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


@register("GlobalMaxPool")
def _global_maxpool(args, attrs):
    x = args[0]
    return x.amax(dim=tuple(range(2, x.dim())), keepdim=True)


@register("ReduceMean", "ReduceSum", "ReduceMax")
def _reduce(args, attrs):
    x = args[0]
    axes = attrs.get("axes")
    if axes is None and len(args) > 1 and args[1] is not None:
        axes = as_ints(args[1])
    dims = tuple(axes) if axes else tuple(range(x.dim()))
    keep = bool(attrs.get("keepdims", 1))
    op = attrs["_op"]
    if op == "ReduceMean":
        return x.mean(dim=dims, keepdim=keep)
    if op == "ReduceSum":
        return x.sum(dim=dims, keepdim=keep)
    return x.amax(dim=dims, keepdim=keep)


# ---- shapes and data movement -----------------------------------------------------------


@register("Flatten")
def _flatten(args, attrs):
    x = args[0]
    axis = attrs.get("axis", 1)
    axis = axis + x.dim() if axis < 0 else axis
    return x.reshape(math.prod(x.shape[:axis]) if axis else 1, -1)


@register("Reshape")
def _reshape(args, attrs):
    x, shape = args[0], as_ints(args[1]) if not isinstance(args[1], list) else list(args[1])
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    if is_static(x):
        return np.reshape(x, shape)
    return x.reshape(shape)


@register("Transpose")
def _transpose(args, attrs):
    x = args[0]
    perm = attrs.get("perm", list(reversed(range(x.dim() if not is_static(x) else np.ndim(x)))))
    return np.transpose(x, perm) if is_static(x) else x.permute(*perm)


@register("Shape")
def _shape(args, attrs):
    # Static: a list of ints (or symbolic sizes while exporting), never a data tensor.
    dims = list(args[0].shape)
    start, end = attrs.get("start", 0), attrs.get("end", len(dims))
    return dims[start:end]


@register("Gather")
def _gather(args, attrs):
    data, index = args
    axis = attrs.get("axis", 0)
    if is_static(data) and is_static(index):
        if isinstance(data, list) and axis == 0:
            idx = np.asarray(index)
            return data[int(idx)] if idx.ndim == 0 else [data[int(i)] for i in idx]
        return np.take(np.asarray(data), np.asarray(index), axis=axis)
    index = as_tensor(index) if is_static(index) else index
    return torch.index_select(data, axis, index.reshape(-1)).reshape(
        list(data.shape[:axis]) + list(index.shape) + list(data.shape[axis + 1 :])
    )


@register("Unsqueeze")
def _unsqueeze(args, attrs):
    x = args[0]
    axes = attrs.get("axes") or as_ints(args[1])
    if is_static(x):
        # Shape arithmetic: a scalar size becomes a one-element list for Concat.
        if isinstance(x, list):
            return x
        if isinstance(x, np.ndarray) and x.ndim > 0:
            return np.expand_dims(x, axes)
        return [x.item() if isinstance(x, np.ndarray) else x]
    for a in sorted(a + x.dim() + 1 if a < 0 else a for a in axes):
        x = x.unsqueeze(a)
    return x


@register("Squeeze")
def _squeeze(args, attrs):
    x = args[0]
    axes = attrs.get("axes") or (as_ints(args[1]) if len(args) > 1 and args[1] is not None else None)
    if is_static(x):
        return np.squeeze(np.asarray(x), axis=tuple(axes) if axes else None)
    if axes is None:
        return x.squeeze()
    for a in sorted((a + x.dim() if a < 0 else a for a in axes), reverse=True):
        x = x.squeeze(a)
    return x


@register("Concat")
def _concat(args, attrs):
    if all(is_static(a) for a in args):
        flat: list = []
        for a in args:
            if isinstance(a, list):
                flat += a
            elif isinstance(a, np.ndarray):
                flat += a.reshape(-1).tolist()
            else:
                flat.append(a)
        return flat
    return torch.cat([as_tensor(a) if is_static(a) else a for a in args], dim=attrs.get("axis", 0))


@register("Slice")
def _slice(args, attrs):
    x = args[0]
    starts, ends = as_ints(args[1]), as_ints(args[2])
    rank = len(x) if isinstance(x, list) else (np.ndim(x) if is_static(x) else x.dim())
    axes = as_ints(args[3]) if len(args) > 3 and args[3] is not None else list(range(len(starts)))
    steps = as_ints(args[4]) if len(args) > 4 and args[4] is not None else [1] * len(starts)
    index = [slice(None)] * rank
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[a] = slice(s, e, st)
    if isinstance(x, list):
        return x[index[0]]
    return x[tuple(index)]


@register("Constant")
def _constant(args, attrs):
    if "value" in attrs:
        value = attrs["value"]
        if value.dtype.kind == "f":
            tensor = torch.from_numpy(np.array(value))
            return tensor.to(attrs["_float_dtype"]) if attrs["_float_dtype"] else tensor
        return value
    for key in ("value_float", "value_int"):
        if key in attrs:
            return np.asarray(attrs[key])
    for key in ("value_floats", "value_ints"):
        if key in attrs:
            return np.asarray(attrs[key])
    raise UserError(f"Constant node {attrs['_node']}: unsupported value attribute")


@register("Cast")
def _cast(args, attrs):
    x, to = args[0], attrs["to"]
    if is_static(x):
        return np.asarray(x).astype(onnx.helper.tensor_dtype_to_np_dtype(to))
    dtype = TORCH_DTYPES.get(to)
    if dtype is None:
        raise UserError(f"Cast node {attrs['_node']}: unsupported target type {to}")
    if dtype.is_floating_point and attrs["_float_dtype"] is not None:
        dtype = attrs["_float_dtype"]
    return x.to(dtype)


@register("Where")
def _where(args, attrs):
    cond, a, b = args
    if all(is_static(v) for v in args):
        return np.where(cond, a, b)
    cond, a, b = (as_tensor(v) if is_static(v) else v for v in (cond, a, b))
    return torch.where(cond, a, b)


@register("Not")
def _not(args, attrs):
    return np.logical_not(args[0]) if is_static(args[0]) else torch.logical_not(args[0])


@register("ArgMax")
def _argmax(args, attrs):
    if attrs.get("select_last_index"):
        raise UserError(f"ArgMax node {attrs['_node']}: select_last_index is not supported")
    return torch.argmax(args[0], dim=int(attrs.get("axis", 0)), keepdim=bool(attrs.get("keepdims", 1)))


@register("TopK")
def _topk(args, attrs):
    x, k = args[0], int(np.asarray(args[1]).reshape(-1)[0])
    values, indices = torch.topk(
        x, k, dim=int(attrs.get("axis", -1)), largest=bool(attrs.get("largest", 1)), sorted=bool(attrs.get("sorted", 1))
    )
    return values, indices


@register("ConstantOfShape")
def _constant_of_shape(args, attrs):
    value = attrs.get("value", np.zeros(1, dtype=np.float32))
    shape = as_ints(args[0])
    if value.dtype.kind == "f":
        return torch.full(shape, float(value.reshape(-1)[0]), dtype=attrs["_float_dtype"] or torch.float32)
    return np.full(shape, value.reshape(-1)[0], dtype=value.dtype)


@register("Expand")
def _expand(args, attrs):
    x, shape = args[0], as_ints(args[1])
    if is_static(x):
        return np.broadcast_to(np.asarray(x), np.broadcast_shapes(np.shape(x), tuple(shape))).copy()
    target = torch.broadcast_shapes(x.shape, tuple(shape))
    return x.expand(target)


@register("CumSum")
def _cumsum(args, attrs):
    x, axis = args[0], int(np.asarray(args[1]).reshape(-1)[0])
    if attrs.get("exclusive") or attrs.get("reverse"):
        raise UserError(f"CumSum node {attrs['_node']}: exclusive/reverse modes are not supported")
    return torch.cumsum(x, dim=axis)


@register("ScatterElements")
def _scatter_elements(args, attrs):
    data, indices, updates = args
    axis = int(attrs.get("axis", 0))
    indices = as_tensor(indices).long() if is_static(indices) else indices.long()
    indices = torch.where(indices < 0, indices + data.shape[axis], indices)
    updates = as_tensor(updates) if is_static(updates) else updates
    reduction = attrs.get("reduction", "none")
    if reduction == "none":
        return data.scatter(axis, indices, updates.to(data.dtype))
    return data.scatter_reduce(
        axis,
        indices,
        updates.to(data.dtype),
        reduce={"add": "sum", "mul": "prod"}.get(reduction, reduction),
        include_self=True,
    )


@register("Pad")
def _pad(args, attrs):
    x = args[0]
    pads = attrs.get("pads") or as_ints(args[1])
    mode = attrs.get("mode", "constant")
    value = 0.0
    if len(args) > 2 and args[2] is not None:
        value = float(np.asarray(args[2]).reshape(-1)[0]) if is_static(args[2]) else float(args[2])
    rank = x.dim()
    begins, ends = pads[:rank], pads[rank:]
    pad_list: list[int] = []
    for b, e in zip(reversed(begins), reversed(ends)):
        pad_list += [b, e]
    return F.pad(
        x,
        pad_list,
        mode={"constant": "constant", "reflect": "reflect", "edge": "replicate"}[mode],
        value=value if mode == "constant" else None,
    )
