import importlib.util

import numpy as np
import pytest
import torch

from deploy_robust.errors import UserError
from deploy_robust.export import export_bundle
from deploy_robust.ingest import LoadedModel
from deploy_robust.runtimes import create_runner
from deploy_robust.spec import InputSpec
from tests.conftest import make_tiny


@pytest.fixture
def bundle(tmp_path):
    return export_bundle(LoadedModel(make_tiny(), InputSpec((3, 16, 16), 5), {"file": "t"}), tmp_path / "b")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT installed")
def test_without_tensorrt_the_backend_is_one_install_line(bundle):
    with pytest.raises(UserError, match="backend tensorrt needs tensorrt: pip install tensorrt"):
        create_runner("tensorrt", bundle)


@pytest.mark.tensorrt
def test_the_engine_matches_onnx_runtime_and_is_cached(bundle):
    if importlib.util.find_spec("tensorrt") is None or not torch.cuda.is_available():
        pytest.skip("needs TensorRT and an NVIDIA GPU")
    x = np.random.default_rng(0).random((7, 3, 16, 16), dtype=np.float32)
    with create_runner("tensorrt", bundle) as engine:
        got = engine.infer(x)
        phases = engine.phases(x)
    assert np.abs(got - create_runner("ort-cpu", bundle).infer(x)).max() < 1e-3
    assert bundle.model_path.with_suffix(".engine").is_file() and set(phases) == {"h2d", "compute", "d2h"}
