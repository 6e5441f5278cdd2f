"""What a tune writes: frontier.json's document, report.md, frontier.png and best/ (through the bundle store)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path


from deploy_robust.bench.plots import tune_frontier_plot
from deploy_robust.bundle.store import write_bundle, write_file_atomic
from deploy_robust.tune.space import Plan, describe

SCHEMA = "deploy-robust/tune"


def _entry(name: str, c: dict, plan: Plan | None, layers, settings) -> dict:
    """One measured configuration's row of frontier.json."""
    v = c["verify"]
    row = {
        "name": name,
        "bundle": c["bundle"].path.name,
        "latency_ms": c.get("latency_ms"),
        "robust_accuracy": v["robust_accuracy"],
        "robust_ci95": v["robust_accuracy_ci95"],
        "clean_accuracy": v["clean_accuracy"],
        "robust_drop": c["robust_drop"],
        "clean_drop": c["clean_drop"],
        "holds": c["holds"],
        "uniform": name.startswith("uniform"),
        "flags": v["flags"],
        "points_checked": c.get("points_checked"),  # a quick check stops once its drops are clearly in or out
    }
    row["graph_sha256"] = c["bundle"].manifest.model.sha256
    if not c["holds"]:
        row["why_not"] = _why_not(c, settings)
    if plan is not None:
        row["plan"] = dict(zip([layer.name for layer in layers], plan))
    if "timed_against_pick" in c:
        row["timed_against_pick"] = c["timed_against_pick"]
    if "final" in c:
        row["final"] = {k: c["final"].get(k) for k in ("holds", "robust_drop", "clean_drop", "reference_attacked")} | {
            "robust_accuracy": c["final"]["verify"]["robust_accuracy"],
            "clean_accuracy": c["final"]["verify"]["clean_accuracy"],
        }
    return row


def frontier_document(
    settings, layers, points, checked, uniform_checks, contenders, pick, final_reference, tune
) -> dict:
    rows = [_entry(config.name, c, None, layers, settings) for config, c in uniform_checks.items()]
    rows += [_entry(describe(layers, plan), c, plan, layers, settings) for plan, c in checked.items()]
    rows = _one_row_per_graph(rows)
    return {
        "schema": SCHEMA,
        "schema_version": 1,
        "settings": {
            k: v
            for k, v in asdict(settings).items()
            if k not in ("threat", "threads", "bench_seconds", "time_budget_s", "pins", "gdws_budgets")
        }
        | {"threat": {"norm": settings.threat.norm, "eps": settings.threat.eps}, "pins": dict(settings.pins)}
        | ({"gdws_budgets": list(settings.gdws_budgets)} if settings.with_gdws else {}),
        "layers": [asdict(layer) for layer in layers],
        "predicted_frontier": [
            {"plan": describe(layers, p.plan), "latency_ms": p.latency, "margin_loss": p.loss} for p in points
        ],
        "measured": rows,
        "final_reference": None
        if final_reference is None
        else {
            "robust_accuracy": final_reference["robust_accuracy"],
            "clean_accuracy": final_reference["clean_accuracy"],
            "n": settings.final_n,
            "attacked": final_reference["attacked"],
        },
        "acceptance": f"paired drop against the FP32 bundle on the same {settings.final_n} points, standard suite: "
        f"point estimate within the budget (its 95% interval reported); FP32 attacked first where the candidate "
        f"lost (an upper bound of the drop), everywhere only where that bound breaks the budget",
        "pick": None
        if pick is None
        else next(  # the row its graph is listed under
            (r["name"] for r in rows if pick[0] in (r["name"], *r.get("same_graph_as", ()))), pick[0]
        ),
        "cache": {
            "hits": tune.cache.hits,
            "misses": tune.cache.misses,
            "rejected_files": tune.cache.rejected,
            "recomputed_bundles": tune.recomputed_bundles,
        },
    }


def _why_not(c: dict, settings) -> str:
    """Which budget a candidate broke, with its figure."""
    reasons = []
    clean, robust = c["clean_drop"]["drop"], c["robust_drop"]["drop"]
    if clean > settings.max_clean_drop + 1e-12:
        reasons.append(f"clean drop {100 * clean:+.1f} pt > {100 * settings.max_clean_drop:g} pt")
    if settings.metric == "robust" and robust > settings.max_robust_drop + 1e-12:
        reasons.append(f"robust drop {100 * robust:+.1f} pt > {100 * settings.max_robust_drop:g} pt")
    return "; ".join(reasons) or "outside the budget"


def _one_row_per_graph(rows: list[dict]) -> list[dict]:
    """Configurations that exported to the same graph (uniform INT8 already keeps layer 0 in float, say) are one
    row: the first name, with the others under `same_graph_as`."""
    kept: dict[str, dict] = {}
    for row in rows:
        first = kept.get(row["graph_sha256"])
        if first is None:
            kept[row["graph_sha256"]] = row
        else:
            first.setdefault("same_graph_as", []).append(row["name"])
            if first.get("latency_ms") is None:
                first["latency_ms"] = row.get("latency_ms")
            if "final" in row and "final" not in first:
                first["final"] = row["final"]
    return list(kept.values())


def write_outputs(out: Path, document: dict, pick, plot: bool = True) -> None:
    """frontier.json, report.md, frontier.png (`plot`) and best/ (`pick`)."""
    write_file_atomic(out / "frontier.json", json.dumps(document, indent=1, sort_keys=True))
    if plot:
        tune_frontier_plot(document["measured"], out / "frontier.png", document["settings"])
    write_file_atomic(out / "report.md", report(document))
    if pick is not None:  # best/ swapped in whole by the bundle store: the old or the new pick, never half
        source = pick[1]["bundle"]
        files = {
            p.name: p.read_bytes()
            for p in sorted(source.path.iterdir())
            if p.is_file() and not p.is_symlink() and p.name != "manifest.json"
        }
        files["tune.json"] = json.dumps(
            {
                "pick": document["pick"],
                "settings": document["settings"],
                "measured": [r for r in document["measured"] if r["name"] == document["pick"]],
            },
            indent=1,
        ).encode()
        manifest = {k: v for k, v in source.manifest.document.items() if k != "files"}
        write_bundle(out / "best", files, manifest)


def report(document: dict) -> str:
    s = document["settings"]
    lines = [
        f"# Tune: {s['target']}, batch {s['batch']}, objective {s['objective']}, metric {s['metric']}",
        "",
        f"Budget: robust drop <= {100 * s['max_robust_drop']:g} pt, clean drop <= {100 * s['max_clean_drop']:g} pt "
        f"(L-{'inf' if s['threat']['norm'] == 'linf' else '2'} eps {s['threat']['eps']:.4g}).",
        "",
        *([f"Pinned layers: {', '.join(f'{k}={v}' for k, v in s['pins'].items())}.", ""] if s.get("pins") else []),
        *(
            [
                f"Time budget of {document['time_budget']['seconds']:g} s spent: the run stopped early in "
                f"{', '.join(document['time_budget']['stopped_in'])} (a rerun with more time continues from the cache).",
                "",
            ]
            if document.get("time_budget", {}).get("stopped_in")
            else []
        ),
        f"**Pick: {document['pick'] or ('not made yet' if document.get('in_progress') else 'none: no plan met the budget')}**",
        *(
            [
                "",
                "This tune is still running or was stopped; this page is rewritten as it goes, and a rerun continues "
                "from the cache.",
            ]
            if document.get("in_progress")
            else []
        ),
        "",
        *([f"Why: {document['pick_reason']}.", ""] if document.get("pick_reason") else []),
        "| configuration | latency (ms) | robust (quick) | 95% CI | clean | robust drop | holds | final (standard) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(document["measured"], key=lambda r: (r["latency_ms"] is None, r["latency_ms"] or 0)):
        final = r.get("final")
        shown = (
            _not_worth_a_check(r)
            if not final
            else (
                f"{100 * final['robust_accuracy']:.1f}% (drop "
                f"{'<= ' if final.get('reference_attacked', 'every point') != 'every point' else ''}"
                f"{100 * final['robust_drop']['drop']:+.1f} pt, "
                f"95% CI {100 * final['robust_drop']['ci95'][0]:+.1f}..{100 * final['robust_drop']['ci95'][1]:+.1f}); "
                f"{'accepted' if final['holds'] else 'rejected'}"
            )
        )
        latency = "-" if r["latency_ms"] is None else f"{r['latency_ms']:.3f}"
        name = r["name"] + (f" (same graph: {', '.join(r['same_graph_as'])})" if r.get("same_graph_as") else "")
        holds = "yes" if r["holds"] else f"no: {r.get('why_not', 'outside the budget')}"
        lines.append(
            f"| {name} | {latency} | {100 * r['robust_accuracy']:.1f}% | "
            f"{100 * r['robust_ci95'][0]:.1f}-{100 * r['robust_ci95'][1]:.1f} | {100 * r['clean_accuracy']:.1f}% | "
            f"{100 * r['robust_drop']['drop']:+.1f} pt | {holds} | {shown} |"
        )
    if document.get("uniform_not_checked"):
        lines += ["", "Not checked, being slower than a uniform configuration that held (a time budget's first pick): "
                  + ", ".join(document["uniform_not_checked"]) + "."]  # fmt: skip
    lines += _search_lines(document)
    lines += ["", document["acceptance"] + ".", "", "![frontier](frontier.png)", ""]
    return "\n".join(lines)


def _not_worth_a_check(row: dict) -> str:
    """The final column of a contender timed again beside the verified pick and found too little faster."""
    timed = row.get("timed_against_pick")
    if not timed or timed["final_check"]:
        return "-"
    return (
        f"not run: {1 + timed['gain']:.3f}x {timed['pick']} timed beside it, under the "
        f"{1 + timed['min_gain']:.2f}x a final check needs"
    )


def _search_lines(document: dict) -> list[str]:
    """The latency probes, then which frontier plans the bisection could check (those predicted faster than a
    uniform configuration that held)."""
    lines = _probe_lines(document.get("cost_model", {}).get("latency_check", {}))
    if bound := document.get("search_bound"):
        lines += ["", f"Bisection: {bound['predicted_faster']} of the {bound['frontier_points']} frontier plans are "
                  f"predicted faster than {bound['uniform']} ({bound['latency_ms']:.3f} ms), which held; only those "
                  "were candidates."]  # fmt: skip
    return lines


def _probe_lines(check: dict) -> list[str]:
    """The latency probes, one line each (in the cost model's ms)."""
    probes, island = check.get("gdws_probes"), check.get("island_probe")
    if not probes and not island:
        return []
    lines = ["", "Latency probes (a few layers changed among unchanged neighbours, against the same plan without the "
             "change; the difference per changed layer corrects the option's latency terms; in the cost model's ms):"]  # fmt: skip
    lines += [f"- {option} on {', '.join(p['layers'])}: predicted {p['predicted_change_ms']:+.4f} ms, measured "
              f"{p['measured_change_ms']:+.4f} ms, so {p['penalty_ms']:+.4f} ms per rewritten layer"
              for option, p in (probes or {}).items()]  # fmt: skip
    if island:
        lines.append(f"- fp32 islands among {island['precision']} layers ({', '.join(island['layers'])}): predicted "
                     f"{island['predicted_change_ms']:+.4f} ms, measured {island['measured_change_ms']:+.4f} ms, so "
                     f"{island['penalty_ms']:+.4f} ms per layer kept in float"
                     + (f" (measured {island['residual_ms']:+.4f}; a saving is not applied)"
                        if island.get("residual_ms", 0.0) < 0 else ""))  # fmt: skip
    return lines
