"""How many targets a targeted APGD needs: at which target rank each break happens, ranked by the clean logits
(AutoAttack's APGD-T) and by MALT's Jacobian estimate (Melamed et al. 2024), after APGD-CE.

On each model, the points APGD-CE (100 steps, on the torch model) leaves robust are attacked by targeted APGD
(100 steps) toward each of 9 targets in turn, separately for each ranking, and the rank at which each point
first breaks is recorded. The `standard` suite's target count is chosen from these figures (docs/verify.md).

    python benchmarks/malt_targets.py [--n 500]
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch

from common import SHARED, shared_model
from machine import save_result

from deploy_robust.data import load_dataset
from deploy_robust.verify import attacks
from deploy_robust.verify.attacks.apgd import ranked_targets
from deploy_robust.verify.threat import ThreatModel

MODELS = [
    ("mnist_cnn_a_adv.model", "mnist_test.npz", 0.3),
    ("MadryCNN_no_maxpool_tiny.pt", "mnist_test.npz", 0.3),
    ("cifar_cnn_a_adv.model", "cifar10_test_first1017.npz", 2 / 255),
]


def break_ranks(model, x, y, threat: ThreatModel, ranking: str) -> Counter:
    if ranking == "malt":
        goals = attacks.malt_targets(model, x, y, 9, threat.norm)
    else:
        goals = ranked_targets(model, x, y, 9)
    left = torch.ones(len(x), dtype=torch.bool)
    ranks: Counter = Counter()
    for rank, target in enumerate(goals, start=1):
        idx = torch.nonzero(left).flatten()
        if idx.numel() == 0:
            break
        adv = attacks.apgd(model, x[idx], y[idx], threat, steps=100, loss=attacks.dlr_targeted_loss,
                           target=target[idx], seed=rank)  # fmt: skip
        with torch.no_grad():
            broken = model(adv).argmax(1) != y[idx]
        ranks[rank] += int(broken.sum())
        left[idx[broken]] = False
    ranks["robust"] = int(left.sum())
    return ranks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args()
    rows = []
    for checkpoint, test, eps in MODELS:
        loaded = shared_model(checkpoint)
        model = loaded.reference().eval()
        for p in model.parameters():
            p.requires_grad_(False)
        data = load_dataset(SHARED / "datasets" / test, loaded.spec.shape).take(args.n)
        x, y = torch.from_numpy(data.as_float()), torch.from_numpy(data.labels)
        threat = ThreatModel("linf", eps)
        with torch.no_grad():
            right = model(x).argmax(1) == y
        x, y = x[right], y[right]
        adv = attacks.apgd(model, x, y, threat, steps=100, seed=0)
        with torch.no_grad():
            left = model(adv).argmax(1) == y
        x, y = x[left], y[left]
        row = {"model": checkpoint, "eps": eps, "n": args.n, "left_by_apgd_ce": len(x)}
        for ranking in ("logits", "malt"):
            ranks = break_ranks(model, x, y, threat, ranking)
            row[ranking] = {str(k): v for k, v in sorted(ranks.items(), key=lambda kv: str(kv[0]))}
        rows.append(row)
        print(row, flush=True)
        save_result("malt_targets", rows)


if __name__ == "__main__":
    main()
