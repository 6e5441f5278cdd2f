import torch

from deploy_robust import zoo
from deploy_robust.data import load_dataset
from deploy_robust.ingest import LoadedModel
from deploy_robust.transforms.dq.finetune import DQRequest, defensive_quantization
from deploy_robust.transforms.dq.model import is_dq_model


def test_defensive_quantization_trains_a_frozen_dq_model_and_reports_its_lipschitz_terms():
    torch.manual_seed(0)
    entry = zoo.get("digits_cnn")
    loaded = LoadedModel(entry.build().eval(), entry.spec, {"file": "d", "arch": "digits_cnn"})
    train = load_dataset("digits:train").take(256)
    module, config, report = defensive_quantization(loaded, train, DQRequest(4, 4, beta=3e-3, epochs=1, calib_n=64))
    assert is_dq_model(module) and config.label == "w4a4"
    assert not any(p.requires_grad for p in module.parameters()) and not module.training
    assert len(report["losses"]) >= 1 and all(v >= 0 for v in report["losses"])
    norms = report["spectral_norms"]
    assert norms and all({"before", "after"} == set(v) for v in norms.values())
