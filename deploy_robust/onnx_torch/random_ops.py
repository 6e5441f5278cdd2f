"""The random ONNX ops (stochastic defenses), in torch, and whether a graph draws random numbers."""

from __future__ import annotations

import onnx
import torch

from deploy_robust.onnx_torch.graph import TORCH_DTYPES, register


# ---- randomness (stochastic defenses) ------------------------------------------------
# Draws come from torch's global generator (seeded by `seed_everything`), fresh on every
# forward, as ONNX Runtime draws fresh on every run. Samples carry no gradient; gradients
# flow through whatever the graph computes from them (attacks average them by EOT).

RANDOM_OPS = frozenset(
    {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}
)


def _random_dtype(attrs, like: torch.Tensor | None) -> torch.dtype:
    if "dtype" in attrs:
        dtype = TORCH_DTYPES[attrs["dtype"]]
    else:
        dtype = like.dtype if like is not None else torch.float32
    return attrs["_float_dtype"] if dtype.is_floating_point and attrs["_float_dtype"] is not None else dtype


@register("RandomNormal", "RandomNormalLike")
def _random_normal(args, attrs):
    like = args[0] if args else None
    shape = like.shape if like is not None else tuple(attrs["shape"])
    noise = torch.randn(shape, dtype=_random_dtype(attrs, like))
    return noise * float(attrs.get("scale", 1.0)) + float(attrs.get("mean", 0.0))


@register("RandomUniform", "RandomUniformLike")
def _random_uniform(args, attrs):
    like = args[0] if args else None
    shape = like.shape if like is not None else tuple(attrs["shape"])
    low, high = float(attrs.get("low", 0.0)), float(attrs.get("high", 1.0))
    return torch.rand(shape, dtype=_random_dtype(attrs, like)) * (high - low) + low


@register("Multinomial")
def _multinomial(args, attrs):
    """Input: unnormalized log-probabilities [batch, classes]; output: sample_size draws with replacement."""
    logits = args[0].detach()
    draws = torch.multinomial(torch.softmax(logits.float(), dim=1), int(attrs.get("sample_size", 1)), replacement=True)
    return draws.to(TORCH_DTYPES[attrs.get("dtype", onnx.TensorProto.INT32)])


@register("Bernoulli")
def _bernoulli(args, attrs):
    p = args[0].detach()
    return torch.bernoulli(p.float()).to(_random_dtype(attrs, p))


def graph_is_stochastic(model: onnx.ModelProto) -> bool:
    """True when the graph draws random numbers on each run (a stochastic defense)."""
    return any(node.op_type in RANDOM_OPS for node in model.graph.node)
