"""Sanity flags over a verify document: the checks that tell a masked or misconfigured evaluation from
an honest one (Carlini et al. 2019; AutoAttack's checks)."""

from __future__ import annotations

import math
from typing import Any

from deploy_robust.exporters.float_onnx import OUTPUT_NAME


# A later, weaker attack breaking points the earlier gradient attacks all left robust (Square on E after them,
# FGSM after the iterative ones) happens on honest, unmasked models too: a gradient attack's own misses near
# the boundary, FP16/INT8 rounding between S and E. The rate below is what such a model shows (the digits
# demo's plain CNN: 0-2 of ~100 survivors in the quick suite); a flag fires when the count is unlikely under
# it (one-sided binomial test at FLAG_P_VALUE), so a single point of n = 200 raises nothing while a masked
# model (Square breaking tens of survivors) does.
HONEST_MISS_RATE = 0.01
FLAG_P_VALUE = 0.01


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the terms summed in log space, so n in the tens of thousands (a
    distributed verify) neither overflows a float (math.comb(10000, 5000) has 3,000 digits) nor underflows."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    logs = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
        for i in range(k, n + 1)
    ]
    top = max(logs)
    return min(1.0, math.exp(top) * math.fsum(math.exp(v - top) for v in logs))


def _beats_earlier(entry: dict[str, Any]) -> tuple[int, int, float] | None:
    """(broke, attacked, p-value) when `entry` broke more of the points left to it than an honest miss rate explains."""
    broke, attacked = entry.get("broke", 0), entry.get("points_attacked", 0)
    p_value = binomial_tail(broke, attacked, HONEST_MISS_RATE)
    return (broke, attacked, p_value) if broke > 0 and p_value < FLAG_P_VALUE else None


def sanity_flags(doc: dict[str, Any]) -> list[dict[str, str]]:
    """Carlini et al. 2019 checklist and AutoAttack's checks, as raised flags. The attacks of `doc` cascade
    (verify.suites): each entry's `broke` counts the points it broke that every earlier attack left robust."""
    return (
        _cascade_flags(doc)
        + _gradient_flags(doc)
        + _randomness_flags(doc["stochastic_engine"])
        + _curve_flags(doc)
        + _convergence_flags(doc)
    )


def _cascade_flags(doc: dict[str, Any]) -> list[dict[str, str]]:
    """A weaker attack breaking what every stronger one before it left robust."""
    flags = []
    n = doc["data"]["n"]
    iterative_seen = False
    for entry in doc["attacks"]:
        name = entry["attack"]
        if name == "fgsm" and iterative_seen and (found := _beats_earlier(entry)):
            broke, attacked, p_value = found
            flags.append(
                {
                    "flag": "iterative_weaker_than_fgsm",
                    "detail": f"FGSM broke {broke} of the {attacked} point(s) every iterative attack left robust "
                    f"(one-sided binomial p = {p_value:.2g}): gradients on S are likely masked or "
                    "the attacks misconfigured",
                }
            )
        if entry.get("on") == "E" and iterative_seen and (found := _beats_earlier(entry)):
            broke, attacked, p_value = found
            flags.append(
                {
                    "flag": "black_box_beats_white_box",
                    "detail": f"{name} on E broke {broke} of the {attacked} point(s) every gradient attack before "
                    f"it left robust ({100 * broke / n:.1f} pt; one-sided binomial p = {p_value:.2g} "
                    f"against an honest twin's {100 * HONEST_MISS_RATE:g}% miss rate): likely "
                    "gradient masking, or S does not describe E there",
                }
            )
        iterative_seen |= name.startswith(("pgd", "apgd", "fab"))
    return flags


def _gradient_flags(doc: dict[str, Any]) -> list[dict[str, str]]:
    """Zero input gradients on S, and S's adversarial examples not fooling E alike."""
    flags = []
    if doc["zero_gradient_points_on_S"]:
        flags.append(
            {
                "flag": "zero_gradients",
                "detail": f"{doc['zero_gradient_points_on_S']} points have an all-zero input gradient on S",
            }
        )
    agree = doc.get("agreement_E_S_on_S_adversarial")
    if agree is not None and agree < 0.95 and not doc["stochastic_engine"]["stochastic"]:  # one draw each: moot
        surrogate = doc.get("attacked_output") not in (None, OUTPUT_NAME)
        flags.append(
            {
                "flag": "twin_disagrees_with_engine",
                "detail": f"E and S agree on only {100 * agree:.1f}% of S's adversarial examples: white-box "
                "results on S do not fully describe E"
                + (
                    f" (S is attacked through {doc['attacked_output']}, a differentiable surrogate of "
                    "E's output; every candidate is still scored on E)"
                    if surrogate
                    else ""
                ),
            }
        )
    return flags


def _randomness_flags(randomness: dict[str, Any]) -> list[dict[str, str]]:
    flags = []
    if randomness["stochastic"]:
        flags.append(
            {
                "flag": "randomness",
                "detail": f"the engine's outputs vary between runs ({100 * randomness['stable_prediction_fraction']:.1f}% "
                f"of clean predictions stable over {randomness['scoring_passes']} runs): attacked with "
                f"EOT over {randomness['eot_draws']} draws, Square on scores averaged over "
                f"{randomness['square_score_draws']} runs, robust only if right in all "
                f"{randomness['scoring_passes']} scoring passes",
            }
        )
        if randomness["eot_draws"] == 1:
            flags.append(
                {
                    "flag": "no_eot",
                    "detail": "a stochastic engine attacked without EOT (--eot 1): "
                    "gradients of single draws overstate robustness",
                }
            )
    return flags


def _curve_flags(doc: dict[str, Any]) -> list[dict[str, str]]:
    """The accuracy-vs-eps curve must fall, and reach ~0 well beyond the threat."""
    flags = []
    curve = doc.get("eps_curve") or []
    if curve:
        accs = [p["accuracy"] for p in curve]
        if any(b > a + 0.01 for a, b in zip(accs, accs[1:])):
            flags.append(
                {"flag": "accuracy_not_monotonic_in_eps", "detail": "accuracy rises with eps somewhere on the curve"}
            )
        largest, threat = curve[-1]["eps"], doc.get("threat_model") or {}
        # meaningful only well beyond the threat: at >= 4x its eps, or at L-inf 1 (any image reaches any other)
        ratio = largest / threat["eps"] if threat.get("eps") else None
        if accs[-1] > 0.05 and (ratio is None or ratio >= 4 or (threat.get("norm") == "linf" and largest >= 1.0)):
            times = f" ({ratio:.3g}x the threat's eps)" if ratio else ""
            flags.append(
                {
                    "flag": "not_zero_at_large_eps",
                    "detail": f"accuracy is {100 * accs[-1]:.1f}% at eps={largest:.3g}{times}: attacks may be too weak",
                }
            )
    return flags


def _convergence_flags(doc: dict[str, Any]) -> list[dict[str, str]]:
    flags = []
    n = doc["data"]["n"]
    doubled = next((a for a in doc["attacks"] if a["attack"] == "pgd-ce-2x-steps"), None)
    if doubled and doubled.get("broke", 0) > 0.005 * n:
        flags.append(
            {
                "flag": "not_converged",
                "detail": f"PGD with doubled steps broke {doubled['broke']} more point(s) "
                f"({100 * doubled['broke'] / n:.1f} pt > 0.5 pt): the attacks have not converged",
            }
        )
    return flags
