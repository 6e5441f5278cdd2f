import json

from deploy_robust.cli.output import ci, emit_error, emit_json, envelope, pct, size, table


def test_table_aligns_columns_under_a_rule():
    lines = table(["name", "n"], [["a", 1], ["longer", 22]]).splitlines()
    assert lines[0].split() == ["name", "n"] and set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].index("1") == lines[3].index("22") == lines[0].rindex("n")  # columns start together


def test_numbers_print_as_people_read_them():
    assert pct(0.12345) == "12.35%" and pct(None) == "-" and pct(1, 0) == "100%"
    assert ci((0.1, 0.25)) == "[10.0, 25.0]"
    assert size(512) == "512 B" and size(2048) == "2.0 KB" and size(5 * 2**30) == "5.0 GB"


def test_emit_json_is_sorted_and_parsable(capsys):
    emit_json({"b": 1, "a": {"path": __import__("pathlib").Path("x")}}, "info")
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert doc["a"] == {"path": "x"} and doc["b"] == 1 and out.index('"a"') < out.index('"b"')


def test_every_verb_gets_one_envelope():
    keys = {"schema", "schema_version", "command", "bundle", "data", "flags", "gates", "error"}
    eval_doc = envelope(
        "eval", {"bundle": "out/b", "precision": "int8", "dataset": "test.npz", "n": 10, "accuracy": 0.9}
    )
    assert keys <= set(eval_doc) and eval_doc["schema"] == "deploy-robust/eval" and eval_doc["error"] is None
    assert eval_doc["bundle"] == {"path": "out/b", "precision": "int8", "target": None}
    assert eval_doc["data"] == {"name": "test.npz", "n": 10} and "dataset" not in eval_doc
    verify_doc = envelope(
        "verify",
        {
            "schema": "deploy-robust/verify",
            "schema_version": 1,
            "bundle": {"path": "b"},
            "data": {"name": "d", "n": 5},
            "flags": [{"flag": "x"}],
        },
    )
    assert verify_doc["schema"] == "deploy-robust/verify" and verify_doc["flags"] == [{"flag": "x"}]
    assert envelope("info", [1, 2])["results"] == [1, 2]


def test_an_error_is_the_same_envelope_with_the_message_and_exit_code(capsys):
    emit_error("export", "model file not found: m.pt", 2)
    doc = json.loads(capsys.readouterr().out)
    assert doc["error"] == {"message": "model file not found: m.pt", "exit_code": 2} and doc["command"] == "export"
