"""The issue's acceptance figures on real robust checkpoints and real test sets (../shared/data)."""

import pytest

from deploy_robust.data import load_dataset
from deploy_robust.evaluate import compare_logits, evaluate
from deploy_robust.export import ExportOptions, export_bundle
from deploy_robust.ingest import load_model
from deploy_robust.runtimes import create_runner
from tests.conftest import shared_path

# checkpoint, test set, clean accuracy on the model card (../shared/data/README.md, one decimal)
CASES = [
    ("mnist_cnn_a_adv.model", "mnist_test.npz", 96.3),
    ("cifar_cnn_a_adv.model", "cifar10_test_first1017.npz", 66.7),
    ("resnet2b.pth", "cifar10_test_first1017.npz", 70.4),
    ("MadryCNN_no_maxpool_tiny.pt", "mnist_test.npz", 97.9),
    ("cifar_conv_small_pgd.pth", "cifar10_test_first1017.npz", 63.2),
    ("convex_adversarial_mnist.pth", "mnist_test.npz", 98.2),
]


@pytest.mark.shared_data
@pytest.mark.parametrize("checkpoint, data, card", CASES, ids=[c[0] for c in CASES])
def test_fp32_and_fp16_bundles_match_the_torch_model(tmp_path, checkpoint, data, card):
    loaded = load_model(shared_path("models", checkpoint))
    dataset = load_dataset(shared_path("datasets", data), loaded.spec.shape)
    reference = evaluate(create_runner("torch", module=loaded.reference()), dataset)
    assert round(100 * reference.accuracy, 1) == card

    fp32 = evaluate(create_runner("ort-cpu", export_bundle(loaded, tmp_path / "fp32", ExportOptions("fp32"))), dataset)
    agreement = compare_logits(fp32.logits, reference.logits)
    assert agreement.top1_agreement == 1.0 and agreement.max_abs_diff <= 1e-4
    assert fp32.accuracy == reference.accuracy

    fp16 = evaluate(create_runner("ort-cpu", export_bundle(loaded, tmp_path / "fp16", ExportOptions("fp16"))), dataset)
    assert compare_logits(fp16.logits, reference.logits).top1_agreement >= 0.999


@pytest.mark.shared_data
def test_eval_command_prints_the_card_accuracy(tmp_path):
    from deploy_robust.cli import main

    model = shared_path("models", "resnet2b.pth")
    data = shared_path("datasets", "cifar10_test_first1017.npz")
    assert main(["export", str(model), "-o", str(tmp_path / "b")]) == 0
    assert main(["eval", str(tmp_path / "b"), "--data", str(data), "--min-accuracy", "0.70"]) == 0
