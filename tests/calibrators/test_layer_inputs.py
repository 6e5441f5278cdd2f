"""Input patches and Gram matrices of weighted layers, against torch's own unfold and a direct product."""

import numpy as np
import pytest
import torch
from torch import nn

from deploy_robust.calibrators.layer_inputs import conv_patches, input_grams
from deploy_robust.data import Dataset
from deploy_robust.exporters import export_float_onnx
from deploy_robust.spec import InputSpec


@pytest.mark.parametrize(
    "kernel,stride,padding,dilation,groups",
    [
        ((3, 3), (1, 1), 1, (1, 1), 1),
        ((4, 4), (2, 2), 1, (1, 1), 1),
        ((3, 2), (2, 1), 2, (2, 1), 2),
        ((3, 3), (1, 1), 1, (1, 1), 6),
    ],
)
def test_conv_patches_are_the_rows_torch_unfold_makes(kernel, stride, padding, dilation, groups):
    x = torch.randn(2, 6, 9, 8)
    patches = conv_patches(x.numpy(), kernel, stride, [padding] * 4, dilation, groups)
    unfolded = nn.functional.unfold(x, kernel, dilation, padding, stride)  # n, c*kh*kw, positions
    per_group = 6 // groups * kernel[0] * kernel[1]
    for g in range(groups):
        rows = unfolded[:, g * per_group : (g + 1) * per_group].transpose(1, 2).reshape(-1, per_group)
        np.testing.assert_array_equal(patches[g], rows.numpy())


def test_input_grams_are_the_layer_inputs_second_moments(tiny_model):
    spec = InputSpec((3, 8, 8), 5)
    model = export_float_onnx(tiny_model, spec, "fp32").model
    rng = np.random.default_rng(0)
    images = rng.random((40, 3, 8, 8), dtype=np.float32)
    dataset = Dataset(images, np.zeros(40, np.int64), "random")
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    gemm = next(n for n in model.graph.node if n.op_type in ("Gemm", "MatMul"))
    grams = input_grams(model, [*convs, gemm], dataset, batch_size=16)  # batches of 16, 16, 8
    # the first conv reads the image (normalization is not folded in this spec)
    rows = nn.functional.unfold(torch.from_numpy(images), 3, padding=1).transpose(1, 2).reshape(-1, 27).double()
    np.testing.assert_allclose(grams[convs[0].name][0], (rows.T @ rows).numpy(), rtol=1e-5)
    # the Gemm's input is the pooled, flattened features
    with torch.no_grad():
        h = torch.relu(tiny_model.bn(tiny_model.conv(torch.from_numpy(images))))
        h = torch.relu(h + tiny_model.conv2(h))
        features = torch.flatten(tiny_model.pool(h), 1).double()
    np.testing.assert_allclose(grams[gemm.name][0], (features.T @ features).numpy(), rtol=1e-4, atol=1e-6)
    assert set(grams) == {n.name for n in [*convs, gemm]}
