import json

import pytest

from deploy_robust.bench.harness import run_bench, write_bench_json
from deploy_robust.bundle import open_bundle
from deploy_robust.errors import UserError


def test_interleaved_rounds_give_one_document_per_bundle_with_every_backend_and_batch(tiny_bundles):
    docs = run_bench(tiny_bundles, ["ort-cpu", "torch"], [1, 4], iters=6, duration=0.2, rounds=2, threads=1)
    assert [d["bundle"]["precision"] for d in docs] == ["fp32", "fp16"]
    for doc in docs:
        assert {(e["backend"], e["batch"]) for e in doc["results"]} == {
            (b, n) for b in ("ort-cpu", "torch") for n in (1, 4)
        }
        for entry in doc["results"]:
            assert entry["iterations"] >= 5 and entry["throughput"] > 0 and entry["load_ms"] >= 0
            assert entry["runtime"]["threads"] == 1
        assert doc["settings"]["rounds"] == 2 and doc["machine"]["cpu"]


def test_the_document_is_written_into_the_bundle(tiny_bundles):
    doc = run_bench(tiny_bundles[:1], ["ort-cpu"], [1], iters=5, duration=0.1)[0]
    write_bench_json(tiny_bundles[0], doc)
    reopened = open_bundle(tiny_bundles[0].path)
    assert json.loads((reopened.path / "bench.json").read_text())["bundle"]["sha256"] == doc["bundle"]["sha256"]


def test_batch_sizes_must_be_positive(tiny_bundles):
    with pytest.raises(UserError, match="positive batch sizes"):
        run_bench(tiny_bundles, ["ort-cpu"], [0])
