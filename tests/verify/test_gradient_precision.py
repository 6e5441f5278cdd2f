"""A reduced-precision twin changes how candidates are found, never how they are judged: every verdict is E's."""

import math

import pytest

from deploy_robust.verify import ThreatModel, run_verify
from deploy_robust.verify.options import VerifyOptions


def _verify(bundle, data, precision):
    options = VerifyOptions(n=96, suite="quick", sweep=None, resume=False, gradient_precision=precision)
    return run_verify(bundle, data, ThreatModel("linf", 0.1), options)


def test_bf16_gradients_are_recorded_and_leave_the_engines_verdicts_its_own(digits_bundles, digits_test):
    fp32 = _verify(digits_bundles["plain"], digits_test, "fp32")
    bf16 = _verify(digits_bundles["plain"], digits_test, "bf16")
    assert (fp32["gradient_precision"], bf16["gradient_precision"]) == ("fp32", "bf16")
    assert bf16["clean_accuracy"] == fp32["clean_accuracy"]  # E alone decides, clean and attacked
    assert abs(bf16["robust_accuracy"] - fp32["robust_accuracy"]) <= 0.05  # the attack's strength, nearly unchanged
    assert bf16["flags"] == [] and sum(a["broke"] for a in bf16["attacks"]) == round(
        96 * (bf16["clean_accuracy"] - bf16["robust_accuracy"])
    )
    for doc in (fp32, bf16):
        tp = doc["throughput"]
        assert (
            tp["S_gradient_images_per_s"] > 0
            and tp["E_images_per_s"] > 0
            and tp["S_precision"] == doc["gradient_precision"]
        )


def test_auto_never_offers_bf16_to_a_quantized_twin(digits_bundles, digits_model, digits_test, tmp_path):
    from deploy_robust.export import CalibrationOptions, ExportOptions, export_bundle
    from deploy_robust.ingest import LoadedModel
    from deploy_robust.verify.protocol import gradient_precision_for

    plain = digits_bundles["plain"]
    loaded = LoadedModel(digits_model, plain.spec, dict(plain.manifest.source))
    int8 = export_bundle(loaded, tmp_path / "int8", ExportOptions("int8", calibration=CalibrationOptions(n=64)),
                         calib=digits_test)  # fmt: skip
    assert gradient_precision_for(int8, "auto") == "fp32" and gradient_precision_for(int8, "bf16") == "bf16"
    assert gradient_precision_for(plain, "auto") == "auto"


def test_auto_keeps_fp32_where_the_budget_is_a_few_bf16_steps_of_a_pixel(digits_bundles):
    from deploy_robust.verify.protocol import BF16_MIN_PIXEL_EPS, gradient_precision_for

    plain = digits_bundles["plain"]
    root = math.sqrt(math.prod(plain.spec.shape))
    assert gradient_precision_for(plain, "auto", ThreatModel("linf", 1 / 255)) == "fp32"
    assert gradient_precision_for(plain, "auto", ThreatModel("linf", 8 / 255)) == "auto"
    assert gradient_precision_for(plain, "auto", ThreatModel("linf", BF16_MIN_PIXEL_EPS)) == "auto"
    # L2: the budget spread over the pixels, eps / sqrt(pixels)
    assert gradient_precision_for(plain, "auto", ThreatModel("l2", root * BF16_MIN_PIXEL_EPS * 0.9)) == "fp32"
    assert gradient_precision_for(plain, "auto", ThreatModel("l2", root * BF16_MIN_PIXEL_EPS * 1.1)) == "auto"
    assert gradient_precision_for(plain, "bf16", ThreatModel("linf", 1 / 255)) == "bf16"  # asked for: kept


# The CPU kinds CI has run on, by the flags that decide the twin's precision (the rest of each flag set is what
# the machines reported that matters here): an AVX2-only EPYC, an AVX-512 EPYC with native bf16, an AMX Xeon.
CPU_KINDS = {
    "avx2-only": frozenset({"avx2", "fma", "f16c"}),
    "avx512-bf16": frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}),
    "amx": frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}),
}


def _standard(bundle, data, precision):
    options = VerifyOptions(n=48, suite="standard", sweep=None, resume=False, gradient_precision=precision)
    return run_verify(bundle, data, ThreatModel("linf", 0.1), options)


@pytest.fixture(scope="module")
def fp32_standard(digits_bundles, digits_test):
    return _standard(digits_bundles["plain"], digits_test, "fp32")


@pytest.mark.parametrize(
    "kind",
    ["avx2-only", "avx512-bf16", pytest.param("amx", marks=pytest.mark.slow)],  # amx picks as avx512-bf16
)
def test_the_standard_suite_passes_on_every_cpu_kind(kind, monkeypatch, digits_bundles, digits_test, fp32_standard):
    """What `auto` picks on each kind, and the standard suite run as it would there: the same clean verdict (E's),
    no flag on a plain model, every counted break a point E got wrong, robust accuracy within a few points of
    fp32's. bf16 runs emulated where the CPU lacks it (slower, the same arithmetic)."""
    from deploy_robust.verify import speed

    monkeypatch.setattr(speed, "cpu_flags", lambda: CPU_KINDS[kind])
    picked = "fp32" if kind == "avx2-only" else "bf16"
    doc, reference = _standard(digits_bundles["plain"], digits_test, "auto"), fp32_standard
    assert doc["gradient_precision"] == picked and doc["flags"] == []
    assert doc["clean_accuracy"] == reference["clean_accuracy"]
    assert sum(a["broke"] for a in doc["attacks"]) == round(48 * (doc["clean_accuracy"] - doc["robust_accuracy"]))
    assert abs(doc["robust_accuracy"] - reference["robust_accuracy"]) <= 0.05
