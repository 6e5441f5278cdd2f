"""FP32 / FP16 / INT8 / INT4 bundles x ONNX Runtime / OpenVINO (f32 and default hint) x batch 1 and 32, on
ResNet-18 and the six real checkpoints, with accuracy and top-1 agreement with FP32 on the test sets,
and the two anchors a user would pick instead: ONNX Runtime's best hand-tuned INT8 (quant_pre_process,
QDQ, U8S8, per-channel, on ORT) and OpenVINO's own quantizer (NNCF `nncf.quantize` of the same FP32
ONNX with the same calibration images, on OpenVINO).

Every variant of one model is measured interleaved round by round in one process (the machine is
shared and noisy); figures are medians of rounds. Accuracy and agreement are on the full shared test
sets (MNIST 10,000; CIFAR-10 the first 1,017). ResNet-18 uses the checkpoint
benchmarks/train_resnet18_cifar.py writes when it exists (else a random init: speed only).

    python benchmarks/runtime_matrix.py [--models all|resnet18,...] [--rounds 3] [--seconds 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from common import SHARED, calibration_for, interleaved_throughput, resnet18_random
from machine import save_result

from deploy_robust.data import Dataset, load_dataset
from deploy_robust.export import ExportOptions, export_bundle
from deploy_robust.ingest import LoadedModel, load_model
from deploy_robust.runtimes import RuntimeOptions, create_runner
from deploy_robust.runtimes.onnxruntime_runner import OnnxRuntimeRunner
from deploy_robust.runtimes.openvino_runner import OpenVINORunner

HERE = Path(__file__).resolve().parent

REAL = (
    "cifar_cnn_a_adv.model",
    "cifar_conv_small_pgd.pth",
    "resnet2b.pth",
    "mnist_cnn_a_adv.model",
    "MadryCNN_no_maxpool_tiny.pt",
    "convex_adversarial_mnist.pth",
)
RESNET18 = HERE / ".models" / "resnet18_cifar_fgsm.pt"
PRECISIONS = ("fp32", "fp16", "int8", "int4")
ENGINES = ("ort", "ov-f32", "ov-default")


def load(name: str) -> tuple[LoadedModel, str]:
    if name == "resnet18":
        if RESNET18.exists():
            return load_model(RESNET18, "resnet18"), "trained (benchmarks/train_resnet18_cifar.py)"
        return resnet18_random(), "random init (speed only)"
    return load_model(SHARED / "models" / name), "shared checkpoint"


def test_set(loaded: LoadedModel) -> Dataset:
    name = "mnist_test.npz" if loaded.spec.shape[0] == 1 else "cifar10_test_first1017.npz"
    return load_dataset(SHARED / "datasets" / name, loaded.spec.shape)


def ort_best_manual(fp32: Path, calib: Dataset, out: Path) -> Path:
    """ONNX Runtime's quantizer as its docs tune it for x86: pre-processing, QDQ, U8 activations, S8
    per-channel weights, min-max calibration."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": x} for x, _ in calib.batches(32)])

        def get_next(self):
            return next(self.batches, None)

    pre = out.with_name("pre.onnx")
    quant_pre_process(str(fp32), str(pre))
    quantize_static(
        str(pre),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )
    return out


def nncf_int8(fp32: Path, calib: Dataset, out: Path) -> Path:
    """NNCF post-training quantization of the FP32 ONNX for OpenVINO, with the same calibration images."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(fp32))
    dataset = nncf.Dataset([x for x, _ in calib.batches(1)])
    quantized = nncf.quantize(model, dataset, subset_size=len(calib))
    ov.save_model(quantized, str(out))
    return out


def runners_for(loaded: LoadedModel, root: Path, threads: int) -> tuple[dict, dict]:
    calib = calibration_for(loaded)
    bundles = {p: export_bundle(loaded, root / p, ExportOptions(p), calib=calib) for p in PRECISIONS}
    options = {
        "ort": None,
        "ov-f32": RuntimeOptions(threads=threads, precision_hint="f32", cache=False),
        "ov-default": RuntimeOptions(threads=threads, cache=False),
    }
    runners, info = {}, {}
    for precision, bundle in bundles.items():
        for engine, option in options.items():
            key = f"{precision} {engine}"
            runners[key] = (
                create_runner("ort-cpu", bundle, threads=threads)
                if option is None
                else create_runner("openvino", bundle, options=option)
            )
            info[key] = {"precision": precision, "engine": engine, "anchor": False}
    manual = ort_best_manual(bundles["fp32"].model_path, calib, root / "ort_manual.onnx")
    runners["ORT best manual INT8 ort"] = OnnxRuntimeRunner(manual, threads=threads)
    info["ORT best manual INT8 ort"] = {"precision": "int8", "engine": "ort", "anchor": "ORT quantize_static tuned"}
    ir = nncf_int8(bundles["fp32"].model_path, calib, root / "nncf.xml")
    for engine, option in (("ov-f32", options["ov-f32"]), ("ov-default", options["ov-default"])):
        key = f"NNCF INT8 {engine}"
        runners[key] = OpenVINORunner(ir, option)
        info[key] = {"precision": "int8", "engine": engine, "anchor": "NNCF nncf.quantize"}
    for key, runner in runners.items():
        runner.activate()
        execution = runner.execution()
        info[key]["executed_precision"] = execution.get("executed_precision")
        info[key]["optimization"] = execution.get("graph_optimization_level")
    info["_int8_weights"] = bundles["int8"].manifest.precision.int8_weights
    return runners, info


def accuracy(runners: dict, data: Dataset) -> dict[str, dict]:
    x = data.as_float()
    preds = {
        k: np.concatenate([r.infer(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)])
        for k, r in runners.items()
    }
    reference = preds["fp32 ort"]
    return {
        k: {"accuracy": float((p == data.labels).mean()), "agreement_with_fp32": float((p == reference).mean())}
        for k, p in preds.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="all")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="1,32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = ["resnet18", *REAL] if args.models == "all" else args.models.split(",")
    rows = []
    for name in names:
        loaded, weights = load(name)
        with tempfile.TemporaryDirectory() as tmp:
            runners, info = runners_for(loaded, Path(tmp), args.threads)
            int8_weights = info.pop("_int8_weights")
            quality = accuracy(runners, test_set(loaded))
            speed = interleaved_throughput(
                runners, [int(b) for b in args.batches.split(",")], args.rounds, args.seconds, loaded.spec.shape
            )
        for r in speed:
            row = {
                "model": name,
                "weights": weights,
                "variant": r["variant"],
                "batch": r["batch"],
                "throughput": r["throughput_median"],
                "throughput_rounds": r["throughput_rounds"],
                **info[r["variant"]],
                **quality[r["variant"]],
            }
            if r["variant"].startswith("int8 "):
                row["int8_weights"] = int8_weights
            rows.append(row)
            print(
                f"{name:28s} {r['variant']:26s} bs{r['batch']:<3d} {r['throughput_median']:9.1f} img/s  "
                f"acc {100 * row['accuracy']:.2f}%  agree {100 * row['agreement_with_fp32']:.2f}%  "
                f"{row.get('executed_precision')}",
                flush=True,
            )
    previous = HERE / "results" / "runtime_matrix.json"
    earlier: list[str] = []
    if args.models != "all" and previous.exists():  # a partial rerun replaces only its own models' rows
        old = json.loads(previous.read_text())
        kept = [r for r in old["results"] if r["model"] not in names]
        rows = kept + rows
        earlier = [c for c in old.get("earlier_commands", []) + [old["command"]]] if kept else []
    out = save_result(
        "runtime_matrix",
        rows,
        threads=args.threads,
        rounds=args.rounds,
        seconds_per_round=args.seconds,
        earlier_commands=earlier,
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
