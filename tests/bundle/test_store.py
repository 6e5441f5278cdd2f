import json

import pytest

from deploy_robust.bundle import SCHEMA, SCHEMA_VERSION, open_bundle, write_bundle
from deploy_robust.errors import UserError
from deploy_robust.hashing import sha256_bytes

MANIFEST = {
    "schema": SCHEMA,
    "schema_version": SCHEMA_VERSION,
    "model": {"file": "model.onnx", "batch": "dynamic"},
    "input": {"shape": [1, 8, 8], "num_classes": 10, "normalization": None},
    "precision": {"mode": "fp32"},
    "target": "ort-cpu",
    "source": {},
    "tools": {},
    "seed": 0,
}


def test_write_then_open(tmp_path):
    bundle = write_bundle(tmp_path / "b", {"model.onnx": b"graph"}, MANIFEST)
    again = open_bundle(bundle.path)
    assert again.manifest.to_json() == MANIFEST | {"files": {"model.onnx": sha256_bytes(b"graph")}}
    assert again.model_path.read_bytes() == b"graph"
    assert again.spec.shape == (1, 8, 8) and again.fixed_batch is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temporary directory left behind


def test_rewriting_a_bundle_replaces_it_whole(tmp_path):
    write_bundle(tmp_path / "b", {"model.onnx": b"one", "extra.json": b"{}"}, MANIFEST)
    write_bundle(tmp_path / "b", {"model.onnx": b"two"}, MANIFEST)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["manifest.json", "model.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_refuses_to_overwrite_a_directory_that_is_not_a_bundle(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "precious.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a bundle; refusing"):
        write_bundle(tmp_path / "b", {"model.onnx": b"x"}, MANIFEST)
    assert (tmp_path / "b" / "precious.txt").read_text() == "keep me"


def test_a_failed_write_leaves_nothing(tmp_path):

    with pytest.raises(TypeError):
        write_bundle(tmp_path / "b", {"model.onnx": object()}, MANIFEST)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "change, message",
    [
        ({"schema": "other"}, "not a deploy-robust bundle manifest"),
        ({"schema_version": SCHEMA_VERSION + 1}, "newer than this deploy-robust reads"),
        ({"seed": None, "tools": None}, None),
    ],
)
def test_manifest_validation(tmp_path, change, message):
    doc = {k: v for k, v in (MANIFEST | change).items() if v is not None}
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(doc))
    (tmp_path / "b" / "model.onnx").write_bytes(b"x")
    with pytest.raises(UserError, match=message or "manifest lacks seed, tools|manifest lacks tools, seed"):
        open_bundle(tmp_path / "b")


def test_missing_model_file_is_reported(tmp_path):
    bundle = write_bundle(tmp_path / "b", {"model.onnx": b"x"}, MANIFEST)
    bundle.model_path.unlink()
    with pytest.raises(UserError, match="model.onnx, which is missing"):
        open_bundle(bundle.path)


def test_add_file_is_atomic(tmp_path):
    bundle = write_bundle(tmp_path / "b", {"model.onnx": b"x"}, MANIFEST)
    bundle.write_file("bench.json", '{"a": 1}')
    assert json.loads((bundle.path / "bench.json").read_text()) == {"a": 1}
    assert not [p for p in bundle.path.iterdir() if p.name.startswith(".")]


def test_a_run_folder_is_new_every_time_and_named_safely(tmp_path, digits_bundle):
    from deploy_robust.bundle import open_bundle

    bundle = open_bundle(digits_bundle)
    when = 1_800_000_000.0  # the same second twice: the second run gets -2, nothing is replaced
    a = bundle.write_run("bench-ort cpu/../x", {"bench.json": "{}"}, when=when)
    b = bundle.write_run("bench-ort cpu/../x", {"bench.json": '{"b": 1}'}, when=when)
    assert a.parent == b.parent == bundle.path / "runs" and b.name == a.name + "-2"
    assert a.name == "20270115-080000-bench-ort-cpu-..-x" and a.parent.parent == bundle.path  # one path component
    assert (a / "bench.json").read_text() == "{}" and bundle.runs() == [a, b]
    assert not [p for p in (bundle.path / "runs").iterdir() if p.name.startswith(".")]  # no temporaries left
