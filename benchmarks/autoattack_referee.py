"""Strength check: our `standard` suite against AutoAttack standard (the referee) on the same points.

Float bundles of three real robust checkpoints, 500 test points, the eps each was trained for.
Ours: `run_verify` (white-box on the twin S, Square on the engine E, per-example worst case on E).
AutoAttack: `pyautoattack` standard (APGD-CE, APGD-T, FAB-T, Square) on the torch model.
The issue's goal: ours <= AutoAttack + 1 pt.

    pip install pyautoattack
    python benchmarks/autoattack_referee.py [--n 500] [--reuse-autoattack]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from common import SHARED, shared_model  # noqa: E402
from machine import save_result  # noqa: E402

from deploy_robust.data import load_dataset  # noqa: E402
from deploy_robust.export import export_bundle  # noqa: E402
from deploy_robust.verify import ThreatModel, run_verify  # noqa: E402

MODELS = [("mnist_cnn_a_adv.model", "mnist_test.npz", 0.3), ("MadryCNN_no_maxpool_tiny.pt", "mnist_test.npz", 0.3),
          ("cifar_cnn_a_adv.model", "cifar10_test_first1017.npz", 2 / 255)]


def main() -> None:
    try:
        from pyautoattack import AutoAttack
    except ImportError:
        sys.exit("needs AutoAttack: pip install pyautoattack")
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--reuse-autoattack", action="store_true",
                        help="take AutoAttack's figures from results/autoattack_referee.json (same model, eps, n)")
    args = parser.parse_args()
    previous = {}
    saved = Path(__file__).resolve().parent / "results" / "autoattack_referee.json"
    if args.reuse_autoattack and saved.exists():
        import json

        previous = {(r["model"], round(r["eps"], 6), r["n"]): r for r in json.loads(saved.read_text())["results"]}
    rows = []
    for checkpoint, test, eps in MODELS:
        loaded = shared_model(checkpoint)
        data = load_dataset(SHARED / "datasets" / test, loaded.spec.shape).take(args.n)
        with tempfile.TemporaryDirectory() as tmp:
            bundle = export_bundle(loaded, Path(tmp) / "fp32", "fp32")
            start = time.perf_counter()
            ours = run_verify(bundle, data, ThreatModel("linf", eps), n=args.n, suite="standard", sweep=None)
            ours_seconds = time.perf_counter() - start
        known = previous.get((checkpoint, round(eps, 6), args.n))
        if known:
            aa_robust, aa_seconds = known["autoattack_standard"], known["autoattack_seconds"]
        else:
            model = loaded.reference().eval()
            x, y = torch.from_numpy(data.as_float()), torch.from_numpy(data.labels)
            start = time.perf_counter()
            adversary = AutoAttack(model, norm="Linf", eps=eps, version="standard", seed=0)
            result = adversary.run_standard_evaluation(x, y, batch_size=250)
            x_adv = result[0] if isinstance(result, tuple) else result  # (x_adv, y_adv) in pyautoattack 0.2
            with torch.no_grad():
                aa_robust = float((model(x_adv).argmax(1) == y).float().mean())
            aa_seconds = time.perf_counter() - start
        rows.append({"model": checkpoint, "eps": eps, "n": args.n, "ours_standard": ours["robust_accuracy"],
                     "autoattack_standard": aa_robust, "difference_pt": 100 * (ours["robust_accuracy"] - aa_robust),
                     "ours_seconds": round(ours_seconds, 1), "autoattack_seconds": round(aa_seconds, 1),
                     "ours_attacks": {a["attack"]: a["robust_accuracy"] for a in ours["attacks"]}})
        print(f"{checkpoint} eps {eps:.4g}: ours {100 * ours['robust_accuracy']:.1f}% ({ours_seconds:.0f} s), "
              f"AutoAttack {100 * aa_robust:.1f}% ({aa_seconds:.0f} s)", flush=True)
        save_result("autoattack_referee", rows)  # after every model: a long run keeps what it finished


if __name__ == "__main__":
    main()
