"""Module surgery shared by the model kinds that rewrite a network: replacing a submodule by name,
finding the BatchNorms that can fold into the convolution before them, and their affine form."""

from __future__ import annotations

import torch
from torch import nn


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def batchnorm_after_conv(model: nn.Module) -> dict[str, str]:
    """{conv name: BatchNorm2d name} where the BN is the conv output's only consumer (torch.fx trace)."""
    try:
        traced = torch.fx.symbolic_trace(model)
    except Exception:  # untraceable control flow: keep every BatchNorm as it is
        return {}
    modules = dict(model.named_modules())
    pairs = {}
    for node in traced.graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        source = node.args[0] if node.args else None
        if (
            isinstance(source, torch.fx.Node)
            and source.op == "call_module"
            and type(modules.get(source.target)) is nn.Conv2d
            and len(source.users) == 1
        ):
            if sum(1 for n in traced.graph.nodes if n.op == "call_module" and n.target == node.target) == 1:
                pairs[source.target] = node.target
    return pairs


def batchnorm_scale(bn: nn.BatchNorm2d) -> torch.Tensor:
    """The per-channel factor an eval-mode BatchNorm multiplies by, in float64 (folding is exact to float32)."""
    return bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
