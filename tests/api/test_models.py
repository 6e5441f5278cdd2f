"""api.gdws, api.ensemble and api.info as library calls."""

import pytest

from deploy_robust.api import (
    EnsembleRequest,
    GDWSModelRequest,
    InfoRequest,
    ModelOptions,
    ensemble,
    gdws,
    info,
)
from deploy_robust.errors import UserError
from deploy_robust.ingest import load_model
from deploy_robust.transforms.gdws.rewrite import GDWSRequest


def test_gdws_plans_without_writing_and_writes_with_out(digits_checkpoint, tmp_path):
    options = ModelOptions("digits_cnn")
    planned = gdws(GDWSModelRequest(digits_checkpoint, GDWSRequest(budget=0.5), model_options=options))
    assert planned.written == [] and "out" not in planned.document
    assert planned.gdws_plan.to_json() == planned.document["plan"]
    out = tmp_path / "g.pt"
    written = gdws(GDWSModelRequest(digits_checkpoint, GDWSRequest(budget=0.5), out, model_options=options))
    assert written.written == [out] and written.document["plan"] == planned.document["plan"]
    assert load_model(out).transforms["gdws"]


def test_an_ensemble_request_is_checked_when_made():
    with pytest.raises(UserError, match="at least two"):
        EnsembleRequest(("fp32",), "digits", "e.pt")
    with pytest.raises(UserError, match="exactly one fp32"):
        EnsembleRequest(("w2a4", "w2a2"), "digits", "e.pt")
    EnsembleRequest(("w2a4", "w2a2"), "digits", "e.pt", combine="average")  # averaging needs no tie-breaker


def test_an_ensemble_member_without_weights_needs_data(tmp_path):
    with pytest.raises(UserError, match="pass --data"):
        ensemble(EnsembleRequest(("w2a4", "fp32"), "digits", tmp_path / "e.pt"))
    assert not (tmp_path / "e.pt").exists()


def test_an_ensemble_is_written_and_loads_as_an_empir_defense(tmp_path):
    out = tmp_path / "e.pt"
    result = ensemble(EnsembleRequest(("w2a4", "fp32", "w2a4"), "digits", out, "digits:train", epochs=1))
    assert result.written == [out] and result.document["defense"]["members"]
    assert load_model(out).defense["kind"] == "empir"


def test_info_describes_a_bundle_and_a_model_file(digits_bundle, digits_checkpoint):
    bundle = info(InfoRequest(digits_bundle))
    assert bundle.bundle is not None and bundle.document["manifest"]["precision"]["mode"] == "fp32"
    assert bundle.document["graph"]["nodes"] > 0
    model = info(InfoRequest(digits_checkpoint, ModelOptions("digits_cnn")))
    assert model.bundle is None and model.document["source"]["arch"] == "digits_cnn"
    assert model.document["parameters"] > 0 and model.document["batch"] == "dynamic"
