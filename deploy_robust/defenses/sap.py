"""Stochastic Activation Pruning (Dhillon et al., ICLR 2018), as a layer that exports to ONNX.

After an activation with values h (per example, flattened): p_j = |h_j| / sum_k |h_k|; draw r
units with replacement from Categorical(p), r = round(fraction x units); keep the drawn units
and scale each by 1 / (1 - (1 - p_j)^r), its inverse keep probability, so E[h'] = h. A layer
that is all zero passes through. Applied post hoc, without fine-tuning.

Two sampling modes, both exact draws with replacement:
- random (deployment): torch.multinomial, exported as ONNX `Multinomial` on log p, so ONNX
  Runtime draws a fresh mask on every run;
- seeded (tests): inverse-CDF sampling of r fixed uniforms derived from the seed (a constant
  in the graph), computed with the same elementwise ops in torch and ONNX, so the two agree
  to float rounding. It compares r x units values per example: meant for small layers.

The keep probability is computed without cancellation: log1p(-p) and expm1 by their series
where the argument is small, since ONNX has neither op and 1 - p rounds to 1 for p < 6e-8.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

from deploy_robust.errors import UserError
from deploy_robust.model.kind import ModelKind

_SMALL = 1e-2  # below this, 4-term series are exact to float32 precision (next term ~ x^5 / 5)
_TINY = 1e-30  # keeps log p finite for p = 0 and keep probabilities away from 0


def keep_probability(p: torch.Tensor, draws: int) -> torch.Tensor:
    """1 - (1 - p)^draws, accurately for small p (the units SAP mostly drops)."""
    p2 = p * p
    log1m = torch.where(p < _SMALL, -(p + p2 / 2 + p2 * p / 3 + p2 * p2 / 4), torch.log((1 - p).clamp_min(_TINY)))
    z = draws * log1m  # <= 0
    z2 = z * z
    expm1 = torch.where(z > -_SMALL, z + z2 / 2 + z2 * z / 6 + z2 * z2 / 24, torch.exp(z) - 1)
    return (-expm1).clamp(_TINY, 1.0)


class StochasticActivationPruning(nn.Module):
    """SAP on the activations of one layer, `units` values per example (needed in seeded mode)."""

    def __init__(self, fraction: float = 1.0, seed: int | None = None, units: int | None = None) -> None:
        super().__init__()
        if not 0 < fraction <= 16:
            raise ValueError(f"SAP fraction must be in (0, 16]; got {fraction}")
        if seed is not None and units is None:
            raise ValueError("seeded SAP needs the layer's number of units")
        self.fraction, self.seed = fraction, seed
        uniforms = torch.empty(0)
        if seed is not None:
            uniforms = torch.rand(self.draws(units), generator=torch.Generator().manual_seed(seed))
        self.register_buffer("uniforms", uniforms)

    def extra_repr(self) -> str:
        return f"fraction={self.fraction}, mode={'seeded' if self.seed is not None else 'random'}"

    def draws(self, units: int) -> int:
        return max(1, round(self.fraction * units))

    def _sample(self, p: torch.Tensor, r: int) -> torch.Tensor:
        """[batch, r] unit indices drawn with replacement from Categorical(p)."""
        if self.seed is None:
            return torch.multinomial(p, r, replacement=True)
        # float64 so torch's and ONNX Runtime's summation orders cannot move a draw across a boundary
        cdf = torch.cumsum(p.double(), dim=1)
        below = (cdf[:, None, :] < self.uniforms.double()[None, :, None] * cdf[:, -1:, None]).long()
        return below.sum(2).clamp(max=p.shape[1] - 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        flat = h.flatten(1)
        r = self.draws(flat.shape[1])
        magnitude = flat.abs()
        total = magnitude.sum(1, keepdim=True)
        p = magnitude / total.clamp_min(_TINY)
        # Samples carry no gradient; gradients flow through the scaling (as attacks on SAP see it).
        drawn = self._sample((p + _TINY).detach(), r)
        mask = torch.zeros_like(flat).scatter(1, drawn, 1.0)
        pruned = torch.where(mask > 0, flat / keep_probability(p, r), torch.zeros_like(flat))
        return torch.where(total > 0, pruned, flat).view_as(h)


class WithSAP(nn.Module):
    """`module` followed by SAP on its output."""

    def __init__(self, module: nn.Module, sap: StochasticActivationPruning) -> None:
        super().__init__()
        self.module, self.sap = module, sap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sap(self.module(x))


def activation_layers(model: nn.Module) -> list[str]:
    """Names of the model's activation modules (where SAP goes by default)."""
    kinds = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid)
    return [name for name, m in model.named_modules() if isinstance(m, kinds)]


def add_sap(
    model: nn.Module,
    example: torch.Tensor,
    layers: list[str] | None = None,
    fraction: float = 1.0,
    seed: int | None = None,
) -> tuple[nn.Module, list[dict]]:
    """A copy of `model` with SAP after each named layer (default: every activation module).

    Returns the defended model and, per layer, its name, units and draws (for the manifest)."""
    model = copy.deepcopy(model).eval()
    names = layers if layers else activation_layers(model)
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules or n == ""]
    if unknown:
        raise UserError(f"--sap: no layer named {', '.join(unknown)}; layers: {', '.join(n for n in modules if n)}")
    if not names:
        raise UserError("--sap: the model has no activation modules; name layers with --sap-layers")
    units: dict[str, int] = {}
    hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: units.__setitem__(n, o[0].numel())) for n in names]
    with torch.no_grad():
        model(example[:1])
    for hook in hooks:
        hook.remove()
    report = []
    for index, name in enumerate(names):
        sap = StochasticActivationPruning(fraction, None if seed is None else seed + index, units[name])
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, WithSAP(modules[name], sap))
        report.append({"layer": name, "units": units[name], "draws": sap.draws(units[name])})
    return model, report


def apply_sap(loaded, layers: list[str] | None = None, fraction: float = 1.0, seed: int | None = None):
    """`loaded` (an ingested model) with SAP added; the manifest will record where and how."""
    example = torch.zeros(1, *loaded.spec.shape)
    module, report = add_sap(loaded.module, example, layers, fraction, seed)
    defense = {
        "kind": "stochastic_activation_pruning",
        "reference": "Dhillon et al., ICLR 2018",
        "fraction": fraction,
        "mode": "random" if seed is None else f"seeded ({seed})",
        "layers": report,
    }
    return replace(loaded, module=module, defense=defense)


def describe_section(d: dict, stochastic: bool) -> str:
    random = "stochastic engine: verify scores it over 20 runs" if stochastic else "repeatable"
    return f"{d['kind']} ({d['mode']}) after {', '.join(entry['layer'] for entry in d['layers'])}; {random}"


KIND = ModelKind("sap", describe=describe_section, defense_kind="stochastic_activation_pruning")
