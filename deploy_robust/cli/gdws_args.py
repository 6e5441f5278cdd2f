"""The GDWS options, shared by `gdws` and `export --gdws-*`: the GDWSRequest they describe, and the plan table."""

from __future__ import annotations

import argparse

from deploy_robust.cli import args as cli_args
from deploy_robust.cli.output import table
from deploy_robust.errors import UserError
from deploy_robust.transforms.gdws.alphas import AlphaSettings
from deploy_robust.transforms.gdws.network import CHANNEL_MULTIPLE, GDWSPlan
from deploy_robust.transforms.gdws.rewrite import GDWSRequest
from deploy_robust.verify.threat import NORMS, parse_eps


def add_gdws_args(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The GDWS options; `export` adds them as --gdws-beta, --gdws-budget, ..."""
    group = parser.add_argument_group("GDWS (Dbouk and Shanbhag 2021)")
    choice = group if prefix else group.add_mutually_exclusive_group(required=True)
    choice.add_argument(
        f"--{prefix}beta",
        type=cli_args.number,
        metavar="B",
        help="weighted error allowed per layer (LEGO); the same for every layer",
    )
    choice.add_argument(
        f"--{prefix}budget",
        type=cli_args.number,
        metavar="RATIO",
        help="fraction of the rewritable convolutions' MACs to keep, e.g. 0.25 for 4x fewer",
    )
    group.add_argument(
        f"--{prefix}allocation",
        default="per-layer",
        choices=["per-layer", "global"],
        help=f"how --{prefix}budget is shared: every layer keeps that fraction (default; measured "
        "better) or one common beta, the smallest that fits (the paper's rule)",
    )
    group.add_argument(
        f"--{prefix}alphas",
        metavar="FILE",
        help="channel weights: read from FILE when it exists, "
        f"else estimated on --{prefix}alpha-data and written there",
    )
    group.add_argument(
        f"--{prefix}alpha-data",
        metavar="DATA",
        help="images to estimate the robustness-aware channel "
        f"weights on (training split); without it and --{prefix}alphas, plain Frobenius error (alpha = 1)",
    )
    group.add_argument(
        f"--{prefix}alpha-eps",
        metavar="EPS",
        help="PGD radius for the alpha points, e.g. 8/255 "
        f"(required with --{prefix}alpha-data: the model's threat model)",
    )
    group.add_argument(f"--{prefix}alpha-norm", default="linf", choices=list(NORMS))
    group.add_argument(f"--{prefix}alpha-steps", type=cli_args.positive_int, default=10, help="PGD steps (default 10)")
    group.add_argument(f"--{prefix}alpha-n", type=cli_args.positive_int, default=128, help="images (default 128)")
    group.add_argument(f"--{prefix}skip", metavar="LAYERS", help="comma-separated layer names or globs to leave as is")
    group.add_argument(f"--{prefix}include-first", action="store_true", help="rewrite the first convolution too")
    group.add_argument(f"--{prefix}include-pointwise", action="store_true", help="rewrite 1x1 convolutions too")
    group.add_argument(
        f"--{prefix}channel-multiple",
        type=cli_args.positive_int,
        default=CHANNEL_MULTIPLE,
        help=f"round each layer's G up to a multiple of this, for blocked CPU kernels (default "
        f"{CHANNEL_MULTIPLE}; 1 keeps the exact LEGO allocation)",
    )


def request_from_args(args: argparse.Namespace, prefix: str = "") -> GDWSRequest | None:
    """The GDWSRequest the options describe, or None when no GDWS option was given (export)."""
    get = lambda name: getattr(args, prefix.replace("-", "_") + name)  # noqa: E731
    beta, budget = get("beta"), get("budget")
    if beta is None and budget is None:
        return None
    if beta is not None and budget is not None:
        raise UserError(f"pass one of --{prefix}beta and --{prefix}budget")
    settings = AlphaSettings()
    if get("alpha_data"):
        if get("alpha_eps") is None:
            raise UserError(
                f"--{prefix}alpha-data needs --{prefix}alpha-eps (the PGD radius of the model's threat model)"
            )
        settings = AlphaSettings(
            parse_eps(get("alpha_eps")), get("alpha_norm"), get("alpha_steps"), get("alpha_n"), args.seed
        )
    skip = tuple(s.strip() for s in (get("skip") or "").split(",") if s.strip())
    return GDWSRequest(
        beta,
        budget,
        get("alphas"),
        get("alpha_data"),
        settings,
        skip,
        get("include_first"),
        get("include_pointwise"),
        get("channel_multiple"),
        get("allocation"),
    )


def describe_plan(plan: GDWSPlan) -> str:
    """The per-layer table (g_c histogram, G, MAC ratio, weighted error) and the totals."""
    rows = []
    for layer in plan.layers:
        geometry = f"{layer.in_channels}->{layer.out_channels} k{'x'.join(map(str, layer.kernel))}/s{layer.stride[0]}"
        if layer.replaced:
            histogram = " ".join(f"{g}:{n}" for g, n in layer.histogram().items())
            rows.append(
                [
                    layer.name,
                    geometry,
                    layer.width,
                    histogram,
                    f"{layer.original_macs / layer.macs:.2f}x",
                    f"{layer.error:.3g}",
                    "BN folded" if layer.folded_bn else "",
                ]
            )
        else:
            rows.append([layer.name, geometry, "-", "-", "1.00x", "-", layer.reason])
    doc = plan.to_json()
    weights = "alpha-weighted" if plan.alphas else "Frobenius (alpha = 1)"
    if plan.allocation == "per-layer":
        rule = f"every layer keeps {plan.budget:g} of its MACs ({weights} error; largest layer error {plan.beta:.4g})"
    else:
        found = f"; the smallest that fits budget {plan.budget:g}" if plan.budget else ""
        rule = f"one beta for every layer: {plan.beta:.4g} ({weights} error{found})"
    lines = [
        table(["layer", "shape", "G", "g_c histogram (g:channels)", "MACs", "error", "note"], rows),
        f"{rule}; G rounded to a multiple of {plan.channel_multiple} where cheap",
        f"rewritable convolutions: {doc['rewritable_macs']['ratio']:.2f}x fewer MACs; whole model (convs + linears): "
        f"{doc['model_macs']['original'] / 1e6:.1f}M -> {doc['model_macs']['gdws'] / 1e6:.1f}M MACs "
        f"({doc['model_macs']['ratio']:.2f}x)",
    ]
    return "\n".join(lines)
