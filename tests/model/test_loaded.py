import torch
from torch import nn

from deploy_robust.model.loaded import LoadedModel, PickOutput, describe_layers
from deploy_robust.spec import InputSpec


class TwoOutputs(nn.Module):
    extra_output_names = ("score",)

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        logits = self.fc(x.flatten(1))
        return logits, logits.sum(1)


def test_reference_takes_unit_range_images_and_returns_the_logits_only():
    spec = InputSpec((1, 2, 2), 3, mean=(0.5,), std=(0.25,))
    module = TwoOutputs()
    loaded = LoadedModel(module, spec, {"file": "m.pt"})
    x = torch.rand(2, 1, 2, 2)
    assert torch.allclose(loaded.reference()(x), module((x - 0.5) / 0.25)[0])


def test_pick_output_selects_one_output():
    module = TwoOutputs()
    x = torch.rand(2, 1, 2, 2)
    assert torch.equal(PickOutput(module, 1)(x), module(x)[1])


def test_describe_layers_names_each_weighted_layer_with_its_source_dtype():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(2, 2))
    layers = describe_layers(model, {"0": "float16"})
    assert layers == [
        {"name": "0", "type": "Conv2d", "source_dtype": "float16"},
        {"name": "2", "type": "Linear", "source_dtype": "float32"},
    ]
