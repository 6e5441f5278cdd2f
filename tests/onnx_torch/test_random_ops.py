"""The random ops draw afresh on every forward pass, as ONNX Runtime does on every run; a graph with one is stochastic."""

import numpy as np
import torch
from onnx import TensorProto, helper

from deploy_robust.onnx_torch import OnnxGraphModule, graph_is_stochastic
from tests.onnx_torch.test_ops import _graph


def _noisy():
    nodes = [
        helper.make_node("RandomNormalLike", ["x"], ["n"], mean=1.0, scale=0.5),
        helper.make_node("Add", ["x", "n"], ["y"]),
    ]
    return _graph(nodes, [64, 64])


def test_a_graph_with_a_random_op_is_stochastic_and_a_plain_one_is_not():
    assert graph_is_stochastic(_noisy())
    assert not graph_is_stochastic(_graph([helper.make_node("Relu", ["x"], ["y"])], [2, 2]))


def test_random_normal_draws_afresh_with_the_graphs_mean_and_scale():
    module = OnnxGraphModule(_noisy())
    x = torch.zeros(64, 64)
    first, second = module(x), module(x)
    assert not torch.equal(first, second)
    assert abs(float(first.mean()) - 1.0) < 0.05 and abs(float(first.std()) - 0.5) < 0.05


def test_bernoulli_draws_zeros_and_ones_at_the_given_rate():
    model = _graph([helper.make_node("Bernoulli", ["x"], ["y"], dtype=TensorProto.FLOAT)], [4000])
    torch.manual_seed(0)
    draws = OnnxGraphModule(model)(torch.full((4000,), 0.25)).numpy()
    assert set(np.unique(draws)) <= {0.0, 1.0} and abs(draws.mean() - 0.25) < 0.03
