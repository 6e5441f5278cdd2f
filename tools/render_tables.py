"""The measured tables of README.md and docs/*.md, rendered from results/*.json (so each row traces to a command).

A page holds a table as a block `<!-- results:NAME -->` ... `<!-- /results:NAME -->`; the block is rendered
from results/NAME.json, with the CPU it was measured on. After a benchmark writes new results:

    python tools/render_tables.py --write     # rewrite every block
    python tools/render_tables.py --check     # exit 1 if a block is stale (tests/test_docs.py runs it)
    python tools/render_tables.py             # print every table
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- results:(?P<name>[a-z0-9_]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=name) -->)", re.S)


def machine_line(doc: dict) -> str:
    """The CPU a result was measured on: model, usable cores and the instruction sets that decide its kernels."""
    cpu = doc["machine"]["cpu"]
    flags = [f for f in cpu.get("flags", []) if f.startswith(("avx512_vnni", "avx_vnni", "amx", "avx512_bf16", "avx2"))]
    return f"{cpu.get('model', '?')}, {cpu.get('usable_cores', '?')} cores, {'/'.join(flags) or 'no AVX2'}"


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def cpu_matrix(doc: dict) -> str:
    lines = [
        f"`{doc['command']}` ({doc['machine']['cpu'].get('model', '?')}, {doc['threads']} threads, "
        "images/s, ratio to FP32 of the same run):",
        "",
        "| model | variant | batch 1 | batch 8 | batch 32 | batch 64 | model.onnx |",
        "|---|---|---|---|---|---|---|",
    ]
    rows: dict[tuple[str, str], dict] = {}
    for r in doc["results"]:
        rows.setdefault((r["model"], r["variant"]), {"bytes": r["model_bytes"]})[r["batch"]] = r
    for (model, variant), cells in rows.items():
        values = [
            f"{cells[b]['throughput']:.0f} ({cells[b]['x_fp32']:.2f}x)" if b in cells else "-" for b in (1, 8, 32, 64)
        ]
        lines.append(f"| {model} | {variant} | " + " | ".join(values) + f" | {cells['bytes'] / 2**20:.2f} MB |")
    return "\n".join(lines)


def quantized_speed(doc: dict) -> str:
    lines = [
        f"`{doc['command']}`:",
        "",
        "| variant | batch | images/s | x FP32 | x ORT quantize_static | model.onnx | size vs FP32 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        lines.append(
            f"| {r['variant']} | {r['batch']} | {r['throughput_median']:.0f} | {r['x_fp32']:.2f} | "
            f"{r['x_ort_quantize_static']:.2f} | {r['model_bytes'] / 2**20:.1f} MB | {r['size_vs_fp32']:.3f} |"
        )
    return "\n".join(lines)


def repeatability(doc: dict) -> str:
    lines = [
        f"`{doc['command']}`:",
        "",
        "| bundle | batch | p50 run 1 (ms) | p50 run 2 (ms) | spread |",
        "|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        lines.append(
            f"| resnet18 {r['variant']} | {r['batch']} | {r['p50_ms_run1']:.2f} | {r['p50_ms_run2']:.2f} | "
            f"{100 * r['spread']:.1f}% |"
        )
    return "\n".join(lines)


def quantized_accuracy(doc: dict) -> str:
    rows = doc["results"]
    lines = [
        f"`{doc['command']}` (calibration on {doc['calibration']}, default MSE ranges and GPTQ weight rounding; "
        "engine = ONNX Runtime CPU; in brackets: the same bundle with round-to-nearest weights):",
        "",
        "| model | precision / target | FP32 acc | engine acc | delta (pt) | top-1 agree w/ FP32 | twin-engine agree | size vs FP32 |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def nearest(r: dict) -> dict | None:
        return next(
            (
                x
                for x in rows
                if x.get("weight_rounding") == "nearest"
                and x["model"] == r["model"]
                and x["precision"] == r["precision"]
                and x["target"] == r["target"]
            ),
            None,
        )

    for r in (
        r
        for r in rows
        if r["calib_method"] == "mse" and r.get("weight_rounding", "gptq") == "gptq" and not r.get("min_agreement")
    ):
        n = nearest(r)
        delta = f"{r['delta_pt']:+.2f}" + (f" ({n['delta_pt']:+.2f})" if n else "")
        agree = f"{100 * r['top1_agreement_fp32']:.2f}%" + (f" ({100 * n['top1_agreement_fp32']:.2f}%)" if n else "")
        lines.append(
            f"| {r['model']} | {r['precision']} / {r['target']} | {100 * r['fp32_accuracy']:.2f}% | "
            f"{100 * r['accuracy']:.2f}% | {delta} | {agree} | "
            f"{100 * r['twin_engine_agreement']:.2f}% | {r['size_vs_fp32']:.3f} |"
        )
    fallback = [r for r in rows if r.get("min_agreement")]
    if fallback:
        lines += [
            "",
            f"INT8 `ort-cpu` with `--min-agreement {fallback[0]['min_agreement']:g}` (agreement measured at export on "
            "1,000 held-out training images; figures here on the test set):",
            "",
            "| model | layers kept FP32 | engine acc | delta (pt) | top-1 agree w/ FP32 | size vs FP32 |",
            "|---|---|---|---|---|---|",
        ]
        for r in fallback:
            lines.append(
                f"| {r['model']} | {', '.join(r['kept_fp32']) or 'none'} | {100 * r['accuracy']:.2f}% | "
                f"{r['delta_pt']:+.2f} | {100 * r['top1_agreement_fp32']:.2f}% | {r['size_vs_fp32']:.3f} |"
            )
    lines += [
        "",
        "Calibration methods, INT8 `ort-cpu` (accuracy delta in points / top-1 agreement with FP32):",
        "",
        "| model | minmax | percentile 99.99 | entropy | mse (default) |",
        "|---|---|---|---|---|",
    ]
    for model in dict.fromkeys(r["model"] for r in rows):
        cells = []
        for method in ("minmax", "percentile", "entropy", "mse"):
            r = next(
                x
                for x in rows
                if x["model"] == model
                and x["calib_method"] == method
                and x["precision"] == "int8"
                and x["target"] == "ort-cpu"
                and x.get("weight_rounding", "gptq") == "gptq"
                and not x.get("min_agreement")
            )
            cells.append(f"{r['delta_pt']:+.2f} / {100 * r['top1_agreement_fp32']:.2f}%")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verify_real_models(doc: dict) -> str:
    lines = [
        f"`{doc['command']}` (L-inf, the eps each model was trained for, first {doc['results'][0]['n']} test points, "
        f"suite `{doc['results'][0]['suite']}`; R = torch model, S = twin, E = ONNX Runtime engine):",
        "",
        "| model | eps | bundle | clean R / S / E | robust E (95% CI) | gradient attacks only | transfer from R | Square on E adds | flags |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    if "broke" in doc["results"][0]:  # the cascade: what each attack broke beyond the ones before it
        lines[2] = lines[2].replace("| transfer from R |", "| transfer from R broke |")
    for r in doc["results"]:
        lo, hi = r["robust_ci95"]
        eps = f"{r['eps'] * 255:.0f}/255" if r["eps"] < 0.1 else f"{r['eps']:g}"
        transfer = next((v for k, v in r["attacks"].items() if k.startswith("transfer")), None)
        if "broke" in r:
            transfer = next((v for k, v in r["broke"].items() if k.startswith("transfer")), None)
        square_adds = 100 * (r["robust_gradient_attacks_only"] - r["robust_E"])
        lines.append(
            f"| {r['model']} | {eps} | {r['precision']} | {100 * r['clean_R']:.1f} / {100 * r['clean_S']:.1f} / "
            f"{100 * r['clean_E']:.1f}% | **{100 * r['robust_E']:.1f}%** ({100 * lo:.1f}-{100 * hi:.1f}) | "
            f"{100 * r['robust_gradient_attacks_only']:.1f}% | "
            f"{'-' if transfer is None else (f'{transfer} points' if 'broke' in r else f'{100 * transfer:.1f}%')} | "
            f"{square_adds:.1f} pt | "
            f"{', '.join(r['flags']) or 'none'} |"
        )
    return "\n".join(lines)


def verify_sweep(doc: dict) -> str:
    lines = [
        f"`{doc['command']}` (FP32 bundles, `standard` suite, first {doc['results'][0]['n']} test points):",
        "",
        "| model | threat | robust | accuracy along the sweep (eps: accuracy) | flags |",
        "|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        curve = ", ".join(f"{p['eps']:.3g}: {100 * p['accuracy']:.1f}%" for p in r["eps_curve"])
        lines.append(
            f"| {r['model']} | {'L-inf' if r['norm'] == 'linf' else 'L2'} {r['eps']:g} | {100 * r['robust']:.1f}% | "
            f"{curve} | {', '.join(r['flags']) or 'none'} |"
        )
    return "\n".join(lines)


def tune_sensitivity(doc: dict) -> str:
    per_point = all("in_memory_mean_drop" in row for r in doc["results"] for row in r["rows"])
    measured = (
        "the points' mean margin loss under PGD-10 on 64 calibration images"
        if per_point
        else "the drop of the mean margin under PGD-10 on 64 calibration images"
    )
    lines = [
        f"`{doc['command']}` (per layer at INT8 and INT4, target ort-cpu: {measured}, in memory and from an "
        "exported single-layer bundle"
        + ("; below 0.001, the candidates each measure reads as harmless):" if per_point else "):"),
        "",
        "| model | eps | layers | s per candidate, in memory | s per candidate, exported | rank correlation INT8 / INT4 / all | "
        "uniform INT8 + INT4 exports (once) |"
        + (" below 0.001: mean margin / per point / clean per point |" if per_point else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if per_point else ""),
    ]
    for r in doc["results"]:
        eps = f"{r['eps'] * 255:.0f}/255"
        exported = r["exported_s_per_candidate"]
        both = sum("exported_drop" in row for row in r["rows"])
        line = (
            f"| {r['model']} | {eps} | {r['layers']} | {r['in_memory_s_per_candidate']:.2f} | "
            + (f"{exported:.2f} ({exported / r['in_memory_s_per_candidate']:.1f}x) | " if exported else "- | ")
            + f"{r['spearman']['int8']:.2f} / {r['spearman']['int4']:.2f} / {r['spearman_all']:.2f} (on {both}) | "
            f"{r['uniform_exports_s']:.0f} s |"
        )
        if per_point:
            low = [
                sum(row[k] < 1e-3 for row in r["rows"])
                for k in ("in_memory_mean_drop", "in_memory_drop", "in_memory_clean_drop")
            ]
            line += f" {low[0]} / {low[1]} / {low[2]} of {len(r['rows'])} |"
        lines.append(line)
    return "\n".join(lines)


def tune_baselines(doc: dict) -> str:
    """Per model and runtime: each bundle's speed against the vendor's INT8 of the same interleaved run, and where
    verified, its robust accuracy and paired drop against FP32 on the same points."""
    verified = any("robust_accuracy" in v for r in doc["results"] for v in r["variants"].values())
    lines = [
        f"`{doc['command']}` (ms per image at batch 32 and ms at batch 1, each bundle on the runtime that ships it; "
        "x vendor = the vendor's INT8 time over this one's, from one interleaved run"
        + (f"; standard suite on {doc['results'][0]['final_n']} points, paired against FP32):" if verified else "):"),
        "",
        "| model | runtime | bundle | b32 ms/image | x vendor | b1 ms | x vendor |"
        + (" robust | drop vs FP32 (95% CI) | clean |" if verified else ""),
        "|---|---|---|---|---|---|---|" + ("---|---|---|" if verified else ""),
    ]
    for r in doc["results"]:
        for name, v in r["variants"].items():
            line = (
                f"| {r['model']} | {r['target']} | {name} | {v['throughput_b32_ms_per_image']:.2f} | "
                f"{v['throughput_vs_vendor']:.2f}x | {v['latency_b1_ms']:.2f} | {v['latency_vs_vendor']:.2f}x |"
            )
            if verified:
                drop = v["robust_drop"]
                line += (
                    f" {100 * v['robust_accuracy']:.1f}% | {100 * drop['drop']:+.1f} pt "
                    f"({100 * drop['ci95'][0]:+.1f}..{100 * drop['ci95'][1]:+.1f}) | {100 * v['clean_accuracy']:.1f}% |"
                )
            lines.append(line)
    return "\n".join(lines)


def tune_models(doc: dict) -> str:
    first = doc["results"][0]
    lines = [
        f"`{doc['command']}` (target {first.get('target', 'ort-cpu')}, batch {first.get('batch', 1)}, {first.get('objective', 'latency')}; budgets 1 pt robust and 1 pt clean, paired against "
        "FP32; quick suite on 200 points for candidates, standard on 500 for the pick):",
        "",
        "| model | tune | pick | ms (per batch, or per image for throughput) | fastest uniform that holds (ms) | robust / clean (standard, 500) | "
        "robust drop vs FP32 (95% CI) | tune time | rerun |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        for metric in ("robust", "clean"):
            t = r.get(metric)
            if not t:
                continue
            final = t["pick_final"] or {}
            drop = final.get("robust_drop") or {}
            shown = f"{100 * final['robust_accuracy']:.1f}% / {100 * final['clean_accuracy']:.1f}%" if final else "-"
            ci = (
                f"{100 * drop['drop']:+.1f} pt ({100 * drop['ci95'][0]:+.1f}..{100 * drop['ci95'][1]:+.1f})"
                if drop
                else "-"
            )
            rerun = f"{r['rerun_seconds']:.0f} s" if metric == "robust" and "rerun_seconds" in r else "-"
            pick_ms = f"{t['pick_latency_ms']:.3f}" if t["pick_latency_ms"] is not None else "-"
            uniform_ms = f"{t['fastest_holding_uniform_ms']:.3f}" if t["fastest_holding_uniform_ms"] else "-"
            lines.append(
                f"| {r['model']} | {metric}-driven | {t['pick']} | {pick_ms} | {uniform_ms} | {shown} | {ci} | "
                f"{t['seconds']:.0f} s | {rerun} |"
            )
    for r in doc["results"]:
        for metric in ("robust", "clean"):
            t = r.get(metric) or {}
            if r.get("time_budget_s") and t:
                cut = ", ".join(t.get("stopped_in", [])) or "nothing"
                skipped = ", ".join(t.get("uniform_not_checked", [])) or "none"
                lines += ["", f"{r['model']}, {metric}-driven, time budget {r['time_budget_s']:g} s: the budget cut "
                          f"{cut}; uniform configurations not checked (slower than one that held): {skipped}."]  # fmt: skip
    metric = "robust" if all(r.get("robust") for r in doc["results"]) else "clean"  # a clean-driven run alone
    if any(r.get("space", "precision") != "precision" for r in doc["results"]):
        lines += [
            "",
            f"Every uniform configuration of the {metric}-driven tunes, from the same final interleaved run "
            "(quick suite, 200 points, paired against FP32):",
            "",
            "| model | configuration | ms | robust (quick) | robust drop | clean | holds |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in doc["results"]:
            for name, u in sorted(r[metric]["uniform"].items(), key=lambda item: item[1]["latency_ms"] or 0):
                ms = f"{u['latency_ms']:.3f}" if u["latency_ms"] is not None else "-"
                lines.append(
                    f"| {r['model']} | {name} | {ms} | {100 * u['robust_accuracy']:.1f}% | "
                    f"{100 * u['robust_drop']:+.1f} pt | {100 * u['clean_accuracy']:.1f}% | "
                    f"{'yes' if u['holds'] else 'no'} |"
                )
    return "\n".join(lines)


def int8_roofline(doc: dict) -> str:
    """Each bundle's MACs per second against the runtime's fastest INT8 convolution; OpenVINO's per layer."""
    lines = [
        f"`{doc['command']}` (batch {doc['results'][0]['batch']}; the roof: the fastest of chains of eight Q/DQ 3x3 "
        "convolutions at ResNet-18's stage shapes, channels x map, each timed interleaved with the bundle, best round "
        "of each; model: the bundle's MACs per image over its time per image):",
        "",
        "| bundle | runtime | ms per image | model GMAC/s | roof GMAC/s (per shape) | model / roof |",
        "|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        shapes = ", ".join(f"{shape} {rate:.0f}" for shape, rate in r["roof_gmacs_by_shape"].items())
        lines.append(
            f"| {r['bundle']} | {r['backend']} | {r['model_ms_per_image']:.3f} | {r['model_gmacs']:.0f} | "
            f"**{r['roof_gmacs']:.0f}** ({shapes}) | {100 * r['model_of_roof']:.0f}% |"
        )
    tabled = False
    for r in doc["results"]:
        if not r.get("layers"):
            continue
        mapped = 100 * r["weighted_ms"] / r["profile_total_ms"]
        kinds: dict[str, list[float]] = {}
        for layer in r["layers"]:
            rewritten = layer["layer"].endswith(("depthwise", "pointwise"))
            kind = layer["layer"].rsplit(".", 1)[-1] if rewritten else "unrewritten"
            kinds.setdefault(kind, []).append(layer["of_roof"])
        spread = "; ".join(
            f"{kind} layers {100 * min(v):.0f}-{100 * max(v):.0f}% of the roof" for kind, v in kinds.items()
        )
        lines += [
            "",
            f"{r['bundle']} on {r['backend']}: {spread} ({mapped:.0f}% of its profiled time maps to these layers).",
        ]
        if tabled or set(kinds) != {"unrewritten"}:
            continue
        tabled = True  # one full table: the first plain bundle's
        lines += [
            "",
            "| layer | MMAC per image | ms per batch | GMAC/s | of the roof |",
            "|---|---|---|---|---|",
        ]
        for layer in r["layers"]:
            lines.append(
                f"| {layer['layer']} | {layer['mmacs']:.1f} | {layer['ms']:.3f} | {layer['gmacs']:.0f} | "
                f"{100 * layer['of_roof']:.0f}% |"
            )
    return "\n".join(lines)


def tune_layers(doc: dict) -> str:
    """Per layer of a tune's cost model: what INT8 and the fastest GDWS option save, and what each costs in margin."""
    lines = []
    for r in doc["results"]:
        s, u = r["settings"], r["uniform_ms"]
        int8 = u.get("uniform int8")
        lines += [
            f"`{doc['command']}` (target {s['target']}, batch {s['batch']} {s['objective']}; the tune's cost model: ms "
            f"per {'image' if s['objective'] == 'throughput' else 'batch'} saved against FP32's "
            f"{r['fp32_ms']:.3f}, sensitivity = the points' mean margin loss on {s['sensitivity_n']} calibration images; "
            "sorted by what the fastest GDWS option saves beyond INT8):",
            "",
            "| layer | MMACs | INT8 saves (ms) | INT8 sensitivity | fastest GDWS option | saves beyond INT8 (ms) | its sensitivity |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in r["layers"]:
            gdws = row["gdws_option"]
            lines.append(
                f"| {row['layer']} | {row['macs'] / 1e6:.1f} | {-row['int8_ms']:.3f} | {row['int8_sensitivity']:.3f} | "
                + (
                    f"{gdws} | {-row['gdws_beyond_int8_ms']:.3f} | {row['gdws_sensitivity']:.3f} |"
                    if gdws
                    else "- | - | - |"
                )
            )
        lines += [
            "",
            f"Predicted: every layer INT8 {r['predicted_all_int8_ms']:.3f} ms, every layer at its fastest option "
            f"{r['predicted_fastest_ms']:.3f} ms ({r['predicted_all_int8_ms'] / r['predicted_fastest_ms']:.2f}x INT8)"
            + (
                f"; measured in the tune's final run: uniform INT8 {int8:.3f}, uniform FP32 {u['uniform fp32']:.3f}"
                if int8 and "uniform fp32" in u
                else ""
            )
            + ".",
        ]
    return "\n".join(lines)


def robust_calibration(doc: dict) -> str:
    first = doc["results"][0]
    lines = [
        f"`{doc['command']}` (INT8 ort-cpu, {first['suite']} suite on {first['n']} test points, paired against "
        "the FP32 bundle on the same points):",
        "",
        "| model | eps | calibration images | robust | robust drop vs FP32 (95% CI) | clean | 8-bit weights |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        eps = f"{round(r['eps'] * 255)}/255" if abs(r["eps"] * 255 - round(r["eps"] * 255)) < 1e-6 else f"{r['eps']:g}"
        lines.append(
            f"| {r['model']} | {eps} | FP32 bundle | {100 * r['fp32']['robust']:.1f}% | - | "
            f"{100 * r['fp32']['clean']:.1f}% | - |"
        )
        for name in ("clean 256", "128 clean + 128 pgd", "256 clean + 256 pgd"):
            c = r.get(name)
            if c is None:
                continue
            d = c["robust_drop"]
            weights = (c.get("int8_weights") or {}).get("range", "-")
            lines.append(
                f"| {r['model']} | {eps} | {name} | {100 * c['robust']:.1f}% | {100 * d['drop']:+.1f} pt "
                f"({100 * d['ci95'][0]:+.1f}..{100 * d['ci95'][1]:+.1f}) | {100 * c['clean']:.1f}% | {weights} |"
            )
    return "\n".join(lines)


def verify_distributed(doc: dict) -> str:
    r = doc["results"]
    lines = [
        f"`{doc['command']}` ({r['model']}, L-inf eps {r['eps']}, batches of {r.get('batch_size', 128)}, one thread "
        "per process; wall: the whole "
        "command from outside, start-up included; in verify: verify.json's seconds_total):",
        "",
        "| processes | suite | n | wall (s) | in verify (s) | ms per image (wall / in verify) | robust accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for workers, runs in r["runs"].items():
        for run in runs:
            lines.append(
                f"| {workers} | {r['suite']} | {r['n']:,} | {run['wall_seconds']:.1f} | {run['verify_seconds']:.1f} | "
                f"{1e3 * run['wall_seconds'] / r['n']:.1f} / {1e3 * run['verify_seconds'] / r['n']:.1f} | "
                f"{100 * run['robust_accuracy']:.1f}% |"
            )
    for n, run in sorted(r["flat"]["sizes"].items(), key=lambda item: int(item[0])):
        lines.append(
            f"| {r['flat']['processes']} | {r['flat']['suite']} | {int(n):,} | {run['wall_seconds']:.1f} | "
            f"{run['verify_seconds']:.1f} | {run['wall_ms_per_image']:.2f} / {run['verify_ms_per_image']:.2f} | "
            f"{100 * run['robust_accuracy']:.1f}% |"
        )
    lines += [
        "",
        f"2 processes against 1, the same figures: **{r['speedup_wall']:.2f}x** wall, "
        f"**{r['speedup_in_verify']:.2f}x** in verify.",
    ]
    return "\n".join(lines)


def cluster_plan(doc: dict) -> str:
    r = doc["results"]
    a = r["assumed"]
    lines = [
        f"`{doc['command']}`: passes per attacked point counted by verify on {r['counts_measured_on']['model']} "
        f"({r['counts_measured_on']['n']} points, {r['counts_measured_on']['suite']}); GPU time from *assumed* "
        f"rates ({a['fwd_bwd_img_s']:g} images/s forward + input gradient, {a['fwd_img_s']:g} forward only, per "
        f"GPU) and an assumed cascade (APGD-CE on {100 * a['clean']:.0f}% of {a['images']:,} images, the later "
        f"attacks on the {100 * a['robust']:.0f}% left robust):",
        "",
        "| attack | S forward+backward per point | S forward per point | E images per point | GPU-hours |",
        "|---|---|---|---|---|",
    ]
    for name, c in r["passes_per_attacked_point"].items():
        lines.append(
            f"| {name} | {c['S_forward_backward']:.0f} | {c['S_forward']:.0f} | {c['E_images']:.0f} | "
            f"{r['gpu_hours'][name]:.1f} |"
        )
    lines.append(f"| **total** | | | | **{r['gpu_hours']['total']:.1f}** |")
    lines += [
        "",
        "| GPUs | batches of " + str(a["batch"]) + " | on the busiest rank | balance | wall hours |",
        "|---|---|---|---|---|",
    ]
    for gpus, plan in r["plans"].items():
        lines.append(
            f"| {gpus} | {plan['batches']} | {plan['batches_on_busiest_rank']} | {plan['balance']:.2f} | "
            f"{plan['wall_hours_with_balance']:.2f} (ideal {plan['wall_hours_ideal']:.2f}) |"
        )
    return "\n".join(lines)


def autoattack_referee(doc: dict) -> str:
    lines = [
        f"`{doc['command']}` (FP32 bundles; "
        + (
            "both sides in the same run"
            if all(r.get("autoattack_seconds") for r in doc["results"])
            else "AutoAttack's figures from the earlier run named, same model, points and seed"
        )
        + f"; {machine_line(doc)}):",
        "",
        "| model | eps | n | ours (on E) | AutoAttack standard | ours - AutoAttack | time ours / AutoAttack |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        eps = f"{r['eps'] * 255:.0f}/255" if r["eps"] < 0.1 else f"{r['eps']:g}"
        ours = r.get("ours", r.get("ours_standard"))
        lines.append(
            f"| {r['model']} | {eps} | {r['n']} | {100 * ours:.1f}% (`{r.get('suite', 'standard')}`) | "
            f"{100 * r['autoattack_standard']:.1f}% | {round(r['difference_pt'], 1) + 0.0:+.1f} pt | "
            + (
                f"{r['ours_seconds']:.0f} s / {r['autoattack_seconds']:.0f} s "
                f"({r['autoattack_seconds'] / r['ours_seconds']:.1f}x faster) |"
                if r.get("autoattack_seconds")
                else f"{r['ours_seconds']:.0f} s / - (AutoAttack's figure from an earlier run) |"
            )
        )
    profiled = [r for r in doc["results"] if any("gradient_passes" in a for a in r.get("ours_attacks", {}).values())]
    if profiled:
        lines += [
            "",
            "Where our time went (per attack: points attacked / broken, gradient passes, engine images, s):",
            "",
        ]
    for r in profiled:
        eps = f"{r['eps'] * 255:.0f}/255" if r["eps"] < 0.1 else f"{r['eps']:g}"
        tp = r.get("ours_throughput") or {}
        parts = [
            f"{name} {a['points_attacked']}/{a['broke']}, {a['gradient_passes']}, {a['engine_images']}, {a['seconds']:g} s"
            for name, a in r["ours_attacks"].items()
            if a.get("points_attacked")
        ]
        where = f"S {tp.get('S_gradient_images_per_s', 0):.0f} img/s ({r.get('ours_gradient_precision')}, "
        where += f"{r.get('ours_attack_layout')}), E {tp.get('E_images_per_s', 0):.0f} img/s"
        lines.append(f"- {r['model']} at {eps}: " + "; ".join(parts) + f". {where}.")
    return "\n".join(lines)


def attack_speed(doc: dict) -> str:
    lines = [
        f"`{doc['command']}` ({doc['machine']['cpu'].get('model', '?')}, {doc['torch_threads']} threads):",
        "",
        "| model | batch x steps | reference loop | AutoAttack APGD-CE | ours PGD on R | ours APGD-CE on R | ours PGD on S "
        "| PGD: ours / loop | APGD: ours / AutoAttack | layout R / S |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        v = r["images_x_steps_per_s"]
        lines.append(
            f"| {r['model']} | {r['batch']} x {r['steps']} | {v['reference_loop']:.0f} | {v['autoattack_apgd_ce']:.0f} "
            f"| {v['ours_pgd_on_R']:.0f} | {v['ours_apgd_ce_on_R']:.0f} | {v['ours_pgd_on_S']:.0f} "
            f"| **{r['ours_pgd_vs_reference_loop']:.2f}x** | **{r['ours_apgd_vs_autoattack_apgd']:.2f}x** "
            f"| {r['layout_R']} / {r['layout_S']} |"
        )
    return "\n".join(lines)


def verify_time(doc: dict) -> str:
    r = doc["results"][0]
    return (
        f"`{doc['command']}`: the `standard` suite on {r['n']} CIFAR-10 test images ({r['model']}, FP32 bundle, "
        f"eps {r['eps']}, engine {r['backend']}, sweep off) took **{r['seconds']:.0f} s** on this CPU "
        f"({doc['machine']['cpu'].get('model', '?')}); robust accuracy {100 * r['robust_accuracy']:.1f}%, "
        f"clean {100 * r['clean_accuracy']:.1f}%."
    )


def real_size_walkthrough(doc: dict) -> str:
    rows = ["| step | command | time here |", "|---|---|---|"]
    for step in doc["results"]:
        command = step["command"].replace("../shared/data/datasets/", "")
        rows.append(f"| {step['step']} | `{command}` | {_step_time(step)} |")
    return "\n".join(rows) + f"\n\n{_walkthrough_total(doc)}"


def readme_walkthrough(doc: dict) -> str:
    rows = ["| example | time here |", "|---|---|"]
    rows += [f"| {step['step']} | {_step_time(step)} |" for step in doc["results"]]
    return "\n".join(rows) + f"\n\n{_walkthrough_total(doc)}"


def _step_time(step: dict) -> str:
    return _duration(step["seconds"]) + (f" (exit {step['returncode']})" if step["returncode"] else "")


def _walkthrough_total(doc: dict) -> str:
    return f"All blocks: {_duration(sum(step['seconds'] for step in doc['results']))} (`{doc['command']}`)."


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def defense_sap(doc: dict) -> str:
    lines = [
        f"`{doc['command']}` (L-inf, first N CIFAR-10 test points; robust = per-example worst case on the engine):",
        "",
        "| model | defense | eps | n | clean | naive PGD-20, one draw per step | verified (`{suite}` suite) | expected (one run) | stable predictions | time |".format(
            suite=doc["results"][0]["suite"]
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        for name, label in (("base_verify", "none (base)"), ("sap_verify", r["defense"])):
            v = r[name]
            lo, hi = v["robust_accuracy_ci95"]
            naive = f"{100 * r['sap_naive_pgd20_one_draw']:.1f}%" if name == "sap_verify" else "-"
            expected = "-" if v["expected_robust_accuracy"] is None else f"{100 * v['expected_robust_accuracy']:.1f}%"
            lines.append(
                f"| {r['model']} | {label} | {r['eps']} | {r['n']} | {100 * v['clean_accuracy']:.1f}% | {naive} "
                f"| **{100 * v['robust_accuracy']:.1f}%** ({100 * lo:.1f}-{100 * hi:.1f}) | {expected} "
                f"| {100 * v['stable_prediction_fraction']:.1f}% | {v['seconds']:.0f} s |"
            )
    return "\n".join(lines)


def defense_squeeze(doc: dict) -> str:
    r0 = doc["results"][0]
    lines = [
        f"`{doc['command']}` (L-inf at each model's training eps, first {r0['n']} test points, `{r0['suite']}` "
        "suite; robust = per-example worst case on the engine):",
        "",
        "| model | squeezers | variant | clean | robust (95% CI) | gradient attacks alone | flags |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = {
        "base": "base (no defense)",
        "squeeze_no_bpda": "squeeze mode, plain gradients (`--no-bpda`)",
        "squeeze": "squeeze mode, BPDA (verify's default)",
    }
    for r in doc["results"]:
        for key, label in labels.items():
            v = r[key]
            lo, hi = v["robust_accuracy_ci95"]
            lines.append(
                f"| {r['model']} | {r['squeezers']} | {label} | {100 * v['clean_accuracy']:.1f}% "
                f"| **{100 * v['robust_accuracy']:.1f}%** ({100 * lo:.1f}-{100 * hi:.1f}) "
                f"| {100 * v['gradient_attacks_only']:.1f}% | {', '.join(v['flags']) or 'none'} |"
            )
    lines += [
        "",
        "Detect mode (threshold for 5% false positives on clean training images):",
        "",
        "| model | squeezers | FPR on test | unaware attack fools | detector flags of those | robust, unaware attack "
        "(flagged = caught) | robust, detector-aware attack (95% CI) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        d = r["detect"]
        u = d["unaware_attack"]
        lo, hi = d["robust_accuracy_detector_aware_ci95"]
        lines.append(
            f"| {r['model']} | {r['squeezers']} | {100 * d['false_positive_rate_on_test']:.1f}% "
            f"| {100 * u['fooled']:.1f}% | {100 * u['detection_rate']:.1f}% "
            f"| {100 * u['robust_accuracy_with_detector']:.1f}% "
            f"| **{100 * d['robust_accuracy_detector_aware']:.1f}%** ({100 * lo:.1f}-{100 * hi:.1f}) |"
        )
    return "\n".join(lines)


def defense_empir(doc: dict) -> str:
    r0 = doc["results"][0]
    lines = [
        f"`{doc['command']}` (L-inf, first {r0['n']} test points, `{r0['suite']}` suite, members trained here "
        "without adversarial training; robust = per-example worst case on the engine):",
        "",
        "| dataset | eps | model | clean | robust (95% CI) | gradient attacks alone | flags |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        eps = f"{r['eps'] * 255:.0f}/255" if r["eps"] < 0.05 else f"{r['eps']:g}"
        ens = "EMPIR " + "+".join(r["members"])
        entries = [
            (f"{ens}, attacks on the vote (naive)", r["naive_attack_on_vote"]),
            (
                f"{ens}, verify's default: consistent loss"
                + (" + every majority of members" if r.get("majority_attacks") else ""),
                r["verified_consistent_loss"],
            ),
        ]
        entries += [(f"member {m['member']} alone", m) for m in r["member_alone"]]
        for label, v in entries:
            lo, hi = v["robust_accuracy_ci95"]
            lines.append(
                f"| {r['dataset']} | {eps} | {label} | {100 * v['clean_accuracy']:.1f}% "
                f"| **{100 * v['robust_accuracy']:.1f}%** ({100 * lo:.1f}-{100 * hi:.1f}) "
                f"| {100 * v['gradient_attacks_only']:.1f}% | {', '.join(v['flags']) or 'none'} |"
            )
    for r in doc["results"]:
        f = r.get("int8_vs_float_kernels")
        if f:
            lines.append(
                f"\n{r['dataset']}: the ensemble bundle runs {f['quantized_convs_on_int8']} member convs on "
                f"INT8 kernels (`--precision int8`); against the float-kernel export, vote agreement "
                f"{100 * f['vote_agreement']:.2f}% on {f['images']} test images, max |log-prob difference| "
                f"{f['max_abs_log_prob_diff']:.1e}."
            )
    return "\n".join(lines)


def gdws_speed(doc: dict) -> str:
    macs = doc["mac_ratio"]["model"]
    lines = [
        f"`{doc['command']}` ({doc['model']}; {doc['machine']['cpu'].get('model', '?')}, {doc['threads']} threads, "
        f"images/s, median of {doc['rounds']} interleaved rounds). GDWS: whole model {macs['original'] / 1e6:.0f}M -> "
        f"{macs['gdws'] / 1e6:.0f}M MACs (**{macs['ratio']:.2f}x**), budget {doc['budget']:.3f} of the rewritable convs:",
        "",
        "| variant | batch 1 | x original | batch 32 | x original |",
        "|---|---|---|---|---|",
    ]
    rows: dict[str, dict] = {}
    for r in doc["results"]:
        rows.setdefault(r["variant"], {})[r["batch"]] = r
    for variant, cells in rows.items():
        values = []
        for batch in (1, 32):
            r = cells.get(batch)
            ratio = r.get("x_original_same_precision") if r else None
            values += [
                f"{r['throughput_median']:.0f}" if r else "-",
                "-"
                if ratio is None
                else (f"**{ratio:.2f}x**" if variant in ("gdws fp32", "gdws int8") else f"{ratio:.2f}x"),
            ]
        lines.append(f"| {variant} | " + " | ".join(values) + " |")
    profiles = doc.get("profiles_ms_by_op") or {}
    if profiles:
        ops = sorted({op for p in profiles.values() for op in p if op != "ms_per_batch32"},
                     key=lambda op: -max(p.get(op, 0.0) for p in profiles.values()))  # fmt: skip
        lines += [
            "",
            f"Where the INT8 time goes at batch 32 ({doc.get('runtime', 'the runtime')}'s own per-layer profile, ms per "
            "batch of 32, summed by op type):",
            "",
            "| variant | total | " + " | ".join(ops) + " |",
            "|---|---|" + "---|" * len(ops),
        ]
        for name, p in profiles.items():
            cells = [f"{p[op]:.1f}" if op in p else "-" for op in ops]
            lines.append(f"| {name} | {p['ms_per_batch32']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def autoattack_seed_spread(doc: dict) -> str:
    sides = sorted({r["side"] for r in doc["results"]})
    seeds = sorted({r["seed"] for r in doc["results"]})
    cell = {(r["side"], r["seed"]): r for r in doc["results"]}
    lines = [
        f"`{doc['command']}` (test point {doc['point']}, eps {doc['eps'] * 255:.0f}/255; broken: yes/no per seed):",
        "",
        "| attack | " + " | ".join(f"seed {s}" for s in seeds) + " | broken |",
        "|---|" + "---|" * (len(seeds) + 1),
    ]
    for side in sides:
        marks = ["yes" if cell[(side, s)]["broken"] else "no" for s in seeds]
        lines.append(f"| {side} | " + " | ".join(marks) + f" | {doc['broken_of_seeds'][side]} |")
    return "\n".join(lines)


def gdws_sweep(doc: dict) -> str:
    lines = [
        f"`python benchmarks/gdws_sweep.py` (both models; FP32 bundles; verify `{doc['results'][0]['suite']}` suite, L-inf, "
        "transfer from the original model included; robust = per-example worst case on the engine):",
        "",
        "| model | allocation | budget | beta | MACs (whole model) | clean | robust (95% CI) | bundle vs torch max abs dlogit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    order = {"original": 0, "per-layer": 1, "frobenius": 2, "alpha": 3}
    for r in sorted(doc["results"], key=lambda r: (r["model"], order[r["weighting"]], -r["budget"])):
        lo, hi = r["robust_ci95"]
        label = {
            "original": "original model",
            "per-layer": "per-layer budget, Frobenius (default)",
            "frobenius": "one beta, Frobenius (alpha = 1)",
            "alpha": "one beta, noise gains (eq. 8)",
        }[r["weighting"]]
        lines.append(
            f"| {r['model']} (n={r['n']}, eps {255 * r['eps']:.0f}/255) | {label} | {r['budget']:.2f} | {r['beta']:.3g} "
            f"| {r['mac_ratio']:.2f}x fewer | {100 * r['clean']:.1f}% | **{100 * r['robust']:.1f}%** "
            f"({100 * lo:.1f}-{100 * hi:.1f}) | {r.get('bundle_vs_torch_max_abs_logit_diff', float('nan')):.1e} |"
        )
    return "\n".join(lines)


def dq_baselines(doc: dict) -> str:
    """One row per model, method and bits; a column per eps (clean accuracy does not depend on eps)."""
    r0 = doc["results"][0]
    lines = [
        f"`{doc['command']}` (ort-cpu bundles; verify `{r0['suite']}` suite, n={r0['n']}, L-inf; robust = per-example "
        "worst case on the engine over FGSM, PGD-CE/margin on the STE twin, Square on the engine and transfer "
        "from the FP32 model; 95% Wilson CI; fine-tuning lr " + f"{doc.get('lr', '?')}):",
        "",
        "| model | bits W/A | method | clean | robust @ eps 1 | robust @ eps 2 | twin = engine (clean) |",
        "|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for r in doc["results"]:
        groups.setdefault((r["model"], r["bits"], r["method"]), []).append(r)
    for (model, bits, method), rows in groups.items():
        cells = []
        for r in sorted(rows, key=lambda r: r["eps"])[:2]:
            lo, hi = r["robust_ci95"]
            eps = f"{255 * r['eps']:.0f}/255" if r["model"] == "cifar" else f"{r['eps']:g}"
            cells.append(f"**{100 * r['robust']:.1f}%** ({100 * lo:.1f}-{100 * hi:.1f}) at {eps}")
        cells += ["-"] * (2 - len(cells))
        lines.append(
            f"| {rows[0]['checkpoint']} | {bits} | {method} | {100 * rows[0]['clean']:.1f}% | {cells[0]} | "
            f"{cells[1]} | {100 * rows[0]['twin_engine_clean_agreement']:.1f}% |"
        )
    return "\n".join(lines)


def adversarial_training(doc: dict) -> str:
    lines = [
        f"`{doc['command']}` (CNN-A from scratch, {doc['epochs']} epochs on the 5,085 shared CIFAR-10 training "
        f"images; same seed: byte-identical weights = {doc['reproducible']}):",
        "",
        "| run | training report: clean | PGD-20 x 2 @ 2/255 | verify quick: clean | robust @ 2/255 (95% CI) | "
        "time | weights sha256 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        e, v = r["training_eval"], r.get("verify")
        verified = (
            f"{100 * v['clean']:.1f}% | **{100 * v['robust']:.1f}%** ({100 * v['robust_ci95'][0]:.1f}-"
            f"{100 * v['robust_ci95'][1]:.1f})"
            if v
            else "- | -"
        )
        lines.append(
            f"| {r['run']} | {100 * e['clean']:.1f}% | {100 * e['pgd']:.1f}% | {verified} | {r['seconds']:.0f} s "
            f"| `{r['weights_sha256'][:12]}` |"
        )
    return "\n".join(lines)


def runtime_matrix(doc: dict) -> str:
    """Per model: a row per variant, images/s at each batch with the ratio to the same engine's FP32 (anchors:
    to ORT FP32 / OpenVINO FP32 of that hint), accuracy, agreement with FP32 and what the engine executed."""
    batches = sorted({r["batch"] for r in doc["results"]})
    cpu = doc["machine"]["cpu"]
    lines = [
        f"`{doc['command']}` ({cpu.get('model', '?')}, {doc['threads']} threads; flags {', '.join(cpu.get('flags', []))}; "
        f"median of {doc['rounds']} interleaved rounds; images/s and ratio to FP32 on the same engine):",
        "",
        "| model | variant | engine | executed | "
        + " | ".join(f"bs{b}" for b in batches)
        + " | accuracy | agree w/ FP32 |",
        "|---|---|---|---|" + "---|" * len(batches) + "---|---|",
    ]
    rows: dict[tuple[str, str], dict] = {}
    for r in doc["results"]:
        rows.setdefault((r["model"], r["variant"]), {"row": r})[r["batch"]] = r["throughput"]
    for (model, variant), cells in rows.items():
        r = cells["row"]
        fp32 = rows.get((model, f"fp32 {r['engine']}"), {})
        values = [f"{cells[b]:.0f} ({cells[b] / fp32[b]:.2f}x)" if b in cells and b in fp32 else "-" for b in batches]
        executed = r.get("executed_precision") or "-"
        executed = "graph" if executed.startswith("as the graph") else executed
        name = variant.rsplit(" ", 1)[0]
        lines.append(
            f"| {model} | {name} | {r['engine']} | {executed} | "
            + " | ".join(values)
            + f" | {100 * r['accuracy']:.2f}% | {100 * r['agreement_with_fp32']:.2f}% |"
        )
    return "\n".join(lines)


def runtime_summary(doc: dict, batch: int = 32) -> str:
    """Per small model at one batch: images/s of FP32, our INT8 and INT4, and the anchors on each runtime, with
    INT8 / FP32 and INT8 / anchor ratios, and INT8's agreement with FP32."""
    by = {(r["model"], r["variant"], r["batch"]): r for r in doc["results"]}
    models = sorted({r["model"] for r in doc["results"] if r["model"] != "resnet18"})
    lines = [
        f"batch {batch}, images/s (ratio):",
        "",
        "| model | ORT FP32 | ORT INT8 (x FP32, x ORT manual) | ORT INT4 (x INT8) | OV FP32 bf16 | OV INT8 (x OV FP32, x NNCF) | OV INT4 (x INT8) | INT8 agree w/ FP32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in models:
        t = lambda v: by[(m, v, batch)]["throughput"]  # noqa: E731
        ov_fp32 = max(t("fp32 ov-default"), t("fp32 ov-f32"))
        lines.append(
            f"| {m} | {t('fp32 ort'):.0f} | {t('int8 ort'):.0f} ({t('int8 ort') / t('fp32 ort'):.2f}x, "
            f"{t('int8 ort') / t('ORT best manual INT8 ort'):.2f}x) | {t('int4 ort'):.0f} ({t('int4 ort') / t('int8 ort'):.2f}x) | "
            f"{t('fp32 ov-default'):.0f} | {t('int8 ov-default'):.0f} ({t('int8 ov-default') / ov_fp32:.2f}x, "
            f"{t('int8 ov-default') / t('NNCF INT8 ov-default'):.2f}x) | {t('int4 ov-default'):.0f} "
            f"({t('int4 ov-default') / t('int8 ov-default'):.2f}x) | {100 * by[(m, 'int8 ort', batch)]['agreement_with_fp32']:.2f}% |"
        )
    return "\n".join(lines)


RENDERERS = {
    "quantized_speed": quantized_speed,
    "quantized_accuracy": quantized_accuracy,
    "cpu_matrix": cpu_matrix,
    "repeatability": repeatability,
    "verify_real_models": verify_real_models,
    "autoattack_referee": autoattack_referee,
    "autoattack_referee_fgsm_resnet18": autoattack_referee,
    "autoattack_referee_aa_suite_resnet18_1of255": autoattack_referee,
    "autoattack_referee_aa_suite_fgsm_resnet18": autoattack_referee,
    "attack_speed": attack_speed,
    "verify_time": verify_time,
    "defense_sap": defense_sap,
    "defense_squeeze": defense_squeeze,
    "defense_empir": defense_empir,
    "defense_empir_cifar": defense_empir,
    "defense_empir_mnist": defense_empir,
    "gdws_speed": gdws_speed,
    "autoattack_seed_spread_pyautoattack_resnet18": autoattack_seed_spread,
    "gdws_speed_openvino_pyautoattack_resnet18": gdws_speed,
    "gdws_sweep": gdws_sweep,
    "dq_baselines": dq_baselines,
    "adversarial_training": adversarial_training,
    "runtime_matrix": runtime_matrix,
    "verify_sweep": verify_sweep,
    "tune_models": tune_models,
    "tune_layers_pyautoattack_resnet18": tune_layers,
    "int8_roofline": int8_roofline,
    "tune_sensitivity_small": tune_sensitivity,
    "tune_sensitivity": tune_sensitivity,
    "tune_models_b32_throughput": tune_models,
    "tune_models_precision_gdws": tune_models,
    "tune_models_b32_throughput_int8_gdws_pyautoattack_resnet18_openvino": tune_models,
    "tune_models_b32_throughput_int8_gdws_resnet18_cifar_fgsm_openvino_budget2700s": tune_models,
    "tune_models_b32_throughput_int8_gdws_pyautoattack_resnet18_openvino_budget3600s": tune_models,
    "tune_models_b32_throughput_int8_gdws_pyautoattack_resnet18_ort_cpu_budget2700s": tune_models,
    "tune_models_int8_gdws_pyautoattack_resnet18_ort_cpu_budget2700s": tune_models,
    "tune_models_b32_throughput_int8_gdws_resnet18_cifar_fgsm_ort_cpu_budget2700s": tune_models,
    "tune_models_b32_throughput_int8_gdws_pyautoattack_resnet18_openvino_budget1200s": tune_models,
    "tune_models_b32_throughput_int8_gdws_resnet18_cifar_fgsm_openvino_budget1200s_clean": tune_models,
    "tune_baselines_small": tune_baselines,
    "tune_baselines_resnet18": tune_baselines,
    "tune_baselines_resnet18_speed": tune_baselines,
    "robust_calibration": robust_calibration,
    "verify_distributed": verify_distributed,
    "verify_distributed_b32": verify_distributed,
    "cluster_plan": cluster_plan,
    "real_size_walkthrough": real_size_walkthrough,
    "readme_walkthrough": readme_walkthrough,
}


def block(name: str) -> str:
    """A page's block for results/NAME.json: the table, then the machine it was measured on."""
    doc = load(name)
    if doc is None:
        return f"(not measured yet: run the command in benchmarks/{name}.py)\n"
    return f"{RENDERERS[name](doc)}\n\n_Measured on {machine_line(doc)}; results/{name}.json._\n"


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def rewrite(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + block(m.group("name")) + m.group(4), text)


def main() -> None:
    parser = argparse.ArgumentParser(description="render the measured tables of README.md and docs/")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite every results block in place")
    mode.add_argument("--check", action="store_true", help="exit 1 when a block differs from its results")
    args = parser.parse_args()
    if not (args.write or args.check):
        for name in RENDERERS:
            if load(name):
                print(f"<!-- {name} -->\n{block(name)}")
        return
    stale = []
    for page in pages():
        text = page.read_text()
        unknown = [m.group("name") for m in BLOCK.finditer(text) if m.group("name") not in RENDERERS]
        if unknown:
            sys.exit(f"{page.name}: no renderer for {', '.join(unknown)}")
        new = rewrite(text)
        if new != text:
            stale.append(page.relative_to(REPO).as_posix())
            if args.write:
                page.write_text(new)
    if args.check and stale:
        sys.exit(f"stale results blocks in {', '.join(stale)}: run python tools/render_tables.py --write")


if __name__ == "__main__":
    main()
