import numpy as np
import pytest
import torch
from torch import nn

from deploy_robust.errors import UserError
from deploy_robust.runtimes.torch_runner import TorchRunner


class _Half(nn.Module):
    def forward(self, x):
        return x.flatten(1).half(), x.flatten(1).sum(1).to(torch.int64)


def test_float_outputs_come_back_as_float32_numpy_and_integers_stay_integers():
    logits, count = TorchRunner(_Half()).infer_outputs(np.ones((2, 1, 1, 2), np.float32))
    assert logits.dtype == np.float32 and count.dtype == np.int64 and count.tolist() == [2, 2]


def test_cpu_runs_have_no_device_timings():
    runner = TorchRunner(nn.Identity())
    assert runner.phases(np.zeros((1, 1, 1, 1), np.float32)) is None and runner.device_peak_mib() is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_cuda_without_a_gpu_is_one_line():
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        TorchRunner(nn.Identity(), "cuda")
