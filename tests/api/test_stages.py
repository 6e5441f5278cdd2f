"""The library API has the commands' shape: a request in, a document with gates evaluated out."""

import pytest

from deploy_robust.api import EvalRequest, ModelOptions, VerifyGates, VerifyRequest, evaluate, verify
from deploy_robust.verify import VerifyOptions
from deploy_robust.errors import UserError
from deploy_robust.export import export_bundle
from deploy_robust.ingest import load_model


@pytest.fixture(scope="module")
def bundle(digits_checkpoint, tmp_path_factory):
    return export_bundle(load_model(digits_checkpoint, "digits_cnn"), tmp_path_factory.mktemp("api") / "fp32")


def test_evaluate_a_bundle_against_its_reference_with_gates(bundle, digits_checkpoint):
    result = evaluate(
        EvalRequest(
            bundle.path,
            "digits:test",
            reference=digits_checkpoint,
            model=ModelOptions(arch="digits_cnn"),
            min_accuracy=0.5,
            min_agreement=1.0,
        )
    )
    doc = result.document
    assert doc["reference"]["agreement"]["top1_agreement"] == 1.0 and doc["accuracy"] > 0.5
    assert (
        result.passed and result.failure is None and [g["name"] for g in result.gates] == ["accuracy", "top1_agreement"]
    )
    failing = evaluate(EvalRequest(bundle.path, "digits:test", min_accuracy=1.0))
    assert not failing.passed and failing.failure.startswith("accuracy")


def test_verify_evaluates_its_gates_and_writes_the_report(bundle):
    result = verify(
        VerifyRequest(
            bundle.path,
            "digits:test",
            "0.1",
            options=VerifyOptions(n=32, suite="quick", sweep=None),
            gates=VerifyGates(min_clean_acc=0.0, min_robust_acc=1.0),
        )
    )
    assert [g["passed"] for g in result.gates] == [True, False] and "robust_accuracy" in result.failure
    assert {p.name for p in result.written} >= {"verify.json", "report.md"}
    with pytest.raises(UserError, match="need --reference"):
        verify(VerifyRequest(bundle.path, "digits:test", "0.1", gates=VerifyGates(max_robust_drop=0.01)))
