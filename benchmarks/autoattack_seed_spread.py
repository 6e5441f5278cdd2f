"""One test point under targeted APGD (9 targets, 100 steps), AutoAttack's own and ours, over random seeds: how
often each breaks it. For a point whose break depends on the random start, a referee row at n=100 moves by one
point (1 pt) with the seed of either side.

    python benchmarks/autoattack_seed_spread.py [--model pyautoattack-resnet18] [--eps 1/255] [--point 80] [--seeds 6]
"""

from __future__ import annotations

import argparse
import time

import torch

from autoattack_referee import CIFAR_TEST, SHARED, _load
from machine import save_result

from deploy_robust.data import load_dataset
from deploy_robust.verify import ThreatModel, parse_eps
from deploy_robust.verify.attacks.apgd import apgd_targeted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pyautoattack-resnet18")
    parser.add_argument("--eps", default="1/255")
    parser.add_argument("--point", type=int, default=80, help="index in the referee's CIFAR-10 test points")
    parser.add_argument("--seeds", type=int, default=6)
    args = parser.parse_args()
    from pyautoattack import AutoAttack

    torch.set_num_threads(1)
    loaded = _load(args.model)
    data = load_dataset(SHARED / "datasets" / CIFAR_TEST, loaded.spec.shape).take(args.point + 1)
    x = torch.from_numpy(data.as_float()[args.point : args.point + 1])
    y = torch.from_numpy(data.labels[args.point : args.point + 1])
    model = loaded.reference().eval()
    eps = parse_eps(args.eps)
    rows = []
    for seed in range(args.seeds):
        started = time.perf_counter()
        adversary = AutoAttack(model, norm="Linf", eps=eps, version="standard", seed=seed)
        adversary.attacks_to_run = ["apgd-t"]
        result = adversary.run_standard_evaluation(x, y, batch_size=1)
        x_adv = result[0] if isinstance(result, tuple) else result
        rows.append({"side": "AutoAttack apgd-t", "seed": seed, "broken": _broken(model, x_adv, y),
                     "seconds": round(time.perf_counter() - started, 1)})  # fmt: skip
        started = time.perf_counter()
        x_adv = apgd_targeted(model, x, y, ThreatModel("linf", eps), steps=100, targets=9, seed=seed)
        rows.append({"side": "ours apgd-t", "seed": seed, "broken": _broken(model, x_adv, y),
                     "seconds": round(time.perf_counter() - started, 1)})  # fmt: skip
    summary = {side: sum(r["broken"] for r in rows if r["side"] == side) for side in {r["side"] for r in rows}}
    save_result(
        f"autoattack_seed_spread_{args.model.replace('-', '_')}",
        rows,
        script="autoattack_seed_spread",
        point=args.point,
        eps=eps,
        broken_of_seeds={side: f"{k} of {args.seeds}" for side, k in sorted(summary.items())},
    )
    print({side: f"broken with {k} of {args.seeds} seeds" for side, k in sorted(summary.items())})


def _broken(model: torch.nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> bool:
    with torch.no_grad():
        return bool(model(x_adv).argmax(1).item() != y.item())


if __name__ == "__main__":
    main()
