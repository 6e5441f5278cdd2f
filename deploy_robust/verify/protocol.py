"""The verify protocol: three models, every candidate scored on the engine, per-example worst case.

R = the float reference (when given), S = the differentiable twin rebuilt from the bundle's
own graph (quantizers and rounding ops straight-through), E = the engine. White-box attacks
run on S, transfer attacks on R, Square on E itself; each candidate is finally classified by
E. A point is robust only if E is right on it clean and on every candidate of every attack.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import onnx
import torch

from deploy_robust.bundle import Bundle
from deploy_robust.data import Dataset
from deploy_robust.errors import UserError
from deploy_robust.ingest.onnx_graph import OnnxGraphModule
from deploy_robust.progress import progress
import deploy_robust.quant.twin  # noqa: F401  (registers the Q/DQ handlers in the graph interpreter)
from deploy_robust.runtimes import create_runner
from deploy_robust.stats import wilson_interval
from deploy_robust.verify import attacks
from deploy_robust.verify.threat import ThreatModel

SCHEMA = "deploy-robust/verify"
SCHEMA_VERSION = 1
DEFAULT_SWEEP = (0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255, 32 / 255, 64 / 255)


@dataclass(frozen=True)
class Attack:
    name: str
    on: str                      # "S" (white-box on the twin), "R" (transfer), "E" (black-box on the engine)
    params: dict[str, Any]


SUITES: dict[str, list[Attack]] = {
    "quick": [
        Attack("fgsm", "S", {}),
        Attack("pgd-ce", "S", {"steps": 20, "restarts": 1, "loss": "ce"}),
        Attack("pgd-margin", "S", {"steps": 20, "restarts": 1, "loss": "margin"}),
        Attack("square", "E", {"queries": 300}),
        Attack("transfer-pgd-ce", "R", {"steps": 20, "restarts": 1, "loss": "ce"}),
    ],
    "standard": [
        Attack("fgsm", "S", {}),
        Attack("pgd-ce", "S", {"steps": 50, "restarts": 2, "loss": "ce"}),
        Attack("pgd-margin", "S", {"steps": 50, "restarts": 1, "loss": "margin"}),
        Attack("apgd-ce", "S", {"steps": 100, "restarts": 1, "loss": "ce"}),
        Attack("apgd-dlr", "S", {"steps": 100, "restarts": 1, "loss": "dlr"}),
        Attack("apgd-t", "S", {"steps": 100, "targets": 9}),
        Attack("square", "E", {"queries": 5000}),
        Attack("transfer-apgd-ce", "R", {"steps": 100, "restarts": 1, "loss": "ce"}),
    ],
    "thorough": [
        Attack("fgsm", "S", {}),
        Attack("pgd-ce", "S", {"steps": 100, "restarts": 5, "loss": "ce"}),
        Attack("pgd-margin", "S", {"steps": 100, "restarts": 3, "loss": "margin"}),
        Attack("apgd-ce", "S", {"steps": 200, "restarts": 3, "loss": "ce"}),
        Attack("apgd-dlr", "S", {"steps": 200, "restarts": 3, "loss": "dlr"}),
        Attack("apgd-t", "S", {"steps": 200, "targets": 9}),
        Attack("pgd-ce-2x-steps", "S", {"steps": 200, "restarts": 1, "loss": "ce"}),
        Attack("square", "E", {"queries": 10000}),
        Attack("transfer-apgd-ce", "R", {"steps": 200, "restarts": 1, "loss": "ce"}),
    ],
}


def build_twin(bundle: Bundle, bpda: bool = True) -> torch.nn.Module:
    """S: the bundle's graph in torch with quantizers and rounding ops straight-through (BPDA).

    S computes in float32 and passes straight through FP16 casts: fp16 gradients underflow
    (zero input gradients on confident points), and the casts' rounding is far below any eps.
    Integer quantization is kept exactly; E scores every candidate at the deployed precision."""
    return OnnxGraphModule(onnx.load(str(bundle.model_path)), float_dtype=torch.float32, straight_through=bpda).eval()


def _as_float32(module: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: module(x).float()


def _run_white_box(attack: Attack, model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, seed: int):
    if attack.name == "fgsm":
        return attacks.fgsm(model, x, y, threat)
    if attack.name == "apgd-t":
        return attacks.apgd_targeted(model, x, y, threat, seed=seed, **attack.params)
    if attack.name.startswith(("apgd", "transfer-apgd")):
        return attacks.apgd(model, x, y, threat, seed=seed, **attack.params)
    return attacks.pgd(model, x, y, threat, seed=seed, **attack.params)


def run_verify(bundle: Bundle, dataset: Dataset, threat: ThreatModel, *, n: int = 1000, suite: str = "standard",
               reference: torch.nn.Module | None = None, backend: str = "ort-cpu", batch_size: int = 128,
               seed: int = 0, sweep: tuple[float, ...] | None = DEFAULT_SWEEP, bpda: bool = True) -> dict[str, Any]:
    """`bpda=False` attacks S with plain gradients (to show what masking does); never for a verdict."""
    if suite not in SUITES:
        raise UserError(f"--suite must be one of {', '.join(SUITES)}; got {suite}")
    if dataset.shape != bundle.spec.shape:
        raise UserError(f"{dataset.name}: images are {dataset.shape}, the bundle takes {bundle.spec.shape}")
    data = dataset.take(n)
    engine = create_runner(backend, bundle)
    twin = build_twin(bundle, bpda)
    S = _as_float32(twin)
    started = time.perf_counter()
    plan = [a for a in SUITES[suite] if not (a.on == "R" and reference is None)]
    if threat.norm == "l2":
        plan = [a for a in plan if a.name != "square"]  # Square is implemented for L-inf only
    labels = data.labels
    e_clean, s_clean, r_clean = [], [], []
    e_on_attack = {a.name: [] for a in plan}
    s_agree = []
    zero_grad = 0
    stochastic = _is_stochastic(engine, data)
    batches = list(data.batches(batch_size))
    for index, (x_np, y_np) in enumerate(progress(batches, total=len(batches), desc="verify")):
        x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
        e_logits = engine.infer(x_np)
        e_clean.append(e_logits.argmax(1))
        with torch.no_grad():
            s_clean.append(S(x).argmax(1).numpy())
            if reference is not None:
                r_clean.append(reference(x).argmax(1).numpy())
        grad, _, _ = attacks._gradient(S, x, y, "ce", 1)
        zero_grad += int((grad.flatten(1).abs().sum(1) == 0).sum())
        alive = e_logits.argmax(1) == y_np  # attack only points E gets right (the rest are not robust anyway)
        survivors = alive.copy()            # E right on every candidate so far
        for a_index, attack in enumerate(plan):
            adv = x_np.copy()
            if alive.any():
                idx = np.flatnonzero(alive)
                seed_here = seed + 1000 * index + a_index
                if attack.on == "S":
                    found = _run_white_box(attack, S, x[idx], y[idx], threat, seed_here).numpy()
                    with torch.no_grad():
                        s_pred = S(torch.from_numpy(found)).argmax(1).numpy()
                    s_agree.append((s_pred == engine.infer(found).argmax(1)))
                    adv[idx] = found
                elif attack.on == "R":
                    adv[idx] = _run_white_box(attack, reference, x[idx], y[idx], threat, seed_here).numpy()
                else:  # Square on E: only the points every earlier attack left robust (as AutoAttack does)
                    todo = np.flatnonzero(survivors)
                    if todo.size:
                        adv[todo], _ = attacks.square_linf(engine.infer, x_np[todo], y_np[todo], threat.eps,
                                                           seed=seed_here, **attack.params)
            correct = engine.infer(adv).argmax(1) == y_np
            e_on_attack[attack.name].append(correct)
            survivors &= correct
    seconds = time.perf_counter() - started
    e_clean_ok = np.concatenate(e_clean) == labels
    robust = e_clean_ok.copy()
    robust_white_box = e_clean_ok.copy()  # worst case over the gradient attacks (S and R) alone
    per_attack = []
    for attack in plan:
        ok = np.concatenate(e_on_attack[attack.name]) & e_clean_ok
        robust &= ok
        if attack.on != "E":
            robust_white_box &= ok
        entry = {"attack": attack.name, "on": attack.on, "params": attack.params, "robust_accuracy": float(ok.mean())}
        if attack.on == "E":
            entry["scope"] = "run only on points every earlier attack left robust (as AutoAttack does)"
        per_attack.append(entry)
    doc = _document(bundle, data, threat, suite, seed, backend, labels, np.concatenate(e_clean), np.concatenate(s_clean),
                    np.concatenate(r_clean) if r_clean else None, robust, per_attack,
                    np.concatenate(s_agree) if s_agree else None, zero_grad, stochastic, seconds)
    if not bpda:
        doc["gradients_on_S"] = "plain autograd (--no-bpda): rounding ops have zero gradient; not a verdict"
    doc["robust_accuracy_gradient_attacks_only"] = float(robust_white_box.mean())
    if sweep:
        doc["eps_curve"] = eps_curve(S, engine, data, threat, sweep, batch_size, seed)
    doc["flags"] = sanity_flags(doc)
    return doc


def reference_robust_accuracy(reference: torch.nn.Module, dataset: Dataset, threat: ThreatModel, *, n: int,
                              suite: str, batch_size: int = 128, seed: int = 0) -> float:
    """R's robust accuracy on the same points under the suite's white-box attacks (for the paired delta)."""
    robust = []
    for index, (x_np, y_np) in enumerate(dataset.take(n).batches(batch_size)):
        x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
        with torch.no_grad():
            ok = (reference(x).argmax(1) == y).numpy()
        for attack in (a for a in SUITES[suite] if a.on == "S"):
            adv = _run_white_box(attack, reference, x, y, threat, seed + index)
            with torch.no_grad():
                ok &= (reference(adv).argmax(1) == y).numpy()
        robust.append(ok)
    return float(np.concatenate(robust).mean())


def eps_curve(S, engine, data: Dataset, threat: ThreatModel, sweep, batch_size: int, seed: int) -> list[dict]:
    """E's accuracy under PGD-CE (20 steps on S) at each eps: should fall to about 0."""
    curve = []
    for eps in sweep:
        t = ThreatModel(threat.norm, float(eps))
        correct = 0
        for index, (x_np, y_np) in enumerate(data.batches(batch_size)):
            x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
            adv = x if eps == 0 else attacks.pgd(S, x, y, t, steps=20, seed=seed + index)
            correct += int((engine.infer(adv.numpy()).argmax(1) == y_np).sum())
        curve.append({"eps": float(eps), "accuracy": correct / len(data)})
    return curve


def _is_stochastic(engine, data: Dataset) -> dict[str, Any]:
    x, _ = next(data.batches(64))
    first = engine.infer(x)
    preds = [first.argmax(1)]
    varies = False
    for _ in range(19):
        out = engine.infer(x)
        varies |= not np.array_equal(out, first)
        preds.append(out.argmax(1))
        if not varies and len(preds) >= 3:
            break
    stable = float(np.mean(np.all(np.stack(preds) == preds[0], axis=0))) if varies else 1.0
    return {"stochastic": bool(varies), "stable_prediction_fraction": stable, "runs": len(preds)}


def _document(bundle, data, threat, suite, seed, backend, labels, e_pred, s_pred, r_pred, robust, per_attack, s_agree,
              zero_grad, stochastic, seconds) -> dict[str, Any]:
    e_ok = e_pred == labels
    n = len(labels)
    lo, hi = wilson_interval(int(robust.sum()), n)
    clean_lo, clean_hi = wilson_interval(int(e_ok.sum()), n)
    doc = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
        "bundle": {"path": str(bundle.path), "precision": bundle.precision, "target": bundle.manifest["target"]},
        "threat_model": {"norm": threat.norm, "eps": threat.eps, "description": threat.describe()},
        "data": {"name": data.name, "n": n, "selection": f"first {n}"}, "suite": suite, "seed": seed, "engine": backend,
        "clean_accuracy": float(e_ok.mean()), "clean_accuracy_ci95": [clean_lo, clean_hi],
        "robust_accuracy": float(robust.mean()), "robust_accuracy_ci95": [lo, hi],
        "models": {"E": {"clean_accuracy": float(e_ok.mean())},
                   "S": {"clean_accuracy": float((s_pred == labels).mean()),
                         "top1_agreement_with_E": float((s_pred == e_pred).mean())}},
        "attacks": per_attack,
        "gradients_on_S": "straight-through through quantizers and rounding (STE/BPDA)",
        "agreement_E_S_on_S_adversarial": None if s_agree is None else float(s_agree.mean()),
        "zero_gradient_points_on_S": zero_grad,
        "stochastic_engine": stochastic,
        "seconds": round(seconds, 2),
    }
    if r_pred is not None:
        doc["models"]["R"] = {"clean_accuracy": float((r_pred == labels).mean()),
                              "top1_agreement_with_E": float((r_pred == e_pred).mean())}
    return doc



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
        # Square ran only on points every gradient attack left robust: what it breaks beyond them is a warning sign.
        gained = doc["robust_accuracy_gradient_attacks_only"] - doc["robust_accuracy"]
        if gained > 0.002 + 1e-9:
            points = round(gained * doc["data"]["n"])
            flags.append({"flag": "black_box_beats_white_box",
                          "detail": f"Square on E broke {points} point(s) ({100 * gained:.1f} pt) that every gradient "
                                    "attack left robust: likely gradient masking, or S does not describe E there"})
    if doc["zero_gradient_points_on_S"]:
        flags.append({"flag": "zero_gradients",
                      "detail": f"{doc['zero_gradient_points_on_S']} points have an all-zero input gradient on S"})
    agree = doc.get("agreement_E_S_on_S_adversarial")
    if agree is not None and agree < 0.95:
        flags.append({"flag": "twin_disagrees_with_engine",
                      "detail": f"E and S agree on only {100 * agree:.1f}% of S's adversarial examples: white-box "
                                "results on S do not fully describe E"})
    if doc["stochastic_engine"]["stochastic"]:
        flags.append({"flag": "randomness",
                      "detail": "the engine's outputs vary between runs: robust accuracy needs EOT and repeated scoring"})
    curve = doc.get("eps_curve") or []
    if curve:
        accs = [p["accuracy"] for p in curve]
        if any(b > a + 0.01 for a, b in zip(accs, accs[1:])):
            flags.append({"flag": "accuracy_not_monotonic_in_eps", "detail": "accuracy rises with eps somewhere on the curve"})
        if accs[-1] > 0.05:
            flags.append({"flag": "not_zero_at_large_eps",
                          "detail": f"accuracy is {100 * accs[-1]:.1f}% at eps={curve[-1]['eps']:.3g}: attacks may be too weak"})
    if "pgd-ce-2x-steps" in by and "pgd-ce" in by and abs(by["pgd-ce-2x-steps"] - by["pgd-ce"]) > 0.005:
        flags.append({"flag": "not_converged", "detail": "doubling PGD steps changes robust accuracy by more than 0.5 pt"})
    return flags
