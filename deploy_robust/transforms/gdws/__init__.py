"""GDWS: generalized depthwise-separable rewriting of trained convolutions (Dbouk and Shanbhag, NeurIPS 2021).

`decompose` holds the per-layer mathematics (per-channel SVD, MEGO, LEGO), `layer` the
GDWSConv2d module, `alphas` the robustness-aware channel weights, `network` the
whole-model plan and its application, `checkpoint` saving and reloading a rewritten model.
"""

from deploy_robust.transforms.gdws.decompose import ChannelSVD, channel_svd, factorize, lego, mego, weighted_error
from deploy_robust.transforms.gdws.layer import GDWSConv2d
from deploy_robust.transforms.gdws.network import GDWSPlan, apply_gdws, plan_gdws

__all__ = [
    "ChannelSVD",
    "GDWSConv2d",
    "GDWSPlan",
    "apply_gdws",
    "channel_svd",
    "factorize",
    "lego",
    "mego",
    "plan_gdws",
    "weighted_error",
]
