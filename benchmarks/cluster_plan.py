"""The cluster plan for what this machine cannot run: ImageNet 50,000 x AutoAttack-standard on 8 and 64 GPUs.

Part measured, part assumed, each said so:
- *Measured here*: the passes each attack of `--suite autoattack-standard` makes per point it attacks (images
  through S with an input gradient, S forward only, E queries), counted by verify itself (verify.cost) on
  cifar_cnn_a_adv at 2/255. The counts follow from the attacks' iterations, restarts and target classes, not
  from the model, so they carry over to ImageNet.
- *Assumed* (no GPU was lent to this session, so no per-image time could be measured on one): the per-image
  time of a forward+input-gradient and of a forward pass of the ImageNet model on one GPU, and the share of
  points each attack runs on (the cascade: APGD-CE on the clean-correct points, each later attack on what the
  earlier ones left robust), from the model's clean and robust accuracy.

    python benchmarks/cluster_plan.py [--n 64] [--fwd-bwd-img-s 1500] [--fwd-img-s 5000] [--clean 0.64 --robust 0.35]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path


from common import SHARED, shared_model
from machine import save_result

from deploy_robust.data import load_dataset
from deploy_robust.export import export_bundle
from deploy_robust.verify import ThreatModel, run_verify
from deploy_robust.verify.options import VerifyOptions

IMAGES = 50_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=64, help="CIFAR points the counts are taken on")
    parser.add_argument(
        "--fwd-bwd-img-s",
        type=float,
        default=1500.0,
        help="assumed images/s of one GPU for forward + input gradient (ResNet-50, 224x224, fp32)",
    )
    parser.add_argument("--fwd-img-s", type=float, default=5000.0, help="assumed images/s of one GPU, forward only")
    parser.add_argument("--clean", type=float, default=0.64, help="assumed clean accuracy of the ImageNet model")
    parser.add_argument("--robust", type=float, default=0.35, help="assumed robust accuracy after APGD-CE")
    parser.add_argument("--batch", type=int, default=250, help="points per batch (the unit of work)")
    args = parser.parse_args()
    loaded = shared_model("cifar_cnn_a_adv.model")
    if loaded is None:
        sys.exit("needs ../shared/data")
    bundle = export_bundle(loaded, Path(tempfile.mkdtemp()) / "fp32")
    data = load_dataset(SHARED / "datasets" / "cifar10_test_first1017.npz", loaded.spec.shape)
    doc = run_verify(
        bundle,
        data,
        ThreatModel("linf", 2 / 255),
        VerifyOptions(n=args.n, suite="autoattack-standard", sweep=None, resume=False),
    )
    per_point = {}
    for attack in doc["attacks"]:
        points = max(attack["points_attacked"], 1)
        per_point[attack["attack"]] = {k: v / points for k, v in attack["passes"].items()} | {
            "points_attacked": attack["points_attacked"],
            "broke": attack["broke"],
        }
    # the cascade on ImageNet: APGD-CE attacks the clean-correct points, every later attack the robust ones
    share = {name: (args.clean if i == 0 else args.robust) for i, name in enumerate(per_point)}
    gpu_seconds = {}
    for name, counts in per_point.items():
        attacked = share[name] * IMAGES
        gpu_seconds[name] = attacked * (
            counts["S_forward_backward"] / args.fwd_bwd_img_s
            + (counts["S_forward"] + counts["E_images"]) / args.fwd_img_s
        )
    total = sum(gpu_seconds.values())
    batches = math.ceil(IMAGES / args.batch)
    plans = {}
    for gpus in (8, 64):
        rounds = math.ceil(batches / gpus)  # round-robin: the busiest rank's batches
        plans[gpus] = {
            "batches": batches,
            "batches_on_busiest_rank": rounds,
            "balance": round(batches / (rounds * gpus), 3),
            "wall_hours_ideal": round(total / gpus / 3600, 2),
            "wall_hours_with_balance": round(total / gpus / 3600 * (rounds * gpus / batches), 2),
        }
    result = {
        "counts_measured_on": {
            "model": "cifar_cnn_a_adv.model",
            "eps": "2/255",
            "n": args.n,
            "suite": "autoattack-standard",
        },
        "passes_per_attacked_point": per_point,
        "assumed": {
            "fwd_bwd_img_s": args.fwd_bwd_img_s,
            "fwd_img_s": args.fwd_img_s,
            "clean": args.clean,
            "robust": args.robust,
            "images": IMAGES,
            "batch": args.batch,
        },
        "gpu_hours": {k: round(v / 3600, 2) for k, v in gpu_seconds.items()} | {"total": round(total / 3600, 2)},
        "plans": plans,
    }
    for name, counts in per_point.items():
        print(
            f"{name}: {counts['S_forward_backward']:.0f} fwd+bwd, {counts['E_images']:.0f} E images per point; "
            f"{gpu_seconds[name] / 3600:.1f} GPU-h"
        )
    print(
        f"total {total / 3600:.1f} GPU-h; "
        + "; ".join(f"{g} GPUs {p['wall_hours_with_balance']} h" for g, p in plans.items())
    )
    save_result("cluster_plan", result)


if __name__ == "__main__":
    main()
