"""The OpenVINO engine against ONNX Runtime on the same bundles, and what it reports it executed.

Tolerances per precision hint: with f32, float layers match ONNX Runtime to float rounding
(1e-4 of the logit scale); with OpenVINO's default (bf16 on CPUs with AMX or AVX-512 BF16: 8 bits
of mantissa, relative error about 2^-8 per op) within 5% of the logit scale and the same top-1 on
nearly all points; INT8 bundles run the same integer grid on both (OpenVINO's FakeQuantize), so
within one quantization step's effect.
"""

from collections import Counter

import numpy as np
import pytest

from deploy_robust.cpu import cpu_flags
from deploy_robust.data import load_dataset
from deploy_robust.errors import UserError
from deploy_robust.export import ExportOptions, export_bundle
from deploy_robust.ingest import load_model
from deploy_robust.runtimes import RuntimeOptions, create_runner
from deploy_robust.runtimes.openvino_runner import executed_precision

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install openvino)")
BF16_CPU = bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


@pytest.fixture(scope="module")
def bundles(digits_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("openvino")
    loaded = load_model(digits_checkpoint, "digits_cnn")
    return {
        "fp32": export_bundle(loaded, root / "fp32"),
        "int8": export_bundle(loaded, root / "int8", ExportOptions("int8"), calib=load_dataset("digits:train")),
    }


@pytest.fixture(scope="module")
def images():
    return load_dataset("digits:test").take(200).as_float()


def _compare(bundle, x, hint):
    ort = create_runner("ort-cpu", bundle, threads=1).infer(x)
    runner = create_runner("openvino", bundle, options=RuntimeOptions(threads=1, precision_hint=hint))
    return ort, runner.infer(x), runner.execution()


def test_fp32_with_the_f32_hint_matches_onnx_runtime_and_says_f32(bundles, images):
    ort, ov, execution = _compare(bundles["fp32"], images, "f32")
    assert np.abs(ov - ort).max() <= 1e-4 * np.abs(ort).max() + 1e-5
    assert execution["inference_precision_hint"] == "f32" and execution["executed_precision"] == "f32"


def test_fp32_with_openvinos_default_reports_the_precision_it_ran_in(bundles, images):
    ort, ov, execution = _compare(bundles["fp32"], images, "default")
    expected = "bf16" if BF16_CPU else "f32"  # OpenVINO picks bf16 where the CPU has it
    assert execution["inference_precision_hint"] == expected and execution["executed_precision"] == expected
    assert np.abs(ov - ort).max() <= 0.05 * np.abs(ort).max()
    assert (ov.argmax(1) == ort.argmax(1)).mean() >= 0.98


def test_int8_runs_on_integer_kernels_and_agrees_with_onnx_runtime(bundles, images):
    ort, ov, execution = _compare(bundles["int8"], images, "f32")
    assert execution["executed_precision"].startswith("int8")
    assert (ov.argmax(1) == ort.argmax(1)).mean() >= 0.98


def test_every_output_and_any_batch_size(bundles):
    runner = create_runner("openvino", bundles["fp32"], threads=1)
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    assert runner.infer(x).shape == (3, 10) and len(runner.infer_outputs(x)) == 1


def test_the_layer_profile_names_kernels_and_their_precision(bundles):
    runner = create_runner("openvino", bundles["int8"], options=RuntimeOptions(threads=1))
    rows = runner.layer_profile(np.zeros((4, 1, 8, 8), np.float32), repeats=2)
    convs = [r for r in rows if r["op"] == "Convolution"]
    assert all(r["ms"] >= 0 for r in rows)
    assert [r["precision"] for r in convs].count("int8") == 1  # the second; the first is FP32 by the ort-cpu rule


def test_options_a_backend_does_not_take_are_refused(bundles):
    with pytest.raises(UserError, match="--precision-hint applies to openvino; not to backend ort-cpu"):
        create_runner("ort-cpu", bundles["fp32"], options=RuntimeOptions(precision_hint="bf16"))


def test_executed_precision_names_the_mix():
    assert executed_precision(Counter({"u8": 3, "bf16": 1})) == "int8+bf16"
    assert executed_precision(Counter({"f32": 2})) == "f32" and executed_precision(Counter()) == "none"


def test_two_streams_split_a_batch_and_give_the_same_numbers(bundles, images):
    one = create_runner("openvino", bundles["int8"], options=RuntimeOptions(threads=2, streams=1))
    two = create_runner("openvino", bundles["int8"], options=RuntimeOptions(threads=2, streams=2))
    assert two.execution()["streams"] == 2 and len(two._requests) == 2
    x = images[:33]
    assert np.array_equal(one.infer(x), two.infer(x)) and two.infer(x[:1]).shape == (1, 10)
