import json

from deploy_robust.ingest import load_model


def test_an_ensemble_is_trained_member_by_member_and_loads_back(cli, tmp_path):
    out = tmp_path / "ens.pt"
    code, stdout, _ = cli(
        "ensemble",
        "--arch",
        "digits",
        "--member",
        "w2a4",
        "--member",
        "fp32",
        "--member",
        "w2a4",
        "--data",
        "digits:train",
        "--test",
        "digits:test",
        "--epochs",
        "1",
        "-o",
        out,
        "--json",
    )
    doc = json.loads(stdout)
    assert code == 0 and len(doc["accuracy"]) == 4 and "ensemble" in doc["accuracy"]
    loaded = load_model(out)
    assert loaded.defense["kind"] == "empir" and loaded.defense["majority"] == 2


def test_a_vote_needs_exactly_one_full_precision_member(cli, tmp_path):
    code, _, err = cli("ensemble", "--arch", "digits", "--member", "w2a4", "--member", "w2a4", "-o", tmp_path / "e.pt")
    assert code == 2 and "exactly one fp32 member" in err
