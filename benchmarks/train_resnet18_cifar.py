"""Train the robust CIFAR-10 ResNet-18 the GDWS benchmarks use: FGSM with random start at eps 2/255.

Trains on the shared CIFAR-10 subset (5,085 images; crops and flips) from a fixed seed and
writes a plain state_dict to benchmarks/.models/ (not committed: 45 MB; this script
rebuilds it from the same seed). A CPU run took 50 minutes for 6 epochs on 2 cores.

    python benchmarks/train_resnet18_cifar.py --epochs 8
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from common import CIFAR_CALIB, SHARED
from deploy_robust import zoo
from deploy_robust.data import load_dataset
from deploy_robust.normalize import with_normalization
from deploy_robust.seeding import seed_everything
from deploy_robust.train import fgsm_random_start, train_classifier

MODELS = Path(__file__).resolve().parent / ".models"
CHECKPOINT = MODELS / "resnet18_cifar_fgsm.pt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--eps", type=float, default=2 / 255)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    entry = zoo.get("resnet18")
    train = load_dataset(CIFAR_CALIB, entry.train_spec.shape)
    seed_everything(args.seed)
    model = entry.build()
    normalized = with_normalization(torch.nn.Identity(), entry.train_spec)  # [0, 1] images -> model inputs
    start = time.perf_counter()
    losses = train_classifier(
        model,
        train,
        epochs=args.epochs,
        batch_size=128,
        lr=2e-3,
        seed=args.seed,
        input_transform=normalized,
        augment=True,
        perturb=fgsm_random_start(args.eps),
    )
    MODELS.mkdir(exist_ok=True)
    torch.save(model.state_dict(), CHECKPOINT)
    info = {
        "epochs": args.epochs,
        "eps": args.eps,
        "seed": args.seed,
        "losses": losses,
        "seconds": time.perf_counter() - start,
        "train_images": len(train),
        "data": str(CIFAR_CALIB.relative_to(SHARED)),
    }
    CHECKPOINT.with_suffix(".json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
