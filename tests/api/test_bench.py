"""api.bench: the bundles measured in one run, bench.json and latency.png written, ratios to the first."""

import json

import pytest

from deploy_robust.api import BenchRequest, bench
from deploy_robust.errors import UserError
from deploy_robust.export import ExportOptions, export_bundle
from deploy_robust.ingest import LoadedModel
from deploy_robust.spec import InputSpec
from tests.conftest import make_tiny


def test_bench_measures_every_bundle_and_writes_into_each(tmp_path):
    source = {"file": "t", "format": "test", "sha256": "", "arch": None, "layer_dtypes": {}}
    loaded = LoadedModel(make_tiny(), InputSpec((3, 16, 16), 5), source)
    bundles = [export_bundle(loaded, tmp_path / p, ExportOptions(p)) for p in ("fp32", "fp16")]
    result = bench(BenchRequest(tuple(b.path for b in bundles), batches=(1, 2), warmup=1, iters=3))
    documents = result.document["results"]
    assert [d["bundle"]["precision"] for d in documents] == ["fp32", "fp16"]
    for bundle, document in zip(bundles, documents):
        assert json.loads((bundle.path / "bench.json").read_text()) == document
        run = next(p.parent for p in result.written if p.parent.parent == bundle.path / "runs")  # its own run folder
        assert {run / "bench.json", run / "latency.png"} <= set(result.written)
        assert (run / "bench.json").read_bytes() == (bundle.path / "bench.json").read_bytes()  # the latest copy
        assert [e["iterations"] for e in document["results"]] == [3, 3]  # iters in all, shared by the 3 rounds
    ratios = result.document["ratios"]
    assert [r["throughput_vs_first"] for r in ratios[:2]] == [1.0, 1.0] and len(ratios) == 4
    assert all(r["throughput_vs_first"] > 0 for r in ratios)


def test_bench_needs_a_bundle_and_a_batch():
    with pytest.raises(UserError, match="needs a bundle"):
        BenchRequest(())
    with pytest.raises(UserError, match="--batch"):
        BenchRequest(("b",), batches=())
