"""PGD throughput (images x steps per second): ours against a straightforward loop and AutoAttack's APGD-CE.

Equal work for every method: the same model, the same batch, the same number of steps, every
image attacked for every step (labels are the model's own predictions, so AutoAttack, which
skips misclassified points, attacks them all too). Methods, interleaved round by round so
host drift hits them alike; the median round is reported:

- reference loop: the loop most code uses (`loss.backward()` on the model as loaded, sign step, clamp);
- AutoAttack APGD-CE (`pyautoattack`), n_iter = steps, one restart, on the model as loaded;
- ours: `deploy_robust.verify.attacks.pgd` / `apgd` on the model as verify prepares it
  (frozen weights, memory layout chosen by timing; `verify.speed`), on R (the torch model)
  and on S (the twin rebuilt from the exported ONNX bundle, which is what verify attacks).

    python benchmarks/attack_speed.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from common import SHARED, resnet18_random, shared_model
from machine import save_result

from deploy_robust.data import load_dataset
from deploy_robust.export import export_bundle
from deploy_robust.verify import ThreatModel, attacks
from deploy_robust.verify.protocol import attack_twin
from deploy_robust.verify.speed import prepare_for_attack

EPS = 8 / 255


def reference_loop(model, x, y, steps: int, eps: float = EPS):
    """What a typical notebook does: random start, backward(), sign step, projection."""
    step = 2.5 * eps / steps
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        F.cross_entropy(model(x_adv), y).backward()
        x_adv = torch.min(torch.max(x_adv.detach() + step * x_adv.grad.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv


def images(n: int) -> torch.Tensor:
    path = SHARED / "datasets" / "cifar10_test_first1017.npz"
    if path.exists():
        x, _ = next(load_dataset(path, (3, 32, 32)).batches(n))
        return torch.from_numpy(x)
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def measure(name: str, loaded, batch: int, steps: int, rounds: int) -> dict:
    from pyautoattack.autopgd_base import APGDAttack

    x = images(batch)
    as_loaded = copy.deepcopy(loaded.reference())  # the model as it comes (weights require grad when trainable)
    for p in as_loaded.parameters():
        p.requires_grad_(True)
    with torch.no_grad():
        y = as_loaded(x).argmax(1)
    threat = ThreatModel("linf", EPS)
    bundle = export_bundle(loaded, Path(tempfile.mkdtemp()) / "fp32")
    ours_r, layout_r, _ = prepare_for_attack(loaded.reference(), x)
    ours_s, layout_s, _ = prepare_for_attack(attack_twin(bundle), x)
    autoattack = APGDAttack(as_loaded, n_iter=steps, norm="Linf", eps=EPS, n_restarts=1, device="cpu", loss="ce")
    methods = {
        "reference_loop": lambda: reference_loop(as_loaded, x, y, steps),
        "autoattack_apgd_ce": lambda: autoattack.perturb(x, y),
        "ours_pgd_on_R": lambda: attacks.pgd(ours_r, x, y, threat, steps=steps),
        "ours_apgd_ce_on_R": lambda: attacks.apgd(ours_r, x, y, threat, steps=steps),
        "ours_pgd_on_S": lambda: attacks.pgd(ours_s, x, y, threat, steps=steps),
    }
    seconds: dict[str, list[float]] = {k: [] for k in methods}
    for fn in methods.values():
        fn()  # warm-up: oneDNN primitive caches, allocator
    for _ in range(rounds):
        for key, fn in methods.items():
            start = time.perf_counter()
            fn()
            seconds[key].append(time.perf_counter() - start)
    rates = {k: batch * steps / statistics.median(v) for k, v in seconds.items()}
    row = {
        "model": name,
        "batch": batch,
        "steps": steps,
        "rounds": rounds,
        "eps": EPS,
        "layout_R": layout_r,
        "layout_S": layout_s,
        "images_x_steps_per_s": {k: round(v, 1) for k, v in rates.items()},
        "spread_pct": {k: round(100 * (max(v) - min(v)) / statistics.median(v), 1) for k, v in seconds.items()},
        "ours_pgd_vs_reference_loop": round(rates["ours_pgd_on_R"] / rates["reference_loop"], 2),
        "ours_apgd_vs_autoattack_apgd": round(rates["ours_apgd_ce_on_R"] / rates["autoattack_apgd_ce"], 2),
    }
    print(f"{name}: " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()) + " images x steps / s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    rows = []
    cnn = shared_model("cifar_cnn_a_adv.model")
    if cnn is not None:
        rows.append(measure("cifar_cnn_a_adv", cnn, batch=128, steps=20, rounds=args.rounds))
    rows.append(measure("resnet18 (CIFAR, random init)", resnet18_random(), batch=64, steps=5, rounds=args.rounds))
    print(save_result("attack_speed", rows, torch_threads=torch.get_num_threads()))


if __name__ == "__main__":
    main()
