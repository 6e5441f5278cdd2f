"""The INT8 a user would pick instead of ours, as bundles our verify can attack on the engine that runs them.

- ONNX Runtime's best hand-tuned INT8 (`runtime_matrix.ort_best_manual`: quant_pre_process, QDQ, U8 activations,
  S8 per-channel weights, min-max), target ort-cpu;
- NNCF's INT8 (`nncf.quantize`, defaults) of the same FP32 ONNX, target openvino: NNCF's ONNX backend writes Q/DQ
  where OpenVINO fuses them, which OpenVINO reads as the FakeQuantize nodes of NNCF's own IR;
- NNCF's accuracy control (`nncf.quantize_with_accuracy_control`): clean top-1 on validation images as the metric,
  a maximal absolute drop (tune's clean budget); layers go back to float until the drop holds.

`as_bundle` writes such a graph as an ordinary bundle beside the FP32 one (its manifest is the FP32 bundle's with
the model, precision, target and calibration sections replaced), so verify builds its straight-through twin from
the graph itself and scores every attack on the engine. Calibration: the same images our export calibrates on.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from runtime_matrix import ort_best_manual

from deploy_robust.bundle import Bundle
from deploy_robust.bundle.store import write_bundle
from deploy_robust.data import Dataset
from deploy_robust.hashing import sha256_bytes


def ort_int8(fp32: Bundle, calib: Dataset, out: Path) -> Bundle:
    """ONNX Runtime's quantize_static as its docs tune it for x86, as an ort-cpu bundle."""
    graph = ort_best_manual(fp32.model_path, calib, out.with_suffix(".onnx"))
    return as_bundle(fp32, graph, out, "ort-cpu", "onnxruntime.quantization (QDQ, U8S8, per-channel)", calib)


def nncf_int8(fp32: Bundle, calib: Dataset, out: Path) -> Bundle:
    """`nncf.quantize` of the FP32 ONNX with its defaults, as an openvino bundle."""
    import nncf

    quantized = nncf.quantize(onnx.load(str(fp32.model_path)), _nncf_data(calib), subset_size=len(calib))
    return _saved(fp32, quantized, out, f"nncf {nncf.__version__} quantize", calib)


def nncf_accuracy_control(fp32: Bundle, calib: Dataset, validation: Dataset, max_drop: float, out: Path) -> Bundle:
    """`nncf.quantize_with_accuracy_control` of the FP32 ONNX: clean top-1 on `validation`, absolute drop at most
    `max_drop`; as an openvino bundle."""
    import nncf
    import openvino as ov

    images, labels = next(validation.batches(len(validation)))

    def top1(model: Any, items) -> float:  # items: (image, label) pairs (NNCF ranks on subsets of them)
        compiled = ov.Core().compile_model(model if isinstance(model, ov.Model) else _ov_model(model), "CPU")
        hits = [int(np.argmax(compiled(x[None])[0])) == int(y) for x, y in items]
        return float(np.mean(hits))

    quantized = nncf.quantize_with_accuracy_control(
        onnx.load(str(fp32.model_path)),
        _nncf_data(calib),
        nncf.Dataset(list(zip(images, labels))),
        top1,
        max_drop=max_drop,
        subset_size=len(calib),
    )
    name = f"nncf {nncf.__version__} quantize_with_accuracy_control (clean top-1, drop <= {max_drop:g})"
    return _saved(fp32, quantized, out, name, calib)


def as_bundle(fp32: Bundle, graph: Path, out: Path, target: str, exporter: str, calib: Dataset) -> Bundle:
    """A third-party INT8 graph (Q/DQ ONNX) written as a bundle for `target`, beside the FP32 bundle it came from."""
    data = Path(graph).read_bytes()
    manifest = copy.deepcopy(fp32.manifest.document)
    manifest.pop("files", None)
    manifest["model"] |= {"sha256": sha256_bytes(data), "exporter": exporter}
    manifest["precision"] = {"mode": "int8", "layers": []}
    manifest["target"] = target
    manifest["calibration"] = {"method": "the quantizer's own", "num_images": len(calib), "dataset": calib.name}
    return write_bundle(out, {"model.onnx": data}, manifest)


def _saved(fp32: Bundle, quantized: onnx.ModelProto, out: Path, exporter: str, calib: Dataset) -> Bundle:
    path = out.with_suffix(".onnx")
    onnx.save(quantized, str(path))
    return as_bundle(fp32, path, out, "openvino", exporter, calib)


def _nncf_data(calib: Dataset):
    import nncf

    return nncf.Dataset([{"input": x} for x, _ in calib.batches(1)])


def _ov_model(model: onnx.ModelProto):
    import openvino as ov

    return ov.Core().read_model(model.SerializeToString(), b"")


__all__ = ["as_bundle", "nncf_accuracy_control", "nncf_int8", "ort_int8"]
