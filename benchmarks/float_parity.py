"""FP32/FP16 export fidelity on the real robust checkpoints of ../shared/data.

For each model: clean accuracy of the torch model, of the FP32 and FP16 bundles on ONNX
Runtime (CPU), top-1 agreement and max |logit difference| against torch, export time and
model.onnx size. Writes benchmarks/results/float_parity.json and prints a Markdown table.

    python benchmarks/float_parity.py            # about a minute on 2 cores
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from machine import save_result

from deploy_robust.data import load_dataset
from deploy_robust.evaluate import compare_logits, evaluate
from deploy_robust.export import ExportOptions, export_bundle
from deploy_robust.ingest import load_model
from deploy_robust.runtimes import create_runner

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"

MODELS = [
    ("mnist_cnn_a_adv.model", "mnist_test.npz"),
    ("MadryCNN_no_maxpool_tiny.pt", "mnist_test.npz"),
    ("convex_adversarial_mnist.pth", "mnist_test.npz"),
    ("cifar_cnn_a_adv.model", "cifar10_test_first1017.npz"),
    ("cifar_conv_small_pgd.pth", "cifar10_test_first1017.npz"),
    ("resnet2b.pth", "cifar10_test_first1017.npz"),
]


def measure(checkpoint: str, data: str, workdir: Path) -> dict:
    loaded = load_model(SHARED / "models" / checkpoint)
    dataset = load_dataset(SHARED / "datasets" / data, loaded.spec.shape)
    reference = evaluate(create_runner("torch", module=loaded.reference()), dataset)
    row = {"model": checkpoint, "dataset": data, "n": len(dataset), "torch_accuracy": reference.accuracy}
    for precision in ("fp32", "fp16"):
        start = time.perf_counter()
        bundle = export_bundle(loaded, workdir / f"{checkpoint}-{precision}", ExportOptions(precision))
        seconds = time.perf_counter() - start
        engine = evaluate(create_runner("ort-cpu", bundle), dataset)
        agreement = compare_logits(engine.logits, reference.logits)
        row[precision] = {
            "accuracy": engine.accuracy,
            "top1_agreement": agreement.top1_agreement,
            "max_abs_logit_diff": agreement.max_abs_diff,
            "mean_abs_logit_diff": agreement.mean_abs_diff,
            "export_seconds": round(seconds, 2),
            "model_bytes": bundle.model_path.stat().st_size,
        }
    return row


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | test images | torch acc | FP32 ORT acc | FP32 top-1 agree | FP32 max abs dlogit | FP16 ORT acc | FP16 top-1 agree | FP16 max abs dlogit | FP32 / FP16 size |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a, h = r["fp32"], r["fp16"]
        lines.append(
            f"| {r['model']} | {r['n']} | {100 * r['torch_accuracy']:.2f}% | {100 * a['accuracy']:.2f}% | "
            f"{100 * a['top1_agreement']:.2f}% | {a['max_abs_logit_diff']:.1e} | {100 * h['accuracy']:.2f}% | "
            f"{100 * h['top1_agreement']:.2f}% | {h['max_abs_logit_diff']:.1e} | "
            f"{a['model_bytes'] / 1024:.0f} KB / {h['model_bytes'] / 1024:.0f} KB |"
        )
    return "\n".join(lines)


def main() -> None:
    if not SHARED.exists():
        sys.exit("needs ../shared/data beside the repository")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(c, d, Path(tmp)) for c, d in MODELS]
    out = save_result("float_parity", rows)
    print(markdown(rows))
    print(f"\nwritten {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
