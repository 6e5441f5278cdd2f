"""A Defensive Quantization network: an architecture with fake quantizers where the engine quantizes.

`prepare_structure(model, config)` is deterministic, so a saved DQ model rebuilds from its
architecture and config before its weights (and calibrated bounds) load:
  - BatchNorm layers that directly follow a convolution are folded into it first (the
    regularizer and the quantizer then see the weights the engine runs);
  - every Conv2d / Linear runs on a per-channel symmetric weight grid: `w_bits`, or 8 bits for
    the first and the last weighted layer (`edge_bits`, as DoReFa and PACT keep them);
  - every ReLU (module or function) becomes an `ActivationQuantizer` (bounded, `a_bits`);
  - the model input is quantized to 8 bits over the normalized image range (uint8, or int8
    symmetric with `input_signed`, which every export target takes).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from deploy_robust.quant.scheme import TrainedGrid
from deploy_robust.quant.scheme import ActivationParams

from deploy_robust.errors import UserError
from deploy_robust.transforms.dq.quantizers import (
    ActivationQuantizer,
    InputQuantizer,
    mse_bound,
    quantize_layer,
    weight_levels,
)
from deploy_robust.transforms.dq.regularizer import weighted_layers
from deploy_robust.model.surgery import batchnorm_after_conv, batchnorm_scale, set_module

_RELUS = (torch.relu, nn.functional.relu)


@dataclass
class DQConfig:
    w_bits: int
    a_bits: int
    input_range: tuple[float, float]  # normalized-input range of the 8-bit input quantizer
    edge_bits: int = 8
    folded_bn: dict[str, str] = field(default_factory=dict)  # conv name -> folded BatchNorm name
    input_signed: bool = False  # int8 symmetric input grid (every target) instead of uint8 (ort-cpu)

    def to_json(self) -> dict:
        return asdict(self) | {"input_range": list(self.input_range)}

    @classmethod
    def from_json(cls, doc: dict) -> "DQConfig":
        return cls(
            int(doc["w_bits"]),
            int(doc["a_bits"]),
            tuple(doc["input_range"]),
            int(doc.get("edge_bits", 8)),
            dict(doc.get("folded_bn", {})),
            bool(doc.get("input_signed", False)),
        )

    @property
    def label(self) -> str:
        return f"w{self.w_bits}a{self.a_bits}"


def input_range(mean: tuple[float, ...] | None, std: tuple[float, ...] | None) -> tuple[float, float]:
    """The range of normalized [0, 1] images over all channels."""
    if mean is None:
        return (0.0, 1.0)
    lows = [(0 - m) / s for m, s in zip(mean, std)]
    highs = [(1 - m) / s for m, s in zip(mean, std)]
    return (min(lows), max(highs))


def fold_batchnorms(model: nn.Module) -> dict[str, str]:
    """Fold each BatchNorm2d that directly follows a Conv2d into it (in place); {conv: bn} folded."""
    pairs = batchnorm_after_conv(model)
    for conv_name, bn_name in pairs.items():
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        _fold_one(conv, bn)
        set_module(model, bn_name, nn.Identity())
    return pairs


def _fold_one(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    with torch.no_grad():
        scale = batchnorm_scale(bn)
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
        new_bias = bn.bias.double() + (bias - bn.running_mean.double()) * scale
        conv.weight.copy_((conv.weight.double() * scale.reshape(-1, 1, 1, 1)).float())
        conv.bias = nn.Parameter(new_bias.float())


def prepare_structure(model: nn.Module, config: DQConfig) -> nn.Module:
    """`model` (untrained or trained) with the DQ structure of `config`; weights are kept as they are."""
    for conv_name, bn_name in config.folded_bn.items():  # rebuilding a saved model: same shapes, no arithmetic
        conv = model.get_submodule(conv_name)
        if conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros(conv.out_channels))
        set_module(model, bn_name, nn.Identity())
    layers = weighted_layers(model)
    if not layers:
        raise UserError("Defensive Quantization needs a model with Conv2d or Linear layers")
    try:
        traced = torch.fx.symbolic_trace(model)  # before the layers change class: torch.nn layers stay leaves
    except Exception as e:
        raise UserError(
            f"Defensive Quantization traces the model with torch.fx, which failed: {str(e).splitlines()[0]}"
        ) from None
    for index, (_, layer) in enumerate(layers):  # the traced module shares these layer objects
        quantize_layer(layer, config.edge_bits if index in (0, len(layers) - 1) else config.w_bits)
    graph, modules = traced.graph, dict(traced.named_modules())
    count = 0
    for node in list(graph.nodes):
        is_relu = (
            (node.op == "call_module" and isinstance(modules.get(node.target), nn.ReLU))
            or (node.op == "call_function" and node.target in _RELUS)
            or (node.op == "call_method" and node.target == "relu")
        )
        if not is_relu:
            continue
        name = f"dq_act{count}"
        count += 1
        traced.add_submodule(name, ActivationQuantizer(config.a_bits))
        with graph.inserting_after(node):
            replacement = graph.call_module(name, (node.args[0],))
        node.replace_all_uses_with(replacement)
        graph.erase_node(node)
    if count == 0:
        raise UserError("Defensive Quantization bounds and quantizes ReLU activations; this model has none")
    placeholder = next(n for n in graph.nodes if n.op == "placeholder")
    traced.add_submodule("dq_input", InputQuantizer(*config.input_range, signed=config.input_signed))
    with graph.inserting_after(placeholder):
        quantized_input = graph.call_module("dq_input", (placeholder,))
    placeholder.replace_all_uses_with(quantized_input, delete_user_cb=lambda user: user is not quantized_input)
    graph.lint()
    traced.recompile()
    _link_inputs(traced)
    return traced


# Ops that keep values on their input's grid (and its scale): the engine carries Q/DQ across them.
_GRID_PRESERVING_MODULES = (nn.Flatten, nn.MaxPool2d, nn.Identity)
_GRID_PRESERVING_FUNCTIONS = (torch.flatten, torch.reshape, nn.functional.max_pool2d)
_GRID_PRESERVING_METHODS = ("view", "reshape", "flatten")


def _link_inputs(traced: torch.fx.GraphModule) -> None:
    """Tell each quantized layer which quantizer produces its input (its bias is rounded at that scale)."""
    modules = dict(traced.named_modules())
    for node in traced.graph.nodes:
        layer = modules.get(node.target) if node.op == "call_module" else None
        if not hasattr(layer, "link_input"):
            continue
        source = node.args[0]
        while isinstance(source, torch.fx.Node) and (
            (source.op == "call_module" and isinstance(modules.get(source.target), _GRID_PRESERVING_MODULES))
            or (source.op == "call_function" and source.target in _GRID_PRESERVING_FUNCTIONS)
            or (source.op == "call_method" and source.target in _GRID_PRESERVING_METHODS)
        ):
            source = source.args[0]
        quantizer = (
            modules.get(source.target) if isinstance(source, torch.fx.Node) and source.op == "call_module" else None
        )
        layer.link_input(quantizer if isinstance(quantizer, (ActivationQuantizer, InputQuantizer)) else None)


def prepare_dq(
    model: nn.Module,
    w_bits: int,
    a_bits: int,
    calibration: torch.Tensor,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    input_signed: bool = False,
) -> tuple[nn.Module, DQConfig]:
    """A DQ copy of a trained `model` (which takes normalized inputs): BN folded, quantizers inserted,
    activation bounds calibrated (MSE-optimal for `a_bits`) on `calibration` ([0, 1] images)."""
    model = copy.deepcopy(model).float().eval()
    folded = fold_batchnorms(model)
    config = DQConfig(w_bits, a_bits, input_range(mean, std), folded_bn=folded, input_signed=input_signed)
    dq = prepare_structure(model, config)
    calibrate_bounds(dq, _normalize(calibration, mean, std))
    for p in dq.parameters():
        p.requires_grad_(True)
    return dq, config


def _normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    if mean is None:
        return x
    m = torch.tensor(mean, dtype=x.dtype).reshape(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).reshape(1, -1, 1, 1)
    return (x - m) / s


@torch.no_grad()
def calibrate_bounds(model: nn.Module, inputs: torch.Tensor) -> None:
    """Set each ActivationQuantizer's bound, layer by layer in order: each sees its predecessors quantized."""
    quantizers = [m for m in model.modules() if isinstance(m, ActivationQuantizer)]
    for quantizer in quantizers:
        seen: list[torch.Tensor] = []
        handle = quantizer.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
        model(inputs)
        handle.remove()
        quantizer.bound.fill_(mse_bound(torch.cat([s.flatten() for s in seen]), quantizer.bits))


def deploy_form(model: nn.Module) -> nn.Module:
    """A copy for export: weights replaced by their grid values, activations as clip(relu(x), bound),
    the input quantizer the identity; the exporter writes the rounding as Q/DQ at the trained scales."""
    out = copy.deepcopy(model).eval()
    for module in out.modules():
        if hasattr(module, "quantized_weight"):
            with torch.no_grad():
                module.weight.copy_(module.quantized_weight())
            module.__class__ = nn.Conv2d if isinstance(module, nn.Conv2d) else nn.Linear
        if isinstance(module, (ActivationQuantizer, InputQuantizer)):
            module.deploy = True
    return out


def is_dq_model(model: nn.Module) -> bool:
    return any(isinstance(m, InputQuantizer) for m in model.modules())


def trained_grid(model: nn.Module) -> TrainedGrid:
    """What the exporter needs to write a DQ model's grids: weight levels, activation bounds, input scale."""
    layers = {name: m for name, m in model.named_modules() if hasattr(m, "quantized_weight")}
    reads = {
        name: m.input_quantizer.bits
        for name, m in layers.items()
        if isinstance(getattr(m, "input_quantizer", None), ActivationQuantizer)
    }
    inputs = next(m for m in model.modules() if isinstance(m, InputQuantizer))
    return TrainedGrid(
        {name: m.bits for name, m in layers.items()},
        {name: weight_levels(m.bits) for name, m in layers.items()},
        reads,
        ActivationParams(np.float32(inputs.scale), int(inputs.zero_point), inputs.signed),
    )
