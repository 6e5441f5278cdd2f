"""verify.json and the human report (flags first, then models, attacks and the eps curve).

The report is built once as a list of blocks and rendered twice: Markdown (report.md) and
a self-contained HTML page (report.html, the eps-curve figure embedded).
"""

from __future__ import annotations

import base64
import html as html_lib
import re
from pathlib import Path
from typing import Any

from deploy_robust.bundle import Bundle
from deploy_robust.bundle.manifest import dumps

Block = tuple  # ("h1"|"h2"|"p", text) | ("ul", [items]) | ("table", header, rows) | ("img", file, alt)


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _execution(doc: dict[str, Any]) -> str:
    """What the engine computed in, when the runtime chooses (OpenVINO's inference precision)."""
    execution = doc.get("engine_execution") or {}
    if "inference_precision_hint" not in execution:
        return ""
    return (
        f" (inference precision {execution['inference_precision_hint']}: weighted layers executed in "
        f"**{execution['executed_precision']}**; this is what was verified)"
    )


def blocks(doc: dict[str, Any]) -> list[Block]:
    out: list[Block] = [("h1", f"Verify: {doc['bundle']['path']}")]
    if doc["flags"]:
        out += [("h2", "Flags"), ("ul", [f"**{f['flag']}**: {f['detail']}" for f in doc["flags"]])]
    else:
        out.append(("p", "No sanity flag raised."))
    return out + _headline(doc) + _models(doc) + _attacks(doc) + _detector(doc) + _curve_gates_and_time(doc)


def _headline(doc: dict[str, Any]) -> list[Block]:
    t = doc["threat_model"]
    out: list[Block] = []
    lo, hi = doc["robust_accuracy_ci95"]
    randomness = doc["stochastic_engine"]
    headline = [
        f"threat model: {t['description']}; {doc['data']['n']} points ({doc['data']['name']}, {doc['data']['selection']}); "
        f"suite `{doc['suite']}`; seed {doc['seed']}; engine {doc['engine']}{_execution(doc)}",
        f"clean accuracy: {_pct(doc['clean_accuracy'])}"
        + (
            f" (mean over {randomness['scoring_passes']} runs; right in all of them: "
            f"{_pct(doc['clean_accuracy_worst_case'])})"
            if "clean_accuracy_worst_case" in doc
            else ""
        ),
        f"robust accuracy (per-example worst case over all attacks, scored on E): **{_pct(doc['robust_accuracy'])}** "
        f"(95% Wilson interval {100 * lo:.1f}-{100 * hi:.1f}%); an upper bound: a stronger attack may find less",
    ]
    if "expected_robust_accuracy" in doc:
        headline.append(
            f"stochastic engine: robust means right in all {randomness['scoring_passes']} scoring passes; "
            f"one run of E is right on {_pct(doc['expected_robust_accuracy'])} of the attacked points on "
            f"average (expected robust accuracy); EOT over {randomness['eot_draws']} draws per gradient"
        )
    out += [("h2", "Headline (engine E)"), ("ul", headline), ("p", TERMS)]
    return out


# What the report's letters mean, in every report (a reader should not need the docs to read one).
TERMS = (
    "Terms: **E** is the engine that ships (the bundle on its runtime, as configured); every figure is scored on E. "
    "**S** is E's differentiable twin in torch (quantizers as straight-through estimators), which the gradient "
    "attacks run on. **R** is the float reference model (with --reference), for transfer attacks and the paired "
    "drop. Each attack runs only on the points every earlier one left robust on E."
)


def _models(doc: dict[str, Any]) -> list[Block]:
    out: list[Block] = []
    rows = []
    for name, m in doc["models"].items():
        agree = m.get("top1_agreement_with_E")
        rows.append([name, _pct(m["clean_accuracy"]), "-" if agree is None else _pct(agree)])
    out += [("h2", "Models"), ("table", ["model", "clean accuracy", "top-1 agreement with E"], rows)]
    notes = []
    if doc.get("agreement_E_S_on_S_adversarial") is not None:
        notes.append(f"E and S agree on {_pct(doc['agreement_E_S_on_S_adversarial'])} of S's adversarial examples.")
    if doc.get("reference_robust_accuracy") is not None:
        notes.append(
            f"Reference R under the same white-box attacks: {_pct(doc['reference_robust_accuracy'])} "
            f"(paired delta E - R: {100 * doc['robust_delta_vs_reference']:+.2f} pt on the same points)."
        )
    if notes:
        out.append(("p", " ".join(notes)))
    return out


# Where the time goes, per attack: gradient passes are images through S (or R) with an input gradient; E images
# are the engine's queries and scoring.
HEADERS = ["attack", "run on", "parameters", "E robust after it", "points attacked", "broke", "gradient passes",
           "E images", "seconds"]  # fmt: skip


def _attacks(doc: dict[str, Any]) -> list[Block]:
    out: list[Block] = []
    rows = []
    for a in doc["attacks"]:
        params = ", ".join(f"{k}={v}" for k, v in a["params"].items()) or "-"
        expected = f"; expected {_pct(a['expected_robust_accuracy'])}" if "expected_robust_accuracy" in a else ""
        if a.get("points_attacked") == 0:
            rows.append([a["attack"], a["on"], params, "not run: no survivors", "-", "-", "-", "-", "-"])
        else:
            rows.append(
                [
                    a["attack"],
                    a["on"],
                    params,
                    _pct(a["robust_accuracy"]) + expected,
                    str(a.get("points_attacked", "-")),
                    str(a.get("broke", "-")),
                    str(a["passes"]["S_forward_backward"]) if "passes" in a else "-",
                    str(a["passes"]["E_images"]) if "passes" in a else "-",
                    f"{a['seconds']:g}" if "seconds" in a else "-",
                ]
            )
    out += [
        ("h2", "Attacks"),
        (
            "p",
            "A cascade, as AutoAttack runs: each attack runs on the points every earlier "
            "one left robust on E, so each row is what is left robust after it.",
        ),
        ("table", HEADERS, rows),
    ]
    if doc.get("throughput"):
        tp = doc["throughput"]
        out.append(
            (
                "p",
                f"Measured here at batch {tp['batch']}: the twin S {tp['S_gradient_images_per_s']:.0f} images/s "
                f"with an input gradient ({tp['S_precision']}), the engine E {tp['E_images_per_s']:.0f} images/s.",
            )
        )
    return out


def _detector(doc: dict[str, Any]) -> list[Block]:
    out: list[Block] = []
    if doc.get("detector"):
        d = doc["detector"]
        lo, hi = d["robust_accuracy_detector_aware_ci95"]
        u = d["unaware_attack"]
        out += [
            ("h2", "Detector (feature squeezing, detect mode)"),
            (
                "ul",
                [
                    f"threshold {d['threshold']:.4g} (set for FPR {d['target_fpr']:g} on clean data); false-positive rate "
                    f"on these clean points: {_pct(d['false_positive_rate_on_test'])}",
                    f"detector-unaware attack ({u['attack']}): fools the classifier on {_pct(u['fooled'])} of points; the "
                    f"detector flags {_pct(u['detection_rate'])} of those (robust accuracy counting flagged points as caught: "
                    f"{_pct(u['robust_accuracy_with_detector'])}; ignoring the detector: {_pct(u['robust_accuracy_ignoring_detector'])})",
                    f"detector-aware attack ({d['aware_attack']['attack']}): robust accuracy **"
                    f"{_pct(d['robust_accuracy_detector_aware'])}** (95% Wilson {100 * lo:.1f}-{100 * hi:.1f}%): "
                    f"{d['definition']}",
                ],
            ),
        ]
    return out


def _curve_gates_and_time(doc: dict[str, Any]) -> list[Block]:
    out: list[Block] = []
    if doc.get("eps_curve"):
        out += [
            (
                "h2",
                "Accuracy against eps (PGD-CE, 20 steps on S, scored on E"
                + (f"; the first {doc['eps_curve_points']} points)" if "eps_curve_points" in doc else ")"),
            ),
            (
                "table",
                ["eps", "accuracy"],
                [[f"{p['eps']:.4g} ({255 * p['eps']:.3g}/255)", _pct(p["accuracy"])] for p in doc["eps_curve"]],
            ),
            ("img", "eps_curve.png", "accuracy against eps"),
        ]
    if doc.get("gates"):
        out += [
            ("h2", "Gates"),
            (
                "ul",
                [
                    f"{g['name']} {g['op']} {g['threshold']:g}: {'pass' if g['passed'] else 'FAIL'} ({g['value']:.4f})"
                    for g in doc["gates"]
                ],
            ),
        ]
    stages = doc.get("stage_seconds") or {}
    parts = ", ".join(f"{name.replace('_', ' ')} {value:g} s" for name, value in stages.items())
    total = doc.get("seconds_total", doc["seconds"])
    took = f"Took {total:g} s in all" + (f" ({parts}, the rest loading and setup)" if parts else "")
    if "seconds_since_launch" in doc:
        took += f"; {doc['seconds_since_launch']:g} s since --workers started the processes (their start-up included)"
    out.append(("p", took + "."))
    return out


def markdown(doc: dict[str, Any]) -> str:
    lines: list[str] = []
    for block in blocks(doc):
        kind = block[0]
        if kind in ("h1", "h2"):
            lines += [f"{'#' if kind == 'h1' else '##'} {block[1]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "table":
            header, rows = block[1], block[2]
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(row) + " |" for row in rows] + [""]
        elif kind == "img":
            lines += [f"![{block[2]}]({block[1]})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _inline(text: str) -> str:
    text = html_lib.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def html(doc: dict[str, Any], figures: dict[str, bytes] | None = None) -> str:
    """One self-contained page; `figures` maps an image file name to its PNG bytes (embedded)."""
    figures = figures or {}
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html_lib.escape(doc['bundle']['path'])}: verify</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
        "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:.25rem .6rem;text-align:left}"
        "li strong{color:#a40000}</style></head><body>",
    ]
    for block in blocks(doc):
        kind = block[0]
        if kind in ("h1", "h2", "p"):
            parts.append(f"<{kind}>{_inline(block[1])}</{kind}>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in block[1])
            body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in block[2])
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "img" and block[1] in figures:
            data = base64.b64encode(figures[block[1]]).decode()
            parts.append(f'<p><img alt="{html_lib.escape(block[2])}" src="data:image/png;base64,{data}"></p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write(bundle: Bundle, doc: dict[str, Any]) -> list[Path]:
    """verify.json, report.md, report.html and, when the eps sweep ran, eps_curve.png: kept in this run's own
    folder (`runs/<time>-<suite>-<norm>-<eps>/`, never overwritten) and copied to the bundle's top level, where
    they are the latest run's. Returns the run folder's files."""
    files: dict[str, bytes | str] = {"verify.json": dumps(doc), "report.md": markdown(doc)}
    figures = {}
    if doc.get("eps_curve"):
        figures["eps_curve.png"] = _eps_curve_png(bundle, doc)
    files |= figures | {"report.html": html(doc, figures)}
    threat = doc["threat_model"]
    run = bundle.write_run(f"{doc['suite']}-{threat['norm']}-{threat['eps']:.4g}", files)
    return [run / name for name in files]


def _eps_curve_png(bundle: Bundle, doc: dict[str, Any]) -> bytes:
    import tempfile

    from deploy_robust.bench.plots import eps_curve_plot

    threat = doc["threat_model"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "eps_curve.png"
        n = doc.get("eps_curve_points", doc["data"]["n"])
        title = f"{bundle.path.name}: PGD-CE on S, scored on E ({threat['norm']}), curve on {n} points"
        eps_curve_plot(doc["eps_curve"], out, title, verified=(threat["eps"], doc["robust_accuracy"], doc["data"]["n"]))
        return out.read_bytes()
