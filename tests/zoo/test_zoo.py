import pytest
import torch

from deploy_robust import zoo
from deploy_robust.errors import UserError
from deploy_robust.model.checkpoint import extract_state_dict, read_checkpoint
from tests.conftest import shared_path

SHARED = {
    "cifar_cnn_a_adv": "cifar_cnn_a_adv.model",
    "cifar_conv_small_pgd": "cifar_conv_small_pgd.pth",
    "resnet2b": "resnet2b.pth",
    "mnist_cnn_a_adv": "mnist_cnn_a_adv.model",
    "madrycnn_no_maxpool_tiny": "MadryCNN_no_maxpool_tiny.pt",
    "convex_adversarial_mnist": "convex_adversarial_mnist.pth",
}


@pytest.mark.parametrize("name", zoo.names())
def test_every_entry_builds_and_classifies_its_input(name):
    entry = zoo.get(name)
    model = entry.build().eval()
    with torch.no_grad():
        out = model(torch.rand(2, *entry.spec.shape))
    assert out.shape == (2, entry.spec.num_classes)
    assert entry.build(num_classes=7)(torch.rand(2, *entry.spec.shape)).shape == (2, 7)


@pytest.mark.shared_data
@pytest.mark.parametrize("name", sorted(SHARED))
def test_shared_checkpoints_fit_their_architecture_exactly(name):
    state = extract_state_dict(read_checkpoint(shared_path("models", SHARED[name])))
    model = zoo.get(name).build()
    model.load_state_dict(state, strict=True)


def test_names_are_forgiving_about_case_and_dashes():
    assert zoo.get("PreAct-ResNet18").name == "preact_resnet18"
    with pytest.raises(UserError, match="built-in ones are"):
        zoo.get("alexnet")


def test_standard_sizes():
    params = {n: sum(p.numel() for p in zoo.get(n).build().parameters()) for n in ("resnet18", "vgg16_bn", "wrn28_4")}
    assert 11.1e6 < params["resnet18"] < 11.3e6
    assert 14.6e6 < params["vgg16_bn"] < 14.8e6
    assert 5.8e6 < params["wrn28_4"] < 5.9e6
