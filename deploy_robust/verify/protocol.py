"""The verify protocol: three models, every candidate scored on the engine, per-example worst case.

R = the float reference (when given), S = the differentiable twin rebuilt from the bundle's
own graph (quantizers and rounding ops straight-through), E = the engine. White-box attacks
run on S, transfer attacks on R, Square on E itself; each candidate is finally classified by
E. A point is robust only if E is right on it clean and on every candidate of every attack.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import onnx
import torch

from deploy_robust import process_group
from deploy_robust.bundle import Bundle
from deploy_robust.data import Dataset
from deploy_robust.errors import UserError
from deploy_robust.model import PickOutput
from deploy_robust.progress import bar, count_steps, progress
from deploy_robust.quant.twin import attack_graph
from deploy_robust.runtimes import create_runner
from deploy_robust.verify import attacks
from deploy_robust.verify.cost import Passes, expected_steps, step_weight
from deploy_robust.verify.detection import detector_of, verify_detector
from deploy_robust.verify.document import per_example, result_document
from deploy_robust.verify.flags import sanity_flags
from deploy_robust.verify.resume import BatchCheckpoint
from deploy_robust.verify.shards import run_sharded, share
from deploy_robust.verify.speed import prepare_for_attack
from deploy_robust.verify.options import VerifyOptions
from deploy_robust.verify.suites import SUITES, Attack, Randomness
from deploy_robust.verify.threat import ThreatModel

# The eps sweep, as multiples of the threat's eps (issue: a fixed 0..64/255 sweep sat below MNIST's 0.3 and
# every L2 radius, so "not zero at large eps" fired on honest runs).
SWEEP_MULTIPLES = (0, 0.25, 0.5, 1, 2, 4, 8)
_RESUMED = "resumed"   # a batch's [came from its checkpoint, checkpoint files rejected], counted over every rank


# The eps sweep runs on the first SWEEP_POINTS verified points: it checks that accuracy falls with eps and
# reaches ~0 (verify.flags), which 100 points show as well as 1,000, at a fraction of the cost (on a CIFAR
# ResNet-18 the full-n sweep was 45% of a verify).
SWEEP_POINTS = 100


def sweep_for(threat: ThreatModel, shape: tuple[int, ...]) -> tuple[float, ...]:
    """eps x SWEEP_MULTIPLES, capped at the largest distance the input domain has: 1 for L-inf on [0, 1] images,
    sqrt(C*H*W) for L2 (the cube's diagonal). At the cap any image reaches any other, so accuracy must reach ~0."""
    limit = 1.0 if threat.norm == "linf" else math.sqrt(math.prod(shape))
    if threat.eps == 0:
        return (0.0,)
    return tuple(sorted({min(limit, float(m) * threat.eps) for m in SWEEP_MULTIPLES}))


def attack_twin(bundle: Bundle, bpda: bool = True, attack_output: str | None = None) -> torch.nn.Module:
    """S: the bundle's graph in torch with quantizers and rounding ops straight-through (BPDA).

    S computes in float32 and passes straight through FP16 casts: fp16 gradients underflow
    (zero input gradients on confident points), and the casts' rounding is far below any eps.
    Integer quantization is kept exactly; E scores every candidate at the deployed precision.
    S returns `attack_output`: by default the output the bundle's manifest names for attacks
    (an ensemble's averaged probabilities instead of its gradient-free vote), else the first."""
    model = onnx.load(str(bundle.model_path))
    outputs = [o.name for o in model.graph.output]
    defense = bundle.manifest.defense
    name = attack_output or (defense.attack_output if defense else None) or outputs[0]
    if name not in outputs:
        raise UserError(f"--attack-output {name}: the graph's outputs are {', '.join(outputs)}")
    twin = attack_graph(model, bpda)
    return PickOutput(twin, outputs.index(name))


def _prepare(module: torch.nn.Module, example: torch.Tensor, layout: str = "auto", precision: str = "fp32"):
    """`prepare_for_attack`, in the layout and precision rank 0 timed fastest on every rank of a process group
    (their rounding differs, and the ranks' results must merge into what one process would find)."""
    model, used, used_precision = prepare_for_attack(module, example, layout, precision)
    chosen = process_group.rank_zero_value(f"{used},{used_precision}").split(",")
    if chosen == [used, used_precision]:
        return model, used, used_precision
    return prepare_for_attack(module, example, *chosen)


# bf16 keeps 8 significant bits: a pixel near 1.0 moves in steps of 2**-8 (about 1/255) once autocast casts the
# input. A perturbation only a few of those steps wide is blurred in the twin's loss, which APGD's step-size
# control and best-point tracking read. So `auto` takes bf16 only where a pixel's budget spans at least 4 such
# steps. (On the CIFAR ResNet-18 at 1/255, fp32 and bf16 gave the same robust accuracy: docs/verify.md.)
BF16_MIN_PIXEL_EPS = 4 * 2**-8


def gradient_precision_for(bundle: Bundle, asked: str, threat: ThreatModel | None = None) -> str:
    """What `auto` may choose from: bf16 gradients only on a float graph, whose twin has no integer quantizers
    (their rounding in bf16 would move the twin's levels away from the engine's), and only where the threat's
    per-pixel budget (L-inf eps; L2 eps over the square root of the pixel count) is at least BF16_MIN_PIXEL_EPS."""
    if asked != "auto":
        return asked
    if bundle.manifest.precision.mode not in ("fp32", "fp16"):
        return "fp32"
    if threat is not None:
        pixels = math.prod(bundle.spec.shape)
        per_pixel = threat.eps if threat.norm == "linf" else threat.eps / math.sqrt(pixels)
        if per_pixel < BF16_MIN_PIXEL_EPS:
            return "fp32"
    return asked


def _run_white_box(attack: Attack, model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, seed: int,
                   eot: int = 1, confirm=None) -> torch.Tensor:
    extra = {"confirm": confirm} if confirm is not None and attack.method in attacks.CONFIRMING else {}
    return attacks.WHITE_BOX[attack.method](model, x, y, threat, seed=seed, eot=eot, **attack.params, **extra)


def _engine_confirm(infer, x_np: np.ndarray, y_np: np.ndarray):
    """An attack's early exit checked on E (a deterministic engine): rows of x_np -> E misclassifies the candidate."""
    def confirm(rows: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(infer(candidates.numpy()).argmax(1) != y_np[rows.numpy()])
    return confirm


def _run_black_box(attack: Attack, scores, x: np.ndarray, y: np.ndarray, threat: ThreatModel, seed: int) -> np.ndarray:
    return attacks.BLACK_BOX[attack.method](scores, x, y, threat, seed=seed, **attack.params)


def _scored(infer, x: np.ndarray, y: np.ndarray, passes: int) -> np.ndarray:
    """[passes, n] booleans: E correct on each point in each scoring pass."""
    return np.stack([infer(x).argmax(1) == y for _ in range(passes)])


def run_verify(bundle: Bundle, dataset: Dataset, threat: ThreatModel, options: VerifyOptions = VerifyOptions(), *,
               reference: torch.nn.Module | None = None, defense_plan: Callable | None = None) -> dict[str, Any]:
    """Verify `bundle` on the first `options.n` points of `dataset` (see VerifyOptions for the settings).

    `reference`: the float model, for transfer attacks and the paired delta.
    `defense_plan`: the attacks the bundle's defense needs beyond the suite (its ModelKind's `attack_plan`,
    e.g. every majority of a voting ensemble); `deploy_robust.api.verify` passes it. A bundle whose
    defense votes by majority is refused without it: its verdict would miss the attacks that beat it."""
    o = options
    suite, backend, batch_size, seed, bpda = o.suite, o.backend, o.batch_size, o.seed, o.bpda
    data = _points(bundle, dataset, o.n)
    run_started = time.perf_counter()
    with process_group.all_or_none("loading the engine"):   # a rank that cannot fails every rank, in one line
        engine = create_runner(backend, bundle, options=o.runtime)
    started = time.perf_counter()
    example = torch.from_numpy(next(data.batches(batch_size))[0])
    twin = attack_twin(bundle, bpda, o.attack_output)
    S, used_layout, used_precision = _prepare(twin, example, o.layout, gradient_precision_for(bundle, o.gradient_precision, threat))
    if reference is not None:
        reference, _, _ = _prepare(reference, example, used_layout, used_precision)
    throughput = _throughput(S, engine, example, used_precision)
    plan, extra_models = _attack_plan(bundle, SUITES[suite].attacks, reference is not None, o.attack_output,
                                      defense_plan, twin, example, used_layout, used_precision)
    randomness = SUITES[suite].stochastic if _is_stochastic(engine, data) else Randomness()
    if o.eot is not None:
        randomness = Randomness(eot=o.eot, square_draws=randomness.square_draws, passes=randomness.passes)
    settings = {"protocol": "cascade", "bundle_sha256": bundle.manifest.model.sha256, "data": data.name, "n": len(data),
                "threat": [threat.norm, threat.eps], "randomness": vars(randomness), "reference": reference is not None,
                **o.resume_fields()}
    checkpoint = BatchCheckpoint(bundle.path, settings, o.resume)

    def attack_batch(x_np: np.ndarray, y_np: np.ndarray, index: int, shown) -> dict[str, np.ndarray]:
        return _verify_batch(plan, engine, S, reference, extra_models, x_np, y_np, threat, randomness, seed, index,
                             shown)

    merged, zero_grad, resumed = _attack_all(list(data.batches(batch_size)), plan, checkpoint, attack_batch)
    seconds = time.perf_counter() - started
    doc = result_document(bundle, data, threat, options=o, plan=plan, merged=merged, randomness=randomness,
                          zero_grad=zero_grad, seconds=seconds)
    if not bpda:
        doc["gradients_on_S"] = "plain autograd (--no-bpda): rounding ops have zero gradient; not a verdict"
    stages = {"attacks": round(seconds, 2)}
    _add_curve_and_detector(doc, stages, bundle, data, threat, S, engine, twin, o.sweep, batch_size, seed, randomness)
    doc["stage_seconds"] = stages
    doc["seconds_total"] = round(time.perf_counter() - run_started, 2)
    if (launched := process_group.seconds_since_launch()) is not None:  # under --workers: start-up included
        doc["seconds_since_launch"] = round(launched, 2)
    doc |= {"engine_execution": engine.execution(), "attack_layout": used_layout, "gradient_precision": used_precision,
            "throughput": throughput,
            "attacked_output": twin.module.output_names[twin.index],
            "resume": {"reused_batches": int(resumed[0]), "rejected_batch_files": int(resumed[1])},
            "processes": process_group.world_size()}
    doc["flags"] = sanity_flags(doc)
    checkpoint.finish()
    return doc


def _throughput(S, engine, example: torch.Tensor, precision: str) -> dict[str, Any]:
    """The twin's and the engine's images per second on this machine, timed once on the first batch (best of 2):
    what an attack's gradient passes and engine queries cost here."""
    x_np = example.numpy()
    s_time = e_time = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        attacks.gradient(S, example, torch.zeros(len(example), dtype=torch.long), "ce", 1)
        s_time = min(s_time, time.perf_counter() - start)
        start = time.perf_counter()
        engine.infer(x_np)
        e_time = min(e_time, time.perf_counter() - start)
    return {"batch": len(example), "S_gradient_images_per_s": round(len(example) / s_time, 1),
            "S_precision": precision, "E_images_per_s": round(len(example) / e_time, 1)}


def _points(bundle: Bundle, dataset: Dataset, n: int) -> Dataset:
    """The first `n` points, checked against the bundle's input shape and classes."""
    if dataset.shape != bundle.spec.shape:
        raise UserError(f"{dataset.name}: images are {dataset.shape}, the bundle takes {bundle.spec.shape}")
    data = dataset.take(n)
    data.check_labels(bundle.spec.num_classes, f"bundle {bundle.path.name}")
    return data


class _AttackProgress:
    """verify's progress: each attack's share of a batch weighs its expected steps per point (`expected_steps`), and
    the points the cascade spares it (broken by an earlier attack) count as done when it starts, so the ETA follows
    the work that is really left. The line names the attack and batch under way."""

    def __init__(self, plan: list, batches: list) -> None:
        self.weights = {a.name: expected_steps(a) for a in plan}
        self.batches = len(batches)
        points = sum(len(y) for _, y in batches) * share(len(batches)) / max(1, len(batches))  # this rank's share
        self.shown = bar(round(points * sum(self.weights.values())), desc="verify", weighted=True)
        self.share, self.per_step, self.credited = 0, 1.0, 0.0  # the attack under way: its share, credited so far

    def start(self, attack, index: int, points: int, attacked: int) -> None:
        """The attack starts on `attacked` of the batch's `points`; its iterations move the line as they run
        (`progress.count_steps`), up to its expected share."""
        weight = self.weights.get(attack.name, 1.0)
        self.shown.doing(f"{attack.name}, batch {index + 1}/{self.batches}")
        self.shown.update(round(weight * (points - attacked)), free=True)
        self.share, self.per_step, self.credited = round(weight * attacked), step_weight(attack), 0.0
        count_steps(self._steps)

    def _steps(self, points: int) -> None:
        before = int(self.credited)
        self.credited = min(float(self.share), self.credited + points * self.per_step)
        if int(self.credited) > before:
            self.shown.update(int(self.credited) - before)

    def finish(self) -> None:
        count_steps(None)
        self.shown.update(self.share - int(self.credited))

    def skip_batch(self, points: int) -> None:  # reloaded from its checkpoint
        self.shown.update(round(points * sum(self.weights.values())), free=True)

    def close(self) -> None:
        count_steps(None)  # an attack cut short (a time budget, an error) counts no more
        self.shown.close()


def _attack_all(batches: list, plan: list, checkpoint: BatchCheckpoint, attack_batch):
    """Every batch attacked (or reloaded from its checkpoint), this rank's share of them when in a process group;
    the per-point results merged in data order, the zero-gradient count, and [batches reused, files rejected]."""
    shown = _AttackProgress(plan, batches)

    def verify_batch(index: int) -> dict[str, np.ndarray]:
        x_np, y_np = batches[index]
        rejected = checkpoint.rejected
        done = checkpoint.load(index, (x_np, y_np))
        reused = done is not None
        if done is None:
            done = attack_batch(x_np, y_np, index, shown)
            checkpoint.save(index, (x_np, y_np), done)
        else:
            shown.skip_batch(len(y_np))
        return done | {_RESUMED: np.array([int(reused), checkpoint.rejected - rejected])}

    # this rank's batches (all of them when alone); every rank gets every batch back, in order
    try:
        results = run_sharded(len(batches), verify_batch)
    finally:
        shown.close()
    resumed = np.sum([r.pop(_RESUMED) for r in results], axis=0)
    common = set.intersection(*(set(r) for r in results)) - {"zero_grad"}  # resume files of older versions lack some
    merged = {k: np.concatenate([np.atleast_1d(r[k]) for r in results], axis=-1) for k in results[0] if k in common}
    return merged, sum(int(r["zero_grad"]) for r in results), resumed


def _attack_plan(bundle: Bundle, suite_attacks, with_reference: bool, attack_output: str | None,
                 defense_plan: Callable | None, twin, example: torch.Tensor, layout: str, precision: str):
    """The suite's attacks (transfer ones only with a reference), and before Square the attacks the bundle's defense
    needs (e.g. every majority of a voting ensemble), with the models they attack."""
    plan = [a for a in suite_attacks if with_reference or a.on != "R"]
    extra_models: dict[str, Any] = {}
    defense = bundle.manifest.defense
    if attack_output is None and defense is not None:  # e.g. an ensemble's vote: each majority of its members
        if defense.majority and defense_plan is None:
            raise UserError(f"bundle {bundle.path.name}: its {defense.kind} defense votes by majority; verify it with "
                            "its model kind's attack plan (deploy_robust.api.verify or the verify command does)")
        extra, extra_models = defense_plan(defense, twin, plan) if defense_plan else ([], {})
        extra_models = {k: prepare_for_attack(m, example, layout, precision)[0] for k, m in extra_models.items()}
        square = next((i for i, a in enumerate(plan) if a.on == "E"), len(plan))
        plan[square:square] = extra  # before Square, which only runs on the points left robust
    return plan, extra_models


def _add_curve_and_detector(doc: dict[str, Any], stages: dict[str, float], bundle: Bundle, data: Dataset,
                            threat: ThreatModel, S, engine, twin, sweep, batch_size: int, seed: int,
                            randomness: Randomness) -> None:
    """The accuracy-vs-eps curve (`sweep`: "auto", radii, or None) and, for a detecting defense, its detector-aware
    verdict, each timed in `stages`."""
    if sweep == "auto":
        sweep = sweep_for(threat, bundle.spec.shape)
    if sweep:
        start = time.perf_counter()
        points = min(len(data), SWEEP_POINTS)  # a sanity curve: its flags need its shape, not every point
        doc["eps_curve"] = eps_curve(S, engine, data.take(points), threat, sweep, batch_size, seed, randomness,
                                     robust_at_eps=per_example(doc, "robust")[:points])
        doc["eps_curve_points"] = points
        stages["eps_sweep"] = round(time.perf_counter() - start, 2)
    if detector_of(bundle) is not None:
        start = time.perf_counter()
        doc["detector"] = verify_detector(bundle, data, threat, batch_size=batch_size, seed=seed, engine=engine,
                                          twin=twin.module)
        stages["detector"] = round(time.perf_counter() - start, 2)


def _verify_batch(plan, engine, S, reference, extra_models: dict, x_np, y_np, threat, randomness: Randomness, seed: int,
                  index: int, shown: _AttackProgress | None = None) -> dict[str, np.ndarray]:
    """Every attack of the plan on one batch; returns what E got right, per pass and attack."""
    torch.manual_seed(seed + index)  # S's own random draws (stochastic twins), reproducibly per batch
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    passes = randomness.passes
    e_clean_pred = np.stack([engine.infer(x_np).argmax(1) for _ in range(passes)])
    out: dict[str, np.ndarray] = {"e_clean_pred": e_clean_pred}
    with torch.no_grad():
        out["s_clean_pred"] = S(x).argmax(1).numpy()
        if reference is not None:
            out["r_clean_pred"] = reference(x).argmax(1).numpy()
    grad, _, _ = attacks.gradient(S, x, y, "ce", 1)
    out["zero_grad"] = np.asarray((grad.flatten(1).abs().sum(1) == 0).sum())
    clean_ok = e_clean_pred == y_np
    # The cascade (as AutoAttack runs): an attack runs only on the points every earlier one left robust, in at
    # least one scoring pass for gradient attacks (so a stochastic engine's per-pass figures stay honest), in
    # every pass for Square.
    robust = clean_ok.copy()         # [passes, n]: E right clean and on every candidate so far
    s_agree = None
    for a_index, attack in enumerate(plan):
        adv = x_np.copy()
        seed_here = seed + 1000 * index + a_index
        started = time.perf_counter()
        counted = Passes()           # what this attack costs, in images through each model
        infer = counted.engine(engine.infer)
        todo = np.flatnonzero(robust.all(0) if attack.on == "E" else robust.any(0))
        if shown is not None:
            shown.start(attack, index, len(y_np), todo.size)
        if todo.size and attack.on != "E":
            model = {"S": S, "R": reference}.get(attack.on) or extra_models[attack.on]  # e.g. "S:members i+j"
            confirm = _engine_confirm(infer, x_np[todo], y_np[todo]) if randomness.passes == 1 else None
            found = _run_white_box(attack, counted.model(model), x[todo], y[todo], threat, seed_here,
                                   1 if attack.on == "R" else randomness.eot, confirm).numpy()
            if attack.on == "S" and s_agree is None:  # the first gradient attack: every point E gets right
                with torch.no_grad():
                    s_agree = S(torch.from_numpy(found)).argmax(1).numpy() == engine.infer(found).argmax(1)
            adv[todo] = found
        elif todo.size:
            scores = infer if randomness.square_draws == 1 else attacks.averaged_scores(infer, randomness.square_draws)
            adv[todo] = _run_black_box(attack, scores, x_np[todo], y_np[todo], threat, seed_here)
        ok = _scored(infer, adv, y_np, passes) & clean_ok
        out[f"attack:{attack.name}"] = ok
        out[f"attacked:{attack.name}"] = np.array([todo.size])
        out[f"seconds:{attack.name}"] = np.array([time.perf_counter() - started])
        out[f"passes:{attack.name}"] = counted.counts
        if shown is not None:
            shown.finish()
        robust &= ok
    out["s_agree_on_adversarial"] = s_agree if s_agree is not None else np.zeros(0, dtype=bool)
    return out


def reference_robust_accuracy(reference: torch.nn.Module, dataset: Dataset, threat: ThreatModel, *, n: int,
                              suite: str, batch_size: int = 128, seed: int = 0) -> float:
    """R's robust accuracy on the same points under the suite's white-box attacks (for the paired delta)."""
    data = dataset.take(n)
    batches = list(data.batches(batch_size))
    reference, _, _ = _prepare(reference, torch.from_numpy(batches[0][0]))

    def robust_in(index: int) -> dict[str, np.ndarray]:
        x, y = (torch.from_numpy(a) for a in batches[index])
        with torch.no_grad():
            ok = (reference(x).argmax(1) == y).numpy()
        for attack in (a for a in SUITES[suite].attacks if a.on == "S"):
            adv = _run_white_box(attack, reference, x, y, threat, seed + index)
            with torch.no_grad():
                ok &= (reference(adv).argmax(1) == y).numpy()
        return {"robust": ok}

    return float(np.concatenate([r["robust"] for r in run_sharded(len(batches), robust_in)]).mean())


def eps_curve(S, engine, data: Dataset, threat: ThreatModel, sweep, batch_size: int, seed: int,
              randomness: Randomness = Randomness(), robust_at_eps: np.ndarray | None = None) -> list[dict]:
    """E's accuracy under PGD-CE (20 steps on S, EOT for stochastic engines) at each eps: it should fall to
    about 0. For a stochastic E, the accuracy is the mean over the scoring passes.

    Given `robust_at_eps` (the suite's per-point verdict at the threat's eps) and a deterministic engine, the
    sweep is warm-started from it: at the threat's eps the curve is the suite's own result; above it, PGD runs
    only on the points still robust at the next smaller eps (a point broken inside a ball is broken inside
    every larger one); below it, only on the points broken at the next larger eps (a point robust in a ball
    counts robust in every smaller one, as an upper bound)."""
    if robust_at_eps is None or randomness.passes > 1:
        return [{"eps": float(eps), "accuracy": _pgd_accuracy(S, engine, data, threat.norm, float(eps), batch_size, seed,
                                                              randomness).mean()}
                for eps in progress(sweep, total=len(sweep), desc="eps sweep")]
    shown = bar(len(sweep), desc="eps sweep")
    robust = {threat.eps: robust_at_eps.astype(bool)}
    above = sorted(e for e in sweep if e > threat.eps)
    below = sorted((e for e in sweep if e < threat.eps), reverse=True)
    for chain, attack_robust in ((above, True), (below, False)):
        previous = robust[threat.eps]
        for eps in chain:
            todo = previous if attack_robust else ~previous
            now = previous.copy()
            if todo.any():
                now[todo] = _pgd_accuracy(S, engine, data.subset(np.flatnonzero(todo)), threat.norm, float(eps),
                                          batch_size, seed, randomness)
            robust[eps] = previous = now
            shown.update()
    shown.update(int(threat.eps in sweep))
    shown.close()
    return [{"eps": float(eps), "accuracy": float(robust[eps].mean()) if eps in robust else None} for eps in sweep]


def _pgd_accuracy(S, engine, data: Dataset, norm: str, eps: float, batch_size: int, seed: int,
                  randomness: Randomness) -> np.ndarray:
    """Per point, the fraction of scoring passes E is right after PGD-CE (20 steps on S) at `eps`."""
    t = ThreatModel(norm, eps)
    batches = list(data.batches(batch_size))

    def right_in(index: int) -> dict[str, np.ndarray]:
        x_np, y_np = batches[index]
        x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
        adv = x if eps == 0 else attacks.pgd(S, x, y, t, steps=20, seed=seed + index, eot=randomness.eot)
        return {"right": _scored(engine.infer, adv.numpy(), y_np, randomness.passes).mean(0)}

    return np.concatenate([r["right"] for r in run_sharded(len(batches), right_in)])


def _is_stochastic(engine, data: Dataset) -> bool:
    """Randomness detection: the same inputs give different logits on a second run."""
    x, _ = next(data.batches(64))
    first = engine.infer(x)
    return any(not np.array_equal(engine.infer(x), first) for _ in range(2))


