import numpy as np
import pytest

from deploy_robust.export import ExportOptions, export_bundle
from deploy_robust.ingest import LoadedModel
from deploy_robust.runtimes import create_runner
from deploy_robust.runtimes.onnxruntime_runner import OnnxRuntimeRunner
from deploy_robust.spec import InputSpec
from tests.conftest import make_tiny, tiny_bundle


@pytest.fixture
def bundle(tmp_path_factory, tmp_path):
    return tiny_bundle(tmp_path_factory, tmp_path / "fp32")


def test_the_registry_builds_an_ort_runner_with_the_bundles_policy(bundle):
    fp32 = create_runner("ort-cpu", bundle, threads=1)
    assert isinstance(fp32, OnnxRuntimeRunner) and fp32.optimization == "all" and fp32.threads == 1


def test_a_fixed_batch_bundle_takes_any_batch(tmp_path):
    loaded = LoadedModel(make_tiny(), InputSpec((3, 16, 16), 5), {"file": "t"}, fixed_batch=2)
    bundle = export_bundle(loaded, tmp_path / "b", ExportOptions(dynamic_batch=False))
    runner = create_runner("ort-cpu", bundle)
    assert runner.fixed_batch == 2
    x = np.random.default_rng(0).random((5, 3, 16, 16), dtype=np.float32)
    assert runner.infer(x).shape == (5, 5)
    assert np.allclose(runner.infer(x)[:2], runner.infer(x[:2]), atol=1e-6)


def test_the_session_is_loaded_once_and_freed_on_deactivate(bundle):
    runner = create_runner("ort-cpu", bundle)
    first = runner.session
    assert runner.session is first
    runner.deactivate()
    assert runner._session is None and runner.session is not first


def test_full_range_weights_run_unfused_with_a_warning_where_the_cpu_would_saturate(tmp_path, monkeypatch, capsys):
    from deploy_robust.data import load_dataset
    from deploy_robust.runtimes import onnxruntime_runner, onnxruntime_session

    loaded = LoadedModel(make_tiny(), InputSpec((3, 16, 16), 5), {"file": "t"})
    calib = load_dataset(str(_npz(tmp_path)))
    bundle = export_bundle(loaded, tmp_path / "full", ExportOptions("int8", int8_weights="full"), calib=calib)
    x = calib.as_float()[:8]
    fused = create_runner("ort-cpu", bundle)
    for module in (onnxruntime_runner, onnxruntime_session):  # an AVX2 CPU without VNNI, as far as the policy sees
        monkeypatch.setattr(module, "u8s8_saturates", lambda: True)
    unfused = create_runner("ort-cpu", bundle)
    assert unfused.optimization == "basic" and "runs it unfused" in capsys.readouterr().err
    assert np.abs(unfused.infer(x) - fused.infer(x)).max() < 1e-3 * np.abs(fused.infer(x)).max() + 1e-4


def _npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "calib.npz"
    np.savez(path, x=rng.integers(0, 256, (32, 3, 16, 16), dtype=np.uint8), y=rng.integers(0, 5, 32))
    return path
