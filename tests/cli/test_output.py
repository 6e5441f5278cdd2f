import json

from deploy_robust.cli.output import ci, emit_json, pct, size, table


def test_table_aligns_columns_under_a_rule():
    lines = table(["name", "n"], [["a", 1], ["longer", 22]]).splitlines()
    assert lines[0].split() == ["name", "n"] and set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].index("1") == lines[3].index("22") == lines[0].rindex("n")  # columns start together


def test_numbers_print_as_people_read_them():
    assert pct(0.12345) == "12.35%" and pct(None) == "-" and pct(1, 0) == "100%"
    assert ci((0.1, 0.25)) == "[10.0, 25.0]"
    assert size(512) == "512 B" and size(2048) == "2.0 KB" and size(5 * 2 ** 30) == "5.0 GB"


def test_emit_json_is_sorted_and_parsable(capsys):
    emit_json({"b": 1, "a": {"path": __import__("pathlib").Path("x")}})
    out = capsys.readouterr().out
    assert json.loads(out) == {"a": {"path": "x"}, "b": 1} and out.index('"a"') < out.index('"b"')
