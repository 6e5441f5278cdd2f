"""What `tune` searches over: per weighted layer, the precisions the target runs, and plans as data.

A plan is a tuple of precisions, one per layer in graph order; `plan_file` writes it as the `--plan`
YAML/JSON that `export --precision mixed` reads, so every candidate is an ordinary bundle. `--pin
LAYER=P` fixes a layer's precision in every plan (e.g. the first and last layers in FP32). With `gdws` in
`--space`, GDWS rewrites of the whole model at a few MAC budgets join the uniform configurations, and each
rewritable convolution gains per-layer options `gdws{budget}-{precision}` (the layer rewritten as the uniform
rewrite at that budget rewrites it, its two convolutions `NAME.depthwise` and `NAME.pointwise` at that precision).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace

import onnx
from onnx import shape_inference

from deploy_robust.errors import UserError
from deploy_robust.onnx_ops import QUANTIZABLE_OPS
from deploy_robust.quant.plan import make_plan
from deploy_robust.targets import get_target

UNIFORM = ("fp32", "fp16", "int8", "int4")  # the uniform configurations a tune is compared with
GDWS = "gdws"  # the --space word that adds GDWS rewrites
GDWS_BUDGETS = (0.5, 0.25)  # default fractions of the rewritable convolutions' MACs kept
GDWS_PRECISIONS = ("fp32", "int8")  # the precisions a rewritten layer (and a uniform rewrite) is tried at
GDWS_PARTS = ("depthwise", "pointwise")  # the convolutions a rewritten layer NAME becomes: NAME.depthwise, ...
Plan = tuple[str, ...]
Pins = tuple[tuple[str, str], ...]  # (layer name, precision), in the order given


@dataclass(frozen=True)
class Layer:
    name: str  # as `info` and `--plan` name it
    op: str
    macs: int  # multiply-accumulates per image
    allowed: tuple[str, ...]
    node: str = ""  # its node in the FP32 graph (runtimes' per-layer profiles name their layers after it)


def check_space(target: str, space: tuple[str, ...]) -> None:
    """Refuse precisions the target does not run (or that do not exist); `gdws` is a word of its own."""
    precisions = get_target(target).precisions
    unknown = [p for p in space if p not in precisions and p != GDWS]
    if unknown:
        raise UserError(
            f"--target {target} cannot run {', '.join(unknown)} layers (it runs {', '.join(precisions)}; "
            f"`{GDWS}` adds GDWS rewrites)"
        )


def parse_pins(items: list[str] | tuple[str, ...], target: str) -> Pins:
    """`--pin LAYER=P` values (each may hold several, comma-separated) as (layer, precision) pairs."""
    precisions = get_target(target).precisions
    pins: dict[str, str] = {}
    for item in (part.strip() for text in items for part in text.split(",")):
        if not item:
            continue
        name, sep, precision = item.rpartition("=")
        if not sep or not name.strip():
            raise UserError(f"--pin takes LAYER=PRECISION (e.g. 0=fp32); got {item!r}")
        name, precision = name.strip(), precision.strip()
        if precision not in precisions:
            raise UserError(
                f"--pin {item}: --target {target} cannot run {precision} layers (it runs {', '.join(precisions)})"
            )
        if pins.get(name, precision) != precision:
            raise UserError(f"--pin names layer {name} twice, as {pins[name]} and {precision}")
        pins[name] = precision
    return tuple(pins.items())


def search_layers(
    fp32_graph: onnx.ModelProto, target: str, space: tuple[str, ...] | None = None, pins: Pins = ()
) -> list[Layer]:
    """The weighted layers of an FP32 bundle's graph, with their MACs and the precisions to try (a pinned
    layer tries only its pin)."""
    precisions, export_target = get_target(target).precisions, get_target(target).profile
    if space is not None:
        check_space(target, space)
        precisions = tuple(p for p in precisions if p in space or p == "fp32")
    macs = layer_macs(fp32_graph)
    plans = make_plan(fp32_graph, "fp32", export_target)
    names = [p.name for p in plans]
    unknown = [name for name, _ in pins if name not in names]
    if unknown:
        raise UserError(
            f"--pin names layers the model does not have: {', '.join(unknown)} (its layers, as `info` "
            f"lists them: {', '.join(names[:12])}{' ...' if len(names) > 12 else ''})"
        )
    pinned = dict(pins)
    return [
        Layer(p.name, p.op, macs.get(p.node, 0), (pinned[p.name],) if p.name in pinned else precisions, p.node)
        for p in plans
    ]


def gdws_option(budget: float, precision: str) -> str:
    """A plan entry rewriting the layer with GDWS at `budget` and running both its convolutions at `precision`."""
    return f"{GDWS}{budget:g}-{precision}"


def parse_option(option: str) -> tuple[float | None, str]:
    """(GDWS budget, or None where the layer is not rewritten; precision) of a plan entry."""
    if not option.startswith(GDWS):
        return None, option
    budget, _, precision = option[len(GDWS) :].partition("-")
    return float(budget), precision


def gdws_choices(layers: list[Layer], plan: Plan) -> dict[str, float]:
    """Layer name -> GDWS budget, for the layers a plan rewrites."""
    chosen = {layer.name: parse_option(option)[0] for layer, option in zip(layers, plan)}
    return {name: budget for name, budget in chosen.items() if budget is not None}


def with_gdws_options(layers: list[Layer], rewritten: dict[str, set[str]]) -> list[Layer]:
    """`layers` with GDWS options added (`rewritten`: option `gdws{b}-{p}` -> the layers the uniform rewrite at
    budget b rewrites), each to the layers that rewrite rewrites and that may take precision p."""
    out = []
    for layer in layers:
        extra = tuple(
            option
            for option, names in rewritten.items()
            if layer.name in names and parse_option(option)[1] in layer.allowed and option not in layer.allowed
        )
        out.append(replace(layer, allowed=layer.allowed + extra))
    return out


def plan_file(layers: list[Layer], plan: Plan) -> str:
    """The plan as `--plan` JSON: every layer named, so a layer's precision never comes from a default (a rewritten
    layer by its two convolutions' names)."""
    if len(plan) != len(layers):
        raise ValueError(f"a plan for {len(layers)} layers has {len(plan)} entries")
    entries = {}
    for layer, option in zip(layers, plan):
        budget, precision = parse_option(option)
        names = [layer.name] if budget is None else [f"{layer.name}.{part}" for part in GDWS_PARTS]
        entries |= {name: precision for name in names}
    return json.dumps({"default": "fp32", "layers": entries}, indent=1)


def pinned_plan_file(default: str, pins: Pins) -> str:
    """`default` everywhere but the pinned layers, as `--plan` JSON (a uniform configuration under pins; the
    layer names are the model's own, so the same file serves a GDWS rewrite, which leaves pinned layers be)."""
    return json.dumps({"default": default, "layers": dict(pins)}, indent=1)


def plan_key(plan: Plan) -> str:
    """A short content key of a plan: the name of its cached bundle."""
    return hashlib.sha256(",".join(plan).encode()).hexdigest()[:12]


def describe(layers: list[Layer], plan: Plan) -> str:
    """`int8` for a uniform plan, else `int8 but conv1 fp32, fc int4` (the layers off the most common)."""
    common = max(set(plan), key=plan.count)
    others = [f"{layer.name} {p}" for layer, p in zip(layers, plan) if p != common]
    return common if not others else f"{common} but {', '.join(others)}"


def layer_macs(model: onnx.ModelProto) -> dict[str, int]:
    """MACs per image of each Conv/Gemm/MatMul node with a constant weight (an initializer, or in a quantized graph
    the DequantizeLinear of one), by node name, from ONNX shape inference at batch 1."""
    graph = onnx.ModelProto()
    graph.CopyFrom(model)
    for value in graph.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_value = 1
    inferred = shape_inference.infer_shapes(graph)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]
    }
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    weights |= {
        n.output[0]: weights[n.input[0]]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in weights
    }
    out = {}
    for node in model.graph.node:
        if node.op_type in QUANTIZABLE_OPS and len(node.input) > 1 and weights.get(node.input[1]):
            y = shapes.get(node.output[0], [])
            spatial = math.prod(y[2:]) if node.op_type == "Conv" and len(y) > 2 and all(y[2:]) else 1
            out[node.name] = math.prod(weights[node.input[1]]) * spatial  # Conv: C_out * C_in/groups * kh * kw each
    return out
