import json

import pytest

from deploy_robust.bundle import open_bundle
from deploy_robust.demo import run_demo
from deploy_robust.errors import UserError


def test_the_demo_library_call_builds_benchmarks_and_plots_every_variant(
    tmp_path, tiny_checkpoint, tiny_arch_file, image_npz
):
    from deploy_robust.ingest import SpecOverrides

    result = run_demo(
        tmp_path / "d",
        model=str(tiny_checkpoint),
        arch=tiny_arch_file,
        data=str(image_npz),
        overrides=SpecOverrides(shape=(3, 16, 16)),
        bench_seconds=0.2,
        verify_eps=None,
        log=lambda m: None,
    )
    names = [row["name"] for row in result.rows]
    assert names[0] == "reference" and {"fp32 bundle", "fp16 bundle", "int8 bundle", "int4 bundle"} <= set(names)
    for row in result.rows[1:]:
        bundle = open_bundle(row["bundle"])
        bench = json.loads((bundle.path / "bench.json").read_text())
        assert {e["batch"] for e in bench["results"]} == {1, 32} and set(row["throughput"]) == {"1", "32"}
    assert (tmp_path / "d" / "frontier.png").is_file() and "bench" in result.timings and result.verify_eps is None
    assert json.loads(json.dumps(result.to_json()))["n"] == 40


def test_data_without_a_model_is_refused_before_any_work(tmp_path):
    with pytest.raises(UserError, match="--data needs --model"):
        run_demo(tmp_path / "d", data="x.npz")
