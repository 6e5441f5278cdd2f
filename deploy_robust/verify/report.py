"""verify.json and a Markdown report (flags first, then the per-attack table and the eps curve)."""

from __future__ import annotations

from typing import Any

from deploy_robust.bundle import Bundle
from deploy_robust.bundle.manifest import dumps


def markdown(doc: dict[str, Any]) -> str:
    t = doc["threat_model"]
    lines = [f"# Verify: {doc['bundle']['path']}", ""]
    if doc["flags"]:
        lines += ["## Flags", ""] + [f"- **{f['flag']}**: {f['detail']}" for f in doc["flags"]] + [""]
    else:
        lines += ["No sanity flag raised.", ""]
    lo, hi = doc["robust_accuracy_ci95"]
    lines += [
        "## Headline (engine E)", "",
        f"- threat model: {t['description']}; {doc['data']['n']} points ({doc['data']['name']}, {doc['data']['selection']}); "
        f"suite `{doc['suite']}`; seed {doc['seed']}; engine {doc['engine']}",
        f"- clean accuracy: {100 * doc['clean_accuracy']:.2f}%",
        f"- robust accuracy (per-example worst case over all attacks, scored on E): **{100 * doc['robust_accuracy']:.2f}%** "
        f"(95% Wilson interval {100 * lo:.1f}-{100 * hi:.1f}%); an upper bound: a stronger attack may find less",
        "", "## Models", "", "| model | clean accuracy | top-1 agreement with E |", "|---|---|---|"]
    for name, m in doc["models"].items():
        agree = m.get("top1_agreement_with_E")
        lines.append(f"| {name} | {100 * m['clean_accuracy']:.2f}% | {'-' if agree is None else f'{100 * agree:.2f}%'} |")
    if doc.get("agreement_E_S_on_S_adversarial") is not None:
        lines += ["", f"E and S agree on {100 * doc['agreement_E_S_on_S_adversarial']:.2f}% of S's adversarial examples."]
    if doc.get("reference_robust_accuracy") is not None:
        lines += [f"Reference R under the same white-box attacks: {100 * doc['reference_robust_accuracy']:.2f}% "
                  f"(paired delta E - R: {100 * doc['robust_delta_vs_reference']:+.2f} pt on the same points)."]
    lines += ["", "## Attacks", "", "| attack | run on | parameters | E robust accuracy |", "|---|---|---|---|"]
    for a in doc["attacks"]:
        params = ", ".join(f"{k}={v}" for k, v in a["params"].items()) or "-"
        note = " (on survivors only)" if a.get("scope") else ""
        lines.append(f"| {a['attack']} | {a['on']} | {params} | {100 * a['robust_accuracy']:.2f}%{note} |")
    if doc.get("eps_curve"):
        lines += ["", "## Accuracy against eps (PGD-CE, 20 steps on S, scored on E)", "", "| eps | accuracy |", "|---|---|"]
        lines += [f"| {p['eps']:.4g} ({255 * p['eps']:.3g}/255) | {100 * p['accuracy']:.2f}% |" for p in doc["eps_curve"]]
        lines += ["", "![accuracy against eps](eps_curve.png)"]
    if doc.get("gates"):
        lines += ["", "## Gates", ""] + [f"- {g['name']} {g['op']} {g['threshold']:g}: "
                                         f"{'pass' if g['passed'] else 'FAIL'} ({g['value']:.4f})" for g in doc["gates"]]
    lines += ["", f"Took {doc['seconds']} s."]
    return "\n".join(lines) + "\n"


def write(bundle: Bundle, doc: dict[str, Any]) -> None:
    """verify.json, report.md and, when the eps sweep ran, eps_curve.png, into the bundle."""
    bundle.write_file("verify.json", dumps(doc))
    bundle.write_file("report.md", markdown(doc))
    if doc.get("eps_curve"):
        from deploy_robust.bench.plots import eps_curve_plot

        eps_curve_plot(doc["eps_curve"], bundle.path / "eps_curve.png",
                       f"{bundle.path.name}: PGD-CE on S, scored on E ({doc['threat_model']['norm']})")
