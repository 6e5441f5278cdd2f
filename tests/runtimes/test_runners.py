import numpy as np
import onnxruntime as ort
import pytest
import torch

from deploy_robust.errors import UserError
from deploy_robust.export import export_bundle
from deploy_robust.ingest import LoadedModel
from deploy_robust.runtimes import create_runner
from deploy_robust.spec import InputSpec
from tests.conftest import make_tiny, tiny_bundle

SPEC = InputSpec((3, 16, 16), 5)


@pytest.fixture
def bundle(tmp_path_factory, tmp_path):
    return tiny_bundle(tmp_path_factory, tmp_path / "b")


def test_ort_and_torch_backends_agree_on_a_bundle(bundle):
    x = np.random.default_rng(0).random((6, 3, 16, 16), dtype=np.float32)
    with create_runner("ort-cpu", bundle, threads=1) as engine, create_runner("torch", bundle) as twin:
        a, b = engine.infer(x), twin.infer(x)
    with torch.no_grad():
        ref = make_tiny()(torch.from_numpy(x)).numpy()
    assert np.abs(a - ref).max() <= 1e-4 and np.abs(b - ref).max() <= 1e-4


def test_unknown_backend_is_a_user_error(bundle):
    with pytest.raises(UserError, match="unknown backend 'tpu'"):
        create_runner("tpu", bundle)


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA EP present")
def test_ort_cuda_without_the_provider_says_what_to_install(bundle):
    with pytest.raises(UserError, match="pip install onnxruntime-gpu"):
        create_runner("ort-cuda", bundle)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_torch_cuda_without_a_gpu_is_a_user_error(bundle):
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        create_runner("torch-cuda", bundle)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_cuda_matches_cpu(bundle):
    x = np.random.default_rng(0).random((4, 3, 16, 16), dtype=np.float32)
    with create_runner("torch-cuda", bundle) as gpu, create_runner("torch", bundle) as cpu:
        assert np.abs(gpu.infer(x) - cpu.infer(x)).max() <= 1e-3


def test_the_torch_backend_returns_a_bundles_every_output_like_onnx_runtime(tmp_path):
    from torch import nn

    class WithScore(nn.Module):
        extra_output_names = ("score",)

        def __init__(self):
            super().__init__()
            self.net = make_tiny()

        def forward(self, x):
            logits = self.net(x)
            return logits, logits.abs().sum(1)

    loaded = LoadedModel(
        WithScore().eval(), SPEC, {"file": "t", "format": "test", "sha256": "", "arch": None, "layer_dtypes": {}}
    )
    bundle = export_bundle(loaded, tmp_path / "b")
    x = np.random.default_rng(0).random((5, 3, 16, 16), dtype=np.float32)
    engine, twin = create_runner("ort-cpu", bundle).infer_outputs(x), create_runner("torch", bundle).infer_outputs(x)
    assert len(engine) == len(twin) == 2
    assert all(np.abs(a - b).max() < 1e-4 for a, b in zip(engine, twin))
