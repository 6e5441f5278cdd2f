"""What `tune` measures, cheap first, each result cached by a content key so a rerun reuses it.

- Latency on the target runtime: the uniform bundles (fp32, int8, int4, ...) benchmarked interleaved in
  one run; a layer's latency change at a precision is its share of the MACs running at that precision
  in the uniform bundle, times that bundle's measured change against FP32 (candidates are then measured
  for real).
- Robustness sensitivity on the twin: with only layer i lowered to p (every other layer FP32), the mean over a
  fixed sample of each point's loss of margin z_y - max_{j != y} z_j under PGD (10 steps, straight-through
  through the quantizers), against the FP32 twin's; with a clean budget the clean margin's too, the larger
  counting; with metric "clean", the clean margin's alone.
- The paired drop of two verified bundles on the same points, from verify.json's per-example outcomes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import torch

from deploy_robust.bench.harness import run_bench
from deploy_robust.bundle import Bundle
from deploy_robust.data import Dataset
from deploy_robust.private_files import SignedJSON
from deploy_robust.quant.plan import make_plan
from deploy_robust.stats import wilson_interval
from deploy_robust.tune.space import parse_option
from deploy_robust.verify import ThreatModel
from deploy_robust.verify.attacks import margin_loss, pgd
from deploy_robust.verify.document import bits, per_example
from deploy_robust.verify.protocol import attack_twin
from deploy_robust.verify.speed import prepare_for_attack


class Cache:
    """measurements.json in the tune's cache folder: key -> value, rewritten atomically after every new entry and
    signed with this user's key. A file that is malformed, forged or edited is set aside whole (`rejected`) and
    every measurement in it recomputed: what another writer puts there never reaches the search."""

    def __init__(self, path: Path) -> None:
        self.file = SignedJSON(path, "tune-cache")
        self.values: dict[str, Any] = self.file.load()
        self.hits = self.misses = 0

    @property
    def rejected(self) -> int:
        return self.file.rejected

    def get(self, key: str, compute: Callable[[], Any]) -> Any:
        if key in self.values:
            self.hits += 1
            return self.values[key]
        self.misses += 1
        value = compute()
        self.put(key, value)
        return value

    def get_each(self, keys: dict[str, str], compute: Callable[[list[str]], dict[str, Any]]) -> dict[str, Any]:
        """`get` for each of `keys` (name -> key), the missing ones computed together: `compute(names)` returns
        their values by name (hits and misses counted per key, as `get` counts them)."""
        missing = [name for name, key in keys.items() if key not in self.values]
        computed = compute(missing) if missing else {}
        return {name: self.get(key, lambda: computed[name]) for name, key in keys.items()}

    def put(self, key: str, value: Any) -> None:
        self.values[key] = value
        self.file.save(self.values)


def latencies(
    bundles: list[Bundle],
    backend: str,
    batch: int,
    objective: str,
    *,
    duration: float = 2.0,
    rounds: int = 3,
    threads: int | None = None,
) -> list[float]:
    """Per bundle, in one interleaved run: median latency in ms per batch ("latency"), or ms per image
    ("throughput": the inverse of images per second), so lower is better either way."""
    docs = run_bench(bundles, [backend], [batch], duration=duration, rounds=rounds, threads=threads)
    out = []
    for doc in docs:
        entry = doc["results"][0]
        out.append(entry["latency_ms"]["p50"] if objective == "latency" else 1e3 / entry["throughput"])
    return out


def latency_model(
    layers,
    uniform: dict[str, tuple[Bundle, float]],
    fp32_ms: float,
    profiled: dict[str, dict[str, float]] | None = None,
) -> tuple[dict[str, float], ...]:
    """Per layer: precision -> predicted latency change against FP32, from the uniform bundles' measured changes
    shared out among the layers each bundle really runs at that precision: by their MACs, or where `profiled`
    has the precision (layer name -> its change in the runtime's own per-layer profile), by those changes."""
    model = []
    realized = {
        p: {layer["name"]: layer["precision"] for layer in bundle.manifest.precision.layers}
        for p, (bundle, _) in uniform.items()
    }
    for layer in layers:
        options = {}
        for p in layer.allowed:
            if parse_option(p)[0] is not None:
                continue  # a GDWS option: `with_gdws_latencies`
            if p == "fp32" or p not in uniform:
                options[p] = 0.0  # FP32, or a precision no uniform bundle measured: no change predicted
                continue
            at_p = [other for other in layers if realized[p].get(other.name) == p]
            if realized[p].get(layer.name) != p:
                share = 0.0
            elif profiled and p in profiled and (total := sum(profiled[p][other.name] for other in at_p)):
                share = profiled[p][layer.name] / total
            else:
                macs = sum(other.macs for other in at_p)
                share = layer.macs / macs if macs else 0.0
            options[p] = share * (uniform[p][1] - fp32_ms)
        model.append(options)
    return tuple(model)


def with_gdws_latencies(
    layers,
    model: tuple[dict[str, float], ...],
    rewrites: dict[str, tuple[float, dict[str, int]]],
    plain_ms: dict[str, float],
    profiled: dict[str, dict[str, float]] | None = None,
) -> tuple[dict[str, float], ...]:
    """`model` (per layer: option -> predicted change against FP32) with each layer's GDWS options added
    (`rewrites`: option -> (the uniform rewrite's measured ms, layer -> MACs it saves); `plain_ms`: precision -> ms).
    Where `profiled` has the option (layer -> its change from the FP32 bundle to that rewrite in the runtime's own
    per-layer profile), a rewritten layer takes its profiled share of the rewrite's measured change against FP32.
    Otherwise: its change at the option's precision, plus its share, by the MACs it saves, of what the rewrite
    measured against the uniform bundle of that precision."""
    out = []
    for layer, options in zip(layers, model):
        options = dict(options)
        for option in layer.allowed:
            if option not in rewrites:
                continue
            precision = parse_option(option)[1]
            ms, saved = rewrites[option]
            if precision not in options or precision not in plain_ms or layer.name not in saved:
                continue
            changes = (profiled or {}).get(option)
            if changes and (total := sum(changes.values())):
                options[option] = changes[layer.name] / total * (ms - plain_ms["fp32"])
                continue
            share = saved[layer.name] / max(sum(saved.values()), 1)
            options[option] = options[precision] + share * (ms - plain_ms[precision])
        out.append(options)
    return tuple(out)


def with_probe_penalties(
    model: tuple[dict[str, float], ...], penalties: dict[str, float]
) -> tuple[dict[str, float], ...]:
    """`model` with `penalties[option]` (ms, measured by a probe plan: what a rewritten layer costs beyond what the
    model expected, negative where it cost less) added to that option's change on every layer that has it."""
    return tuple({o: change + penalties.get(o, 0.0) for o, change in options.items()} for options in model)


def with_island_penalty(model: tuple[dict[str, float], ...], penalty: float) -> tuple[dict[str, float], ...]:
    """`model` with `penalty` (ms, measured by a probe: what a layer kept FP32 among lower-precision neighbours costs
    beyond the saving it gives up) added to the FP32 term of every layer that has another option. A plan with
    many FP32 layers is then predicted slower than it is (its islands merge), which matters little: the frontier's
    fast end, where the search looks first, keeps a few layers in float."""
    return tuple({o: change + (penalty if o == "fp32" and len(options) > 1 else 0.0) for o, change in options.items()}
                 for options in model)  # fmt: skip


def layer_times(rows: list[dict[str, Any]], names: dict[str, tuple[str, ...]]) -> dict[str, float] | None:
    """Per key of `names` (an ONNX node, or a layer made of several), the ms of the runtime-graph layers OpenVINO
    made of it. Its profile names each after the node or its output tensor (`node_conv2d_1/WithoutBiases`, `logits`
    for the graph's output), a reorder of its output after it (`node_conv2d_1/WithoutBiases_..._node_...`), and a
    reorder between two of the key's own nodes after the first (`node_index_select_abcd_acdb_node_Conv_18`: a GDWS
    layer's gather into its depthwise convolution); `names`: key -> (node, *outputs, ...). None where a key has no
    row (other runtimes rename fused nodes; their latency model stays by MACs)."""
    times = {}
    for key, aliases in names.items():
        matched = [r["ms"] for r in rows if any(_names_it(r["layer"], a, aliases) for a in aliases)]
        if not matched:
            return None
        times[key] = sum(matched)
    return times


def _names_it(layer: str, alias: str, aliases: tuple[str, ...]) -> bool:
    if layer == alias or layer.startswith(alias + "/"):
        return True
    return layer.startswith(alias + "_") and any(layer.endswith("_" + other) for other in aliases if other != alias)


def rewritten_layer_names(graph: onnx.ModelProto, layers: list[dict[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Per layer as plans name it, the names a profile may give what computes it in `graph` (a bundle's, `layers` its
    manifest's precision entries; a float bundle's name no nodes, so its graph's plan is read instead): its node and
    outputs, or for a GDWS-rewritten layer (`NAME.depthwise`, `NAME.pointwise`) both convolutions' and those of the
    Gather before them (Q/DQ between them passed over)."""
    if not all("node" in entry for entry in layers):
        layers = [p.to_json() for p in make_plan(graph, "fp32", "ort-cpu")]
    nodes = {node.name: node for node in graph.graph.node}
    producer = {out: node for node in graph.graph.node for out in node.output}
    out: dict[str, tuple[str, ...]] = {}
    for entry in layers:
        node = nodes.get(entry["node"])
        if node is None:
            continue
        name, _, part = entry["name"].rpartition(".")
        found = [node]
        if part == "depthwise":
            source = producer.get(node.input[0])
            while source is not None and source.op_type in ("DequantizeLinear", "QuantizeLinear"):
                source = producer.get(source.input[0])
            found += [source] if source is not None and source.op_type == "Gather" else []
        elif part != "pointwise":
            name = entry["name"]
        out[name] = out.get(name, ()) + tuple(n for f in found for n in (f.name, *f.output))
    return out


def node_names(graph: onnx.ModelProto, nodes: list[str]) -> dict[str, tuple[str, ...]]:
    """node -> (node, *its outputs), the names a runtime's profile may give the layers made of it."""
    found = {node.name: (node.name, *node.output) for node in graph.graph.node if node.name in nodes}
    return {node: found.get(node, (node,)) for node in nodes}


def profile_changes(fp32: dict[str, float], lowered: dict[str, float], layers) -> dict[str, float]:
    """Per layer name, its change in the runtime's per-layer profile from the FP32 bundle to a uniform one."""
    return {layer.name: lowered[layer.node] - fp32[layer.node] for layer in layers}


def twin_margins(bundle: Bundle, data: Dataset, threat: ThreatModel, metric: str, seed: int = 0) -> list[float]:
    """`attacked_margins` of the bundle's twin S."""
    return attacked_margins(attack_twin(bundle), data, threat, metric, seed)


def attacked_margins(
    model: torch.nn.Module, data: Dataset, threat: ThreatModel, metric: str, seed: int = 0
) -> list[float]:
    """Per point, the margin z_y - max_{j != y} z_j of `model` (negative: misclassified), under PGD-10 for
    "robust", clean for "clean"."""
    x, y = (torch.from_numpy(a) for a in next(data.batches(len(data))))
    attacked, _, _ = prepare_for_attack(model, x, "contiguous")
    if metric == "robust" and threat.eps > 0:
        x = pgd(attacked, x, y, threat, steps=10, seed=seed)
    with torch.no_grad():
        return (-margin_loss(attacked(x), y)).tolist()


def margin_drop(base: list[float], lowered: list[float]) -> float:
    """The mean over points of each point's margin loss, max(base - lowered, 0). Per point, not the drop of the
    mean: a change that costs the borderline points margin while the confident ones gain as much leaves the mean
    where it was, and the accuracy lower (on the CIFAR ResNet-18 the drop of the mean read 0 for 12 of 16 GDWS
    layers whose plans lost 7-18 pt clean)."""
    return sum(max(b - v, 0.0) for b, v in zip(base, lowered, strict=True)) / len(base)


def sensitivity_metrics(metric: str, max_clean_drop: float) -> tuple[str, ...]:
    """The margins a layer's sensitivity is measured on: the tune's metric, and the clean margin beside the
    robust one while a clean budget binds (a robust-driven tune must hold both; the clean margin is one forward
    pass, a tenth of PGD-10's cost). A layer's sensitivity is the larger of its drops."""
    return ("robust", "clean") if metric == "robust" and max_clean_drop < 1 else (metric,)


# A candidate's quick check looks at its paired drops after each of QUICK_LOOKS equal parts of its points and
# stops once every budgeted drop is clearly inside its budget, or one is clearly outside. "Clearly": the paired
# interval at z = 2.36, Pocock's constant for four looks at an overall two-sided 5% (Pocock 1977), its half width
# never under z / n (with no discordant pair yet, one is still as likely as not to be one point in n).
QUICK_LOOKS = 4
INTERIM_Z = 2.36


def early_verdict(reference: dict[str, Any], candidate: dict[str, Any], budgets: dict[str, float]) -> bool | None:
    """At an interim look: False when some field's paired drop (`budgets`: field -> largest drop allowed) is
    clearly above its budget, True when every one is clearly below, None when the points so far cannot tell."""
    inside = True
    for field, budget in budgets.items():
        d = paired_drop(reference, candidate, field)
        half = _paired_half_width(d["lost"], d["gained"], d["n"], INTERIM_Z, floor=1.0)
        if d["drop"] - half > budget + 1e-12:
            return False
        inside = inside and d["drop"] + half <= budget + 1e-12
    return True if inside else None


def merged_figures(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """verify figures (as `Workbench.verified` keeps them) of consecutive parts of the points, as one."""
    out: dict[str, Any] = {"per_example": {}, "flags": []}
    for field in ("robust", "clean"):
        outcomes = "".join(p["per_example"][field] for p in parts)
        out["per_example"][field] = outcomes
        hits = outcomes.count("1")
        out[f"{field}_accuracy"] = hits / len(outcomes)
        out[f"{field}_accuracy_ci95"] = list(wilson_interval(hits, len(outcomes)))
    out["flags"] = sorted({flag for p in parts for flag in p["flags"]})
    return out


def reference_outcomes(
    candidate: dict[str, Any], verify_at: Callable[[np.ndarray], dict[str, Any]], everywhere: bool
) -> dict[str, Any]:
    """The FP32 reference's outcomes on a candidate's points, attacked only where the paired drop needs them.

    A point the candidate holds adds to the drop only where FP32 is lost there, which can only lower the drop; so
    at first FP32 is attacked only where the candidate lost (mostly points both lose in a few steps) and taken as
    holding elsewhere: the drop so measured is an upper bound of the drop against FP32 attacked everywhere. Only
    when that bound breaks a budget (`everywhere`) is FP32 attacked at the rest as well, and the drop is the exact
    paired one. `verify_at(indices)`: verify's figures for FP32 on those of the candidate's points, in order."""
    lost = ~per_example(candidate, "robust")
    clean, robust = np.ones(len(lost), bool), np.ones(len(lost), bool)
    flags: set[str] = set()
    for points in (np.flatnonzero(lost), np.flatnonzero(~lost) if everywhere else ()):
        if len(points):
            doc = verify_at(points)
            clean[points], robust[points] = per_example(doc, "clean"), per_example(doc, "robust")
            flags.update(doc["flags"])
    return {
        "robust_accuracy": float(robust.mean()),
        "clean_accuracy": float(clean.mean()),
        "per_example": {"clean": bits(clean), "robust": bits(robust)},
        "flags": sorted(flags),
        "attacked": "every point" if everywhere else f"the {int(lost.sum())} points the candidate lost",
    }


def paired_drop(reference: dict[str, Any], candidate: dict[str, Any], field: str = "robust") -> dict[str, float]:
    """The paired drop (reference - candidate) of per-example outcomes on the same points, with its 95% interval
    (normal approximation for paired proportions: var = (b + c - (b - c)^2 / n) / n^2, b and c the discordant
    pairs)."""
    a, b = per_example(reference, field), per_example(candidate, field)
    if a.shape != b.shape:
        raise ValueError("paired outcomes need the same points")
    return paired_drop_from_counts(int((a & ~b).sum()), int((~a & b).sum()), len(a))


def paired_drop_from_counts(lost: int, gained: int, n: int) -> dict[str, float]:
    """`paired_drop` from its discordant counts: `lost` (the reference holds, the candidate not), `gained`."""
    drop = (lost - gained) / n
    half = _paired_half_width(lost, gained, n, 1.959964)
    return {"drop": drop, "ci95": [drop - half, drop + half], "lost": lost, "gained": gained, "n": n}


def _paired_half_width(lost: int, gained: int, n: int, z: float, floor: float = 0.0) -> float:
    """Half width of the normal interval for a paired drop: z * sqrt(b + c - (b - c)^2 / n) / n, the variance
    term never under `floor`."""
    return z * math.sqrt(max(lost + gained - (lost - gained) ** 2 / n, floor)) / n
