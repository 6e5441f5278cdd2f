"""Sanity flags over a verify document: the checks that tell a masked or misconfigured evaluation from
an honest one (Carlini et al. 2019; AutoAttack's checks)."""

from __future__ import annotations

import math
from typing import Any

from deploy_robust.exporters.float_onnx import OUTPUT_NAME


# Square on E breaking a point that every gradient attack on S left robust happens on honest, unmasked
# models too: a gradient attack's own misses near the boundary, FP16/INT8 rounding between S and E. The
# rate below is what such a model shows (the digits demo's plain CNN: 0-2 of ~100 survivors in the quick
# suite); the flag fires when the count is unlikely under it (one-sided binomial test at FLAG_P_VALUE), so a
# single point of n = 200 no longer raises it while a masked model (Square breaking tens of survivors) does.
HONEST_SQUARE_RATE = 0.01
FLAG_P_VALUE = 0.01


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), exactly."""
    if k <= 0:
        return 1.0
    return float(sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1)))


def sanity_flags(doc: dict[str, Any]) -> list[dict[str, str]]:
    """Carlini et al. 2019 checklist and AutoAttack's checks, as raised flags."""
    flags = []
    by = {a["attack"]: a["robust_accuracy"] for a in doc["attacks"]}
    iterative = {k: v for k, v in by.items() if k.startswith(("pgd", "apgd"))}
    if "fgsm" in by and iterative and min(iterative.values()) > by["fgsm"]:
        flags.append({"flag": "iterative_weaker_than_fgsm",
                      "detail": f"best iterative attack leaves {100 * min(iterative.values()):.1f}% but FGSM "
                                f"{100 * by['fgsm']:.1f}%: gradients on S are likely masked or the attack misconfigured"})
    if "square" in by and "robust_accuracy_gradient_attacks_only" in doc:
        # Square ran only on points every gradient attack left robust: what it breaks beyond them is a warning
        # sign, but only when it is more than an honest twin's occasional miss (a one-sided binomial test).
        n = doc["data"]["n"]
        survivors = round(doc["robust_accuracy_gradient_attacks_only"] * n)
        broken = survivors - round(doc["robust_accuracy"] * n)
        p_value = binomial_tail(broken, survivors, HONEST_SQUARE_RATE)
        if broken > 0 and p_value < FLAG_P_VALUE:
            flags.append({"flag": "black_box_beats_white_box",
                          "detail": f"Square on E broke {broken} of the {survivors} point(s) every gradient attack left "
                                    f"robust ({100 * broken / n:.1f} pt; one-sided binomial p = {p_value:.2g} against an "
                                    f"honest twin's {100 * HONEST_SQUARE_RATE:g}% miss rate): likely gradient masking, "
                                    "or S does not describe E there"})
    if doc["zero_gradient_points_on_S"]:
        flags.append({"flag": "zero_gradients",
                      "detail": f"{doc['zero_gradient_points_on_S']} points have an all-zero input gradient on S"})
    agree = doc.get("agreement_E_S_on_S_adversarial")
    if agree is not None and agree < 0.95 and not doc["stochastic_engine"]["stochastic"]:  # one draw each: moot
        surrogate = doc.get("attacked_output") not in (None, OUTPUT_NAME)
        flags.append({"flag": "twin_disagrees_with_engine",
                      "detail": f"E and S agree on only {100 * agree:.1f}% of S's adversarial examples: white-box "
                                "results on S do not fully describe E"
                                + (f" (S is attacked through {doc['attacked_output']}, a differentiable surrogate of "
                                   "E's output; every candidate is still scored on E)" if surrogate else "")})
    randomness = doc["stochastic_engine"]
    if randomness["stochastic"]:
        flags.append({"flag": "randomness",
                      "detail": f"the engine's outputs vary between runs ({100 * randomness['stable_prediction_fraction']:.1f}% "
                                f"of clean predictions stable over {randomness['scoring_passes']} runs): attacked with "
                                f"EOT over {randomness['eot_draws']} draws, Square on scores averaged over "
                                f"{randomness['square_score_draws']} runs, robust only if right in all "
                                f"{randomness['scoring_passes']} scoring passes"})
        if randomness["eot_draws"] == 1:
            flags.append({"flag": "no_eot", "detail": "a stochastic engine attacked without EOT (--eot 1): "
                                                      "gradients of single draws overstate robustness"})
    curve = doc.get("eps_curve") or []
    if curve:
        accs = [p["accuracy"] for p in curve]
        if any(b > a + 0.01 for a, b in zip(accs, accs[1:])):
            flags.append({"flag": "accuracy_not_monotonic_in_eps", "detail": "accuracy rises with eps somewhere on the curve"})
        largest, threat = curve[-1]["eps"], doc.get("threat_model") or {}
        # meaningful only well beyond the threat: at >= 4x its eps, or at L-inf 1 (any image reaches any other)
        ratio = largest / threat["eps"] if threat.get("eps") else None
        if accs[-1] > 0.05 and (ratio is None or ratio >= 4 or (threat.get("norm") == "linf" and largest >= 1.0)):
            times = f" ({ratio:.3g}x the threat's eps)" if ratio else ""
            flags.append({"flag": "not_zero_at_large_eps",
                          "detail": f"accuracy is {100 * accs[-1]:.1f}% at eps={largest:.3g}{times}: attacks may be too weak"})
    if "pgd-ce-2x-steps" in by and "pgd-ce" in by and abs(by["pgd-ce-2x-steps"] - by["pgd-ce"]) > 0.005:
        flags.append({"flag": "not_converged", "detail": "doubling PGD steps changes robust accuracy by more than 0.5 pt"})
    return flags
