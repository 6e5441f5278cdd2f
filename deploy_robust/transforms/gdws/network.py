"""GDWS for a whole network: find the convolutions to rewrite, allocate, rewrite them.

`plan_gdws(model, shape, beta=... | budget=...)` decides; `apply_gdws(model, plan)` rewrites.

- `beta`: the paper's network-level rule, the same weighted error for every layer (LEGO).
- `budget` R (fraction of the rewritable convolutions' MACs to keep), `allocation="per-layer"`
  (default): every rewritable conv keeps R of its MACs, MEGO inside each layer. Measured
  better here than one common beta (`benchmarks/gdws_sweep.py`): errors of raw weights do not
  compare across layers when BatchNorm rescales them, and the noise-gain weights are
  first-order estimates that break down far from the weights.
- `budget` R, `allocation="global"`: the smallest common beta whose allocation fits, searched
  over the exact points where some layer's allocation changes.

A convolution is rewritten only when it is a plain `nn.Conv2d` with groups = 1 and zero
padding, it is not the first convolution (default) and not 1x1 (default), and the GDWS cost
G (Kh Kw + M) is below the original M C Kh Kw per output pixel. A BatchNorm that directly
follows a rewritten conv is folded into the pointwise conv after the decomposition (the
allocation is computed on the raw weight, as in the paper).

G is rounded to a multiple of `channel_multiple` (default 16) where that moves it by at most
1/8: up for a beta (keeping the next-best components lowers the error), down for a budget
(so the budget holds); small layers, where rounding would be coarse and speed is not at
stake, keep the exact allocation. ONNX Runtime's blocked CPU kernels (NCHWc) take a
convolution only when its channel count divides by the SIMD width (8 floats on AVX2, 16 on
AVX-512); off the blocked path its depthwise kernel measured 17x slower here (a G=3046 vs
G=3048 depthwise conv at 4x4, batch 32: 22.9 ms vs 1.4 ms).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from deploy_robust.errors import UserError
from deploy_robust.model.surgery import batchnorm_after_conv, batchnorm_scale, set_module
from deploy_robust.transforms.gdws.decompose import channel_svd, factorize, lego, mego, weighted_error
from deploy_robust.transforms.gdws.layer import GDWSConv2d


CHANNEL_MULTIPLE = 16
ALLOCATIONS = ("per-layer", "global")


@dataclass
class LayerDecision:
    """One convolution's GDWS decision; `allocation` is empty when it is kept as it is."""

    name: str
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    output_pixels: int
    original_macs: int
    allocation: list[int] = field(default_factory=list)
    error: float = 0.0
    reason: str = ""
    folded_bn: str | None = None

    @property
    def replaced(self) -> bool:
        return bool(self.allocation)

    @property
    def rewritable(self) -> bool:
        """Not skipped by the layer rules (it may still be kept when GDWS would not save MACs)."""
        return not self.reason.startswith("skipped")

    @property
    def width(self) -> int:
        return sum(self.allocation)

    @property
    def macs(self) -> int:
        if not self.replaced:
            return self.original_macs
        kh, kw = self.kernel
        return self.width * (kh * kw + self.out_channels) * self.output_pixels

    def histogram(self) -> dict[int, int]:
        """{g: number of input channels with g_c = g}."""
        values, counts = np.unique(np.asarray(self.allocation, np.int64), return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts)}

    def to_json(self) -> dict[str, Any]:
        doc = {
            "name": self.name,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel": list(self.kernel),
            "stride": list(self.stride),
            "replaced": self.replaced,
            "original_macs": self.original_macs,
            "macs": self.macs,
            "reason": self.reason,
        }
        if self.replaced:
            doc |= {
                "G": self.width,
                "mac_ratio": self.original_macs / self.macs,
                "weighted_error": self.error,
                "g_histogram": {str(k): v for k, v in self.histogram().items()},
                "allocation": self.allocation,
                "folded_bn": self.folded_bn,
            }
        return doc


@dataclass
class GDWSPlan:
    layers: list[LayerDecision]
    beta: float
    budget: float | None
    alphas: dict[str, Any] | None  # how the channel weights were estimated; None = plain Frobenius error
    model_macs: int  # MACs of every conv and linear layer of the original model
    channel_multiple: int = 1  # G rounded to a multiple of this where cheap
    allocation: str = "global"  # how a budget was shared: "per-layer" or "global" (one beta)

    @property
    def replaced(self) -> list[LayerDecision]:
        return [layer for layer in self.layers if layer.replaced]

    def macs(self) -> int:
        """Whole-model MACs (convs and linears) after the rewrite."""
        return self.model_macs - sum(layer.original_macs - layer.macs for layer in self.layers)

    def to_json(self) -> dict[str, Any]:
        eligible = [layer for layer in self.layers if layer.rewritable]
        before = sum(layer.original_macs for layer in eligible)
        after = sum(layer.macs for layer in eligible)
        return {
            "beta": self.beta,
            "budget": self.budget,
            "allocation": self.allocation,
            "alphas": self.alphas,
            "channel_multiple": self.channel_multiple,
            "rewritable_macs": {"original": before, "gdws": after, "ratio": before / max(after, 1)},
            "model_macs": {
                "original": self.model_macs,
                "gdws": self.macs(),
                "ratio": self.model_macs / max(self.macs(), 1),
            },
            "layers": [layer.to_json() for layer in self.layers],
        }


# ---- finding the layers ---------------------------------------------------------------------


def conv_geometry(model: nn.Module, shape: tuple[int, ...]) -> tuple[list[tuple[str, nn.Conv2d, int]], int]:
    """([(name, conv, output pixels)] in execution order, whole-model conv+linear MACs) from one forward."""
    names = {id(m): n for n, m in model.named_modules()}
    seen: list[tuple[str, nn.Conv2d, int]] = []
    macs = [0]

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            if type(module) is nn.Conv2d and all(n != names[id(module)] for n, _, _ in seen):
                seen.append((names[id(module)], module, int(output.shape[-2] * output.shape[-1])))
            kh, kw = module.kernel_size
            macs[0] += (
                module.out_channels
                * module.in_channels
                // module.groups
                * kh
                * kw
                * int(output.shape[-2] * output.shape[-1])
            )
        elif isinstance(module, nn.Linear):
            macs[0] += module.in_features * module.out_features * int(np.prod(output.shape[1:-1], dtype=np.int64))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *shape))
    finally:
        for h in handles:
            h.remove()
    return seen, macs[0]


def _skip_reason(
    name: str, conv: nn.Conv2d, first: bool, skip: list[str], include_first: bool, include_pointwise: bool
) -> str:
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in skip):
        return "skipped: named in the skip list"
    if first and not include_first:
        return "skipped: first convolution (its few input channels give little to save)"
    if conv.kernel_size == (1, 1) and not include_pointwise:
        return "skipped: 1x1 convolution"
    if conv.groups != 1:
        return f"skipped: grouped convolution (groups={conv.groups})"
    if conv.padding_mode != "zeros":
        return f"skipped: padding mode {conv.padding_mode}"
    return ""


# ---- planning -------------------------------------------------------------------------------


def find_layers(
    model: nn.Module,
    shape: tuple[int, ...],
    *,
    skip: list[str] | None = None,
    include_first: bool = False,
    include_pointwise: bool = False,
) -> tuple[list[LayerDecision], dict[str, nn.Conv2d], int]:
    """(a decision per conv, skipped ones with their reason; {name: conv} of the rewritable ones;
    whole-model conv+linear MACs), from one forward pass and no decomposition."""
    convs, model_macs = conv_geometry(model, shape)
    layers, rewritable = [], {}
    for position, (name, conv, pixels) in enumerate(convs):
        kh, kw = conv.kernel_size
        original = conv.out_channels * conv.in_channels * kh * kw * pixels
        decision = LayerDecision(
            name, conv.in_channels, conv.out_channels, (kh, kw), tuple(conv.stride), pixels, original
        )
        decision.reason = _skip_reason(name, conv, position == 0, skip or [], include_first, include_pointwise)
        if decision.rewritable:
            rewritable[name] = conv
        layers.append(decision)
    if not rewritable:
        raise UserError(
            "the model has no convolution GDWS can rewrite (plain nn.Conv2d, KxK with K > 1, groups=1, not the first)"
        )
    return layers, rewritable, model_macs


def plan_gdws(
    model: nn.Module,
    shape: tuple[int, ...],
    *,
    beta: float | None = None,
    budget: float | None = None,
    alphas: dict[str, np.ndarray] | None = None,
    alpha_info: dict[str, Any] | None = None,
    skip: list[str] | None = None,
    include_first: bool = False,
    include_pointwise: bool = False,
    channel_multiple: int = CHANNEL_MULTIPLE,
    allocation: str = "per-layer",
) -> GDWSPlan:
    """Decide every convolution's allocation for one `beta`, or for the MAC `budget` (a fraction in (0, 1]).

    With a budget, `allocation` says how it is shared: "per-layer" (every rewritable conv keeps
    that fraction of its MACs; MEGO inside each layer) or "global" (the paper's one common
    beta, the smallest that fits). A beta is always global.
    """
    if (beta is None) == (budget is None):
        raise UserError("GDWS needs exactly one of beta (error per layer) or budget (fraction of MACs to keep)")
    if allocation not in ALLOCATIONS:
        raise UserError(f"GDWS allocation must be one of {', '.join(ALLOCATIONS)}; got {allocation}")
    if beta is not None:
        allocation = "global"
    if beta is not None and not (np.isfinite(beta) and beta >= 0):
        raise UserError(f"GDWS beta must be a number >= 0; got {beta}")
    if budget is not None and not 0 < budget <= 1:
        raise UserError(f"GDWS budget is the fraction of MACs to keep, in (0, 1]; got {budget}")
    layers, rewritable, model_macs = find_layers(
        model, shape, skip=skip, include_first=include_first, include_pointwise=include_pointwise
    )
    scores = {}
    for name, conv in rewritable.items():
        alpha = None if alphas is None else alphas.get(name)
        if alphas is not None and alpha is None:
            raise UserError(f"the GDWS channel weights (alphas) have no entry for layer {name}")
        scores[name] = channel_svd(conv.weight).scores(alpha)
    if channel_multiple < 1:
        raise UserError(f"GDWS channel multiple must be >= 1; got {channel_multiple}")
    if allocation == "per-layer":
        for layer in layers:
            if layer.name in scores:
                _allocate_per_layer(layer, scores[layer.name], budget, channel_multiple)
        beta = max((layer.error for layer in layers if layer.replaced), default=0.0)
    else:
        if budget is not None:
            beta = _beta_for_budget(layers, scores, budget, channel_multiple)
        for layer in layers:
            if layer.name in scores:
                _allocate(layer, scores[layer.name], beta, channel_multiple)
    return GDWSPlan(layers, float(beta), budget, alpha_info, model_macs, channel_multiple, allocation)


def _allocate(layer: LayerDecision, scores: np.ndarray, beta: float, multiple: int) -> None:
    """Global rule: LEGO at `beta`, G rounded up to the channel multiple where that is cheap."""
    width = max(int(lego(scores, beta).sum()), 1)  # beta above the whole error still keeps one filter
    rounded = min(-(-width // multiple) * multiple, scores.size)
    if 8 * (rounded - width) <= width:  # only where it costs at most 1/8 more filters (small layers stay exact)
        width = rounded
    _set_width(layer, scores, width)


def _allocate_per_layer(layer: LayerDecision, scores: np.ndarray, budget: float, multiple: int) -> None:
    """Per-layer rule: the largest G within `budget` x this layer's MACs, rounded down to the multiple where cheap."""
    kh, kw = layer.kernel
    width = int(budget * layer.out_channels * layer.in_channels * kh * kw // (kh * kw + layer.out_channels))
    width = min(max(width, 1), scores.size)
    rounded = width // multiple * multiple
    if rounded and 8 * (width - rounded) <= width:
        width = rounded
    _set_width(layer, scores, width)


def _set_width(layer: LayerDecision, scores: np.ndarray, width: int) -> None:
    """MEGO at G = width; the conv stays as it is when that would not save MACs."""
    allocation = mego(scores, width)
    kh, kw = layer.kernel
    cost = int(allocation.sum()) * (kh * kw + layer.out_channels)
    if cost >= layer.out_channels * layer.in_channels * kh * kw:
        layer.allocation, layer.error = [], 0.0
        layer.reason = f"kept: G={int(allocation.sum())} would not save MACs"
        return
    layer.allocation = allocation.tolist()
    layer.error = weighted_error(scores, allocation)
    layer.reason = "rewritten"


def _beta_for_budget(layers: list[LayerDecision], scores: dict[str, np.ndarray], budget: float, multiple: int) -> float:
    """The smallest beta at which the rewritable layers' MACs fit in `budget` x their original MACs."""
    candidates = np.unique(np.concatenate([[0.0]] + [np.cumsum(np.sort(s.reshape(-1))) for s in scores.values()]))
    by_name = {layer.name: layer for layer in layers}
    target = budget * sum(by_name[name].original_macs for name in scores)

    def macs(beta: float) -> int:
        total = 0
        for name, s in scores.items():
            probe = replace(by_name[name])  # a scratch copy: _allocate sets its allocation
            _allocate(probe, s, beta, multiple)
            total += probe.macs
        return total

    lo, hi = 0, len(candidates) - 1
    if macs(candidates[hi]) > target:
        raise UserError(
            f"GDWS cannot reach a budget of {budget:g}: even one filter per layer costs "
            f"{macs(candidates[hi]) / (target / budget):.3f} of the original MACs"
        )
    while lo < hi:  # MACs never grow with beta
        mid = (lo + hi) // 2
        if macs(candidates[mid]) <= target:
            hi = mid
        else:
            lo = mid + 1
    return float(candidates[lo])


# ---- rewriting ------------------------------------------------------------------------------


def apply_gdws(model: nn.Module, plan: GDWSPlan, *, fold_bn: bool = True) -> nn.Module:
    """Rewrite `model` in place following `plan`; returns it. Folds a directly following BatchNorm."""
    modules = dict(model.named_modules())
    followers = batchnorm_after_conv(model) if fold_bn else {}
    for layer in plan.replaced:
        conv = modules[layer.name]
        bn_name = followers.get(layer.name)
        if bn_name is None:
            set_module(model, layer.name, gdws_conv(conv, layer.allocation))
            continue
        depthwise, pointwise = factorize(channel_svd(conv.weight), np.asarray(layer.allocation))[:2]
        bn = modules[bn_name]
        scale = batchnorm_scale(bn)  # folded in double precision, as the factors are computed
        shift = bn.bias.detach().double() - bn.running_mean.double() * scale
        bias = shift + (conv.bias.detach().double() * scale if conv.bias is not None else 0)
        gdws = GDWSConv2d.like(conv, layer.allocation)
        gdws.pointwise = nn.Conv2d(gdws.width, layer.out_channels, 1, bias=True)
        _load_factors(gdws, conv, depthwise, torch.from_numpy(pointwise) * scale[:, None], bias)
        set_module(model, bn_name, nn.Identity())
        layer.folded_bn = bn_name
        set_module(model, layer.name, gdws)
    return model


def gdws_conv(conv: nn.Conv2d, allocation: list[int] | np.ndarray) -> GDWSConv2d:
    """`conv` rewritten with the given allocation (the truncated SVD of each input channel's filters): a drop-in
    for it, computing what it computes up to the approximation (a BatchNorm after it is left as it is)."""
    depthwise, pointwise = factorize(channel_svd(conv.weight), np.asarray(allocation))[:2]
    bias = conv.bias.detach().double() if conv.bias is not None else None
    gdws = GDWSConv2d.like(conv, allocation)
    _load_factors(gdws, conv, depthwise, torch.from_numpy(pointwise), bias)
    return gdws


def _load_factors(gdws: GDWSConv2d, conv: nn.Conv2d, depthwise: np.ndarray, pointwise: torch.Tensor, bias) -> None:
    """Put the factors into `gdws`, in `conv`'s dtype, training mode and requires_grad."""
    with torch.no_grad():
        gdws.depthwise.weight.copy_(torch.from_numpy(depthwise))
        gdws.pointwise.weight.copy_(pointwise.reshape(conv.out_channels, -1, 1, 1))
        if bias is not None:
            gdws.pointwise.bias.copy_(bias)
    gdws.to(conv.weight.dtype).train(conv.training)
    for p in gdws.parameters():
        p.requires_grad_(conv.weight.requires_grad)


def chosen_layers(model: nn.Module, shape: tuple[int, ...], allocations: dict[str, list[int]]) -> GDWSPlan:
    """A plan rewriting exactly the layers of `allocations` (layer -> g_c per input channel, e.g. each taken from a
    whole-model plan at its own budget: per-layer allocation makes every layer's decision its own), the others
    kept; for `apply_gdws`."""
    layers, _, model_macs = find_layers(model, shape)
    unknown = set(allocations) - {layer.name for layer in layers}
    if unknown:
        raise UserError(f"GDWS allocations name layers that are not convolutions of the model: {sorted(unknown)}")
    for layer in layers:
        if layer.name in allocations:
            layer.allocation, layer.reason = [int(g) for g in allocations[layer.name]], "rewritten"
        elif layer.rewritable:
            layer.reason = "kept: not chosen"
    return GDWSPlan(layers, 0.0, None, None, model_macs, 1, "per-layer")


def restructure(model: nn.Module, plan_doc: dict[str, Any]) -> nn.Module:
    """Give an untrained `model` the module structure a saved GDWS plan describes (weights come after)."""
    modules = dict(model.named_modules())
    for layer in plan_doc["layers"]:
        if not layer["replaced"]:
            continue
        conv = modules.get(layer["name"])
        if type(conv) is not nn.Conv2d:
            raise UserError(f"the GDWS plan rewrites {layer['name']}, which is not a convolution of this architecture")
        gdws = GDWSConv2d.like(conv, layer["allocation"])
        if layer.get("folded_bn"):
            gdws.pointwise = nn.Conv2d(gdws.width, conv.out_channels, 1, bias=True)
            set_module(model, layer["folded_bn"], nn.Identity())
        set_module(model, layer["name"], gdws)
    return model
