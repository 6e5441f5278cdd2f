import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from deploy_robust.train import distributed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, results) -> None:
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    assert distributed.init_from_env() and distributed.active()
    total = torch.tensor([float(rank + 1)])
    distributed.all_reduce_sum(total)
    torch.manual_seed(rank)  # different initial weights per rank: DDP broadcasts rank 0's
    model = distributed.wrap(nn.Linear(2, 1))
    distributed.barrier()
    results[rank] = (distributed.rank(), distributed.world_size(), float(total), float(model.module.weight.sum()))
    torch.distributed.destroy_process_group()


@pytest.mark.slow  # two gloo processes (~13 s)
def test_two_gloo_processes_sum_and_start_from_the_same_weights():
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_worker, args=(2, _free_port(), results), nprocs=2, join=True)
    (r0, w0, s0, weight0), (r1, w1, s1, weight1) = results[0], results[1]
    assert (r0, r1, w0, w1) == (0, 1, 2, 2) and s0 == s1 == 3.0 and weight0 == weight1


def test_a_single_process_is_a_no_op(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not distributed.init_from_env() and not distributed.active()
    value = torch.tensor([2.0])
    distributed.all_reduce_sum(value)
    module = nn.Linear(1, 1)
    assert float(value) == 2.0 and distributed.wrap(module) is module and distributed.rank() == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_asking_for_cuda_without_a_gpu_is_one_line():
    assert distributed.local_device("auto") == torch.device("cpu")
    with pytest.raises(Exception, match="torch sees no CUDA GPU"):
        distributed.local_device("cuda")
