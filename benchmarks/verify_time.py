"""Wall time of `deploy-robust verify --suite standard` on 1,000 CIFAR-10 images (cifar_cnn_a_adv, FP32 bundle).

The eps sweep is off (it is a separate, cheaper pass); everything else is the standard suite as
the CLI runs it: FGSM, PGD-CE (50 steps x 2 restarts), PGD-margin, APGD-CE, APGD-DLR, APGD-T
(9 targets), Square (5,000 queries) on the engine, per-example worst case on the engine.
On a CUDA machine pass --backend ort-cuda (the attacks then still run in torch on the CPU
unless torch sees the GPU; the figure is recorded with the machine).

    python benchmarks/verify_time.py [--n 1000] [--eps 2/255]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import SHARED, shared_model
from machine import save_result

from deploy_robust.data import load_dataset
from deploy_robust.export import export_bundle
from deploy_robust.verify import ThreatModel, parse_eps, run_verify
from deploy_robust.verify.options import VerifyOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--eps", default="2/255")
    parser.add_argument("--backend", default="ort-cpu")
    args = parser.parse_args()
    loaded = shared_model("cifar_cnn_a_adv.model")
    if loaded is None:
        sys.exit("needs ../shared/data (cifar_cnn_a_adv.model and the CIFAR-10 test subset)")
    data = load_dataset(SHARED / "datasets" / "cifar10_test_first1017.npz", loaded.spec.shape)
    bundle = export_bundle(loaded, Path(tempfile.mkdtemp()) / "fp32")
    doc = run_verify(
        bundle,
        data,
        ThreatModel("linf", parse_eps(args.eps)),
        VerifyOptions(n=args.n, suite="standard", backend=args.backend, sweep=None, resume=False),
        reference=loaded.reference(),
    )
    row = {
        "model": "cifar_cnn_a_adv",
        "n": doc["data"]["n"],
        "suite": "standard",
        "eps": args.eps,
        "backend": args.backend,
        "seconds": doc["seconds"],
        "attack_layout": doc["attack_layout"],
        "clean_accuracy": doc["clean_accuracy"],
        "robust_accuracy": doc["robust_accuracy"],
        "per_attack": {a["attack"]: a["robust_accuracy"] for a in doc["attacks"]},
    }
    print(
        f"standard suite on {row['n']} images: {row['seconds']} s; robust accuracy {100 * row['robust_accuracy']:.1f}%"
    )
    print(save_result("verify_time", [row]))


if __name__ == "__main__":
    main()
