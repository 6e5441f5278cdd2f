import numpy as np
import pytest

from deploy_robust.export import export_bundle
from deploy_robust.ingest import LoadedModel
from deploy_robust.runtimes import create_runner
from deploy_robust.runtimes.onnxruntime_runner import OnnxRuntimeRunner
from deploy_robust.spec import InputSpec
from tests.conftest import make_tiny



@pytest.fixture
def bundle(tmp_path):
    return export_bundle(LoadedModel(make_tiny(), InputSpec((3, 16, 16), 5), {"file": "t"}), tmp_path / "fp32")


def test_the_registry_builds_an_ort_runner_with_the_bundles_policy(bundle):
    fp32 = create_runner("ort-cpu", bundle, threads=1)
    assert isinstance(fp32, OnnxRuntimeRunner) and fp32.optimization == "all" and fp32.threads == 1


def test_a_fixed_batch_bundle_takes_any_batch(tmp_path):
    loaded = LoadedModel(make_tiny(), InputSpec((3, 16, 16), 5), {"file": "t"}, fixed_batch=2)
    bundle = export_bundle(loaded, tmp_path / "b", dynamic_batch=False)
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
