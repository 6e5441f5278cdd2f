"""EMPIR (Sen, Raghunathan and Ravindran, ICLR 2020): ensembles of mixed-precision models.

Members are one full-precision model and low-precision ones, each (weight bits, activation
bits). Quantization is DoReFa-style: weights tanh-normalized to [0, 1], rounded to k bits and
mapped back to [-1, 1]; activations clipped to [0, 1] and rounded to k bits at the input of
every low-precision conv (the image too); straight-through gradients; FC layers stay full
precision; conv biases sit on the int32 grid INT8 kernels add them on. The ensemble votes:
the class a majority of members pick, else the full-precision member's choice (or, with
`combine="average"`, the average of the members' probabilities).

Exported as one graph, members as branches. A vote has no useful gradient, so the graph
also outputs `ensemble_log_probs` (log of the members' averaged probabilities), and the
manifest names it as the output attacks should use: the consistent loss with which Tramer
et al. (2020) broke EMPIR. verify scores every candidate on the vote.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deploy_robust.bundle.manifest import DefenseSection
from deploy_robust.errors import UserError
from deploy_robust.model import PickOutput
from deploy_robust.model.arch import CodeTrust
from deploy_robust.model.checkpoint import extract_state_dict, layer_dtypes, load_state_dict
from deploy_robust.model.kind import KindLoad, ModelKind
from deploy_robust.quant.scheme import TrainedGrid
from deploy_robust.quant.ste import straight_through
from deploy_robust.spec import InputSpec
from deploy_robust.transforms.dq.quantizers import ActivationQuantizer
from deploy_robust.verify.suites import Attack

CHECKPOINT_KEY = "deploy_robust_ensemble"
SURROGATE_OUTPUT = "ensemble_log_probs"
# Each member's log-probabilities, (N, members, classes): verify attacks every majority of members
# through them (a vote flips once a majority is fooled, whatever the others say).
MEMBERS_OUTPUT = "member_log_probs"
ARCHS = ("mnist", "cifar", "digits")  # digits: scikit-learn's 8x8 digits, for fast tests and demos
SHAPES = {"mnist": (1, 28, 28), "cifar": (3, 32, 32), "digits": (1, 8, 8)}


def _ste_round(x: torch.Tensor, levels: float) -> torch.Tensor:
    # divide by the float32 step, as ONNX QuantizeLinear does, so exact ties round the same way there
    step = torch.tensor(1.0 / levels, dtype=x.dtype)
    return straight_through(x, torch.round(x / step) * step)


def quantize_activation(x: torch.Tensor, bits: int) -> torch.Tensor:
    # relu then min, not clamp: the exporter's opset-18 Clip does not down-convert to opset 17
    return _ste_round(torch.minimum(torch.relu(x), torch.ones((), dtype=x.dtype)), float(2**bits - 1))


def quantize_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    t = torch.tanh(w)
    unit = t / (2 * t.abs().max()) + 0.5
    return 2 * _ste_round(unit, float(2**bits - 1)) - 1


class QuantConv2d(nn.Conv2d):
    """A DoReFa conv: k-bit input activations, k-bit weights. `freeze()` stores the weight grid."""

    def __init__(self, *args, w_bits: int, a_bits: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.w_bits, self.a_bits, self.frozen = w_bits, a_bits, False

    def freeze(self) -> None:
        with torch.no_grad():
            self.weight.copy_(quantize_weight(self.weight, self.w_bits))
        self.frozen = True

    def quantized_bias(self) -> torch.Tensor | None:
        """The bias on the integer kernels' int32 grid (step = input scale x weight scale), so an INT8
        engine adds exactly the trained bias (unrounded, it would flip 2-bit activation levels)."""
        if self.bias is None:
            return None
        steps = float((2**self.a_bits - 1) * (2**self.w_bits - 1))
        return _ste_round(self.bias, steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight if self.frozen else quantize_weight(self.weight, self.w_bits)
        return self._conv_forward(quantize_activation(x, self.a_bits), weight, self.quantized_bias())

    def extra_repr(self) -> str:
        return super().extra_repr() + f", w_bits={self.w_bits}, a_bits={self.a_bits}"


def member(arch: str, w_bits: int | None = None, a_bits: int | None = None, num_classes: int = 10) -> nn.Module:
    """A member network; convs are DoReFa-quantized when bits are given (FC layers never)."""

    def conv(cin: int, cout: int, k: int) -> nn.Module:
        if w_bits is None:
            return nn.Conv2d(cin, cout, k, padding=k // 2)
        return QuantConv2d(cin, cout, k, padding=k // 2, w_bits=w_bits, a_bits=a_bits)

    if arch == "mnist":
        return nn.Sequential(
            conv(1, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            conv(16, 32, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )
    if arch == "cifar":
        return nn.Sequential(
            conv(3, 32, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            conv(32, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            conv(64, 128, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(128 * 4 * 4, 256),
            nn.ReLU(),
            nn.Linear(256, num_classes),
        )
    if arch == "digits":
        return nn.Sequential(
            conv(1, 16, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            conv(16, 32, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 2 * 2, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )
    raise UserError(f"ensemble --arch must be one of {', '.join(ARCHS)}; got {arch}")


def parse_member(text: str) -> dict[str, Any]:
    """'fp32' or 'w2a4', optionally ':checkpoint.pt' (a trained member's state_dict)."""
    spec, _, path = text.partition(":")
    if spec == "fp32":
        return {"w_bits": None, "a_bits": None, "checkpoint": path or None}
    match = re.fullmatch(r"w(\d)a(\d)", spec)
    if not match or not all(1 <= int(b) <= 8 for b in match.groups()):
        raise UserError(
            f"--member must be fp32 or wXaY with 1-8 bits (e.g. w2a4), optionally :checkpoint.pt; got {text}"
        )
    return {"w_bits": int(match[1]), "a_bits": int(match[2]), "checkpoint": path or None}


class Ensemble(nn.Module):
    """Members on the same input; (vote scores, log of averaged probabilities, each member's log-probabilities)
    or averaged log-probabilities."""

    def __init__(self, members: list[nn.Module], combine: str = "vote", full_precision: int = 0) -> None:
        super().__init__()
        if combine not in ("vote", "average"):
            raise UserError(f"--combine must be vote or average; got {combine}")
        self.members, self.combine, self.full_precision = nn.ModuleList(members), combine, full_precision
        self.extra_output_names = (SURROGATE_OUTPUT, MEMBERS_OUTPUT) if combine == "vote" else ()

    def forward(self, x: torch.Tensor):
        logits = [m(x) for m in self.members]
        total = F.softmax(logits[0], dim=1)
        for z in logits[1:]:
            total = total + F.softmax(z, dim=1)
        log_probs = torch.log(total / len(logits) + 1e-12)
        if self.combine == "average":
            return log_probs
        # Vote: 2 for a class a strict majority picks, +1 for the full-precision member's pick,
        # so the argmax is the majority when there is one and the full-precision choice otherwise.
        classes = torch.arange(logits[0].shape[1])
        picks = [(classes == z.argmax(1, keepdim=True)).float() for z in logits]  # one-hot of each member's pick
        counts = picks[0]
        for p in picks[1:]:
            counts = counts + p
        scores = 2 * (counts > len(logits) / 2).float() + picks[self.full_precision]
        return scores, log_probs, torch.stack([F.log_softmax(z, dim=1) for z in logits], dim=1)


def build_ensemble(config: dict[str, Any]) -> Ensemble:
    members = [member(config["arch"], m["w_bits"], m["a_bits"], config["num_classes"]) for m in config["members"]]
    full = next((i for i, m in enumerate(config["members"]) if m["w_bits"] is None), 0)
    return Ensemble(members, config["combine"], full)


def frozen_for_export(ensemble: Ensemble) -> Ensemble:
    """A copy whose quantized weights are stored on their grid (the graph holds the grid values)."""
    out = copy.deepcopy(ensemble).eval()
    for module in out.modules():
        if isinstance(module, QuantConv2d):
            module.freeze()
    return out


def int8_form(ensemble: Ensemble) -> tuple[Ensemble, TrainedGrid]:
    """The ensemble rearranged so its low-precision members run on INT8 kernels, and their grids.

    Each member's activation quantizer moves from the input of a quantized conv to the output
    of the conv before it, ahead of the max-pool: relu, clipping to [0, 1] and rounding are
    monotone, so they commute with a max, and the values are unchanged. The image's quantizer
    stays at the input. Weights keep their DoReFa grid, (2j - L) / L with L = 2^w - 1: int8
    integers at scale 1 / L. The exporter then writes Q (scale 1 / (2^a - 1)) -> integer Clip ->
    DQ after each of those convs, so they fuse into integer kernels; FC layers, the last conv
    of each member (its output reaches the full-precision FC layers) and the full-precision
    member stay float, as trained."""
    out = copy.deepcopy(ensemble).eval()
    weight_bits, weight_levels, weight_scales, input_bits = {}, {}, {}, {}
    for m_index, net in enumerate(out.members):
        layers = list(net)
        quantized = [i for i, layer in enumerate(layers) if isinstance(layer, QuantConv2d)]
        if not quantized:
            continue
        prefix = f"members.{m_index}"  # the member becomes Sequential(image quantizer, body)
        first = _bounded(layers[quantized[0]].a_bits)
        for position, index in enumerate(quantized):
            conv = layers[index]
            if conv.w_bits > 7:
                raise UserError(
                    "EMPIR members with 8-bit weights have 255 levels, more than int8 holds: "
                    "export this ensemble with --precision fp32"
                )
            layers[index] = _plain_conv(conv)
            levels = 2**conv.w_bits - 1
            name = f"{prefix}.1.{index}"
            weight_bits[name], weight_levels[name], weight_scales[name] = conv.w_bits, levels, 1.0 / levels
            input_bits[name] = conv.a_bits
            if position + 1 < len(quantized):  # the next quantized conv's input quantizer, moved up here
                nxt = quantized[position + 1]
                if not (
                    isinstance(layers[index + 1], nn.ReLU)
                    and all(isinstance(m, (nn.ReLU, nn.MaxPool2d)) for m in layers[index + 1 : nxt])
                ):
                    raise UserError(
                        "EMPIR INT8 export expects conv -> ReLU -> max-pool -> conv between quantized convs"
                    )
                layers[index + 1] = _bounded(layers[nxt].a_bits)
        out.members[m_index] = nn.Sequential(first, nn.Sequential(*layers))
    return out, TrainedGrid(weight_bits, weight_levels, input_bits, None, weight_scales)


def _plain_conv(conv: "QuantConv2d") -> nn.Conv2d:
    """A float Conv2d holding the DoReFa weight grid (the Q/DQ the exporter writes keeps it exact)."""
    plain = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None
    )
    with torch.no_grad():
        plain.weight.copy_(conv.weight if conv.frozen else quantize_weight(conv.weight, conv.w_bits))
        if conv.bias is not None:
            plain.bias.copy_(conv.quantized_bias())
    return plain


def _bounded(bits: int) -> nn.Module:
    """Min(Relu(x), 1) in the graph; the exporter's Q/DQ rounds it to `bits` bits."""
    quantizer = ActivationQuantizer(bits)
    quantizer.deploy = True
    return quantizer


def describe(config: dict[str, Any]) -> dict[str, Any]:
    names = ["fp32" if m["w_bits"] is None else f"w{m['w_bits']}a{m['a_bits']}" for m in config["members"]]
    out = {
        "kind": "empir",
        "reference": "Sen, Raghunathan and Ravindran, ICLR 2020",
        "arch": config["arch"],
        "members": names,
        "combine": config["combine"],
    }
    if config["combine"] == "vote":
        out["attack_output"] = SURROGATE_OUTPUT  # the consistent loss: averaged member probabilities
        out["member_output"] = MEMBERS_OUTPUT
        out["majority"] = len(names) // 2 + 1
    return out


def load_checkpoint(obj: dict, name: str, trust: CodeTrust) -> KindLoad:
    """An ensemble checkpoint written by `deploy-robust ensemble`: members rebuilt, weights loaded."""
    config = obj[CHECKPOINT_KEY]
    ensemble = build_ensemble(config)
    load_state_dict(ensemble, extract_state_dict(obj, name), "empir ensemble")
    module = frozen_for_export(ensemble)
    return KindLoad(
        module,
        InputSpec(tuple(config["shape"]), config["num_classes"]),
        "empir",
        "empir_ensemble",
        layer_dtypes(dict(module.state_dict())),
        defense=describe(config),
    )


def describe_section(d: dict, stochastic: bool) -> str:
    surrogate = f"; attacks use {d['attack_output']}" if d.get("attack_output") else ""
    return f"EMPIR ensemble {', '.join(d['members'])} ({d['combine']}){surrogate}"


def trained_grid_form(module: nn.Module) -> tuple[Ensemble, TrainedGrid] | None:
    """An ensemble with low-precision members exports at int8 on their DoReFa grids (`int8_form`)."""
    if isinstance(module, Ensemble) and any(isinstance(m, QuantConv2d) for m in module.modules()):
        return int8_form(module)
    return None


class MajorityOfMembers(nn.Module):
    """Log of the averaged probabilities of some of an ensemble's members (from the twin's (N, members,
    classes) member output): a majority vote flips once any majority is fooled, so each majority is
    attacked on its own, with the others ignored."""

    def __init__(self, members: nn.Module, subset: tuple[int, ...]) -> None:
        super().__init__()
        self.members, self.subset = members, list(subset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(self.members(x)[:, self.subset], dim=1) - math.log(len(self.subset))


# White-box attacks repeated on each majority of an ensemble's members (those the suite has).
_MAJORITY_METHODS = ("apgd", "pgd")


def majority_attacks(
    defense: DefenseSection, twin: PickOutput, suite: list[Attack]
) -> tuple[list[Attack], dict[str, nn.Module]]:
    """For a voting ensemble (the manifest names its member output and majority): the suite's APGD
    attacks (PGD where the suite has no APGD, as `quick`) on every majority of members, and the models
    they run on (`twin`'s graph, read at the member output), by key."""
    if not defense.member_output or not defense.majority:
        return [], {}
    members = PickOutput(twin.module, twin.module.output_names.index(defense.member_output))
    base = [a for a in suite if a.on == "S" and a.method in _MAJORITY_METHODS]
    if any(a.method == "apgd" for a in base):
        base = [a for a in base if a.method == "apgd"]
    plan, models = [], {}
    for subset in itertools.combinations(range(len(defense.members)), defense.majority):
        key = "S:members " + "+".join(map(str, subset))
        models[key] = MajorityOfMembers(members, subset)
        plan += [Attack(f"{a.name} on members {'+'.join(map(str, subset))}", key, a.method, a.params) for a in base]
    return plan, models


KIND = ModelKind(
    "empir",
    CHECKPOINT_KEY,
    load_checkpoint,
    describe_section,
    defense_kind="empir",
    trained_grid_form=trained_grid_form,
    attack_plan=majority_attacks,
)
