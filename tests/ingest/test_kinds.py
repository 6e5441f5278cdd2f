from deploy_robust.bundle import Manifest
from deploy_robust.ingest.kinds import KINDS, describe_defense, describe_transforms, for_checkpoint
from deploy_robust.model.model_file import MODEL_KEY
from tests.bundle.test_store import MANIFEST


def test_every_kind_is_listed_once_and_checkpoints_find_theirs():
    names = [k.name for k in KINDS]
    assert sorted(names) == ["dq", "empir", "gdws", "sap", "squeeze"] and len(set(names)) == len(names)
    assert for_checkpoint({MODEL_KEY: {}, "state_dict": {}}).name == "dq"
    assert for_checkpoint({"deploy_robust_gdws": {}}).name == "gdws"
    assert for_checkpoint({"state_dict": {}}) is None and for_checkpoint([1]) is None


def test_sections_are_described_by_the_kind_that_wrote_them():
    plan = {"layers": [{"replaced": True}, {"replaced": False}], "budget": 0.5, "model_macs": {"ratio": 2.0}}
    assert (
        describe_transforms({"gdws": plan})
        == "GDWS (budget 0.5): 1 of 2 convolutions rewritten, 2.00x fewer MACs in the model"
    )
    sap = {"kind": "stochastic_activation_pruning", "mode": "expectation", "layers": [{"layer": "1"}]}
    manifest = Manifest.from_json(MANIFEST | {"defense": sap, "model": {"file": "model.onnx", "stochastic": True}}, "m")
    assert describe_defense(manifest).endswith("after 1; stochastic engine: verify scores it over 20 runs")
