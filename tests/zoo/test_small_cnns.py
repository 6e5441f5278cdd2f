import pytest
import torch

from deploy_robust.model.checkpoint import extract_state_dict, read_checkpoint
from deploy_robust.zoo.small_cnns import cifar_cnn_a, cifar_conv_small, digits_cnn, madry_cnn_tiny, mnist_cnn_a
from tests.conftest import shared_path


@pytest.mark.parametrize(
    "factory, shape",
    [
        (cifar_cnn_a, (3, 32, 32)),
        (cifar_conv_small, (3, 32, 32)),
        (mnist_cnn_a, (1, 28, 28)),
        (madry_cnn_tiny, (1, 28, 28)),
        (digits_cnn, (1, 8, 8)),
    ],
)
def test_each_small_cnn_maps_its_input_to_logits(factory, shape):
    assert factory(num_classes=4)(torch.rand(3, *shape)).shape == (3, 4)


@pytest.mark.shared_data
def test_cifar_cnn_a_holds_the_alpha_beta_crown_weights_in_its_module_order():
    state = extract_state_dict(read_checkpoint(shared_path("models", "cifar_cnn_a_adv.model")))
    model = cifar_cnn_a()
    model.load_state_dict(state, strict=True)
    assert [name for name, _ in model.named_parameters()] == list(state)
