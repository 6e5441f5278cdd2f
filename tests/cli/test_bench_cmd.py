"""Smoke tests of `deploy-robust bench` on a tiny real bundle (seconds); heavy runs live in benchmarks/."""

import json

import pytest
import torch

from deploy_robust.bundle import open_bundle


def test_bench_writes_a_schema_versioned_bench_json(cli, tiny_bundles):
    bundle = tiny_bundles[0]
    code, stdout, err = cli("bench", bundle.path, "--batch", "1,4", "--duration", "0.2", "--json")
    assert code == 0, err
    printed = json.loads(stdout)
    written = json.loads((bundle.path / "bench.json").read_text())
    assert {k: printed[k] for k in written} == written and printed["command"] == "bench" and printed["error"] is None
    assert written["schema"] == "deploy-robust/bench" and written["schema_version"] == 1
    assert [e["batch"] for e in written["results"]] == [1, 4]
    for entry in written["results"]:
        assert entry["backend"] == "ort-cpu" and entry["throughput"] > 0
        assert entry["latency_ms"]["p50"] <= entry["latency_ms"]["p90"] <= entry["latency_ms"]["p99"]
        assert entry["load_ms"] > 0 and entry["peak_rss_mib"] > 0
    assert written["machine"]["cpu"]["logical_cores"] >= 1
    assert (bundle.path / "latency.png").stat().st_size > 1000


def test_compare_prints_ratios_to_the_first_bundle(cli, tiny_bundles, tmp_path):
    a, b = tiny_bundles
    code, stdout, err = cli(
        "bench",
        "--compare",
        a.path,
        b.path,
        "--batch",
        "2",
        "--duration",
        "0.3",
        "--frontier",
        tmp_path / "frontier.png",
        "--data",
        _npz(tmp_path),
    )
    assert code == 0, err
    assert "1.00x" in stdout and "fp16" in stdout
    assert (tmp_path / "frontier.png").stat().st_size > 1000


def test_torch_backend_runs_the_bundle_graph(cli, tiny_bundles):
    code, stdout, err = cli(
        "bench", tiny_bundles[0].path, "--backend", "torch", "--batch", "2", "--iters", "5", "--no-plot", "--json"
    )
    assert code == 0, err
    assert json.loads(stdout)["results"][0]["iterations"] == 5


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backend", "tpu"], "unknown backend 'tpu'"),
        (["--batch", "1,x"], "comma-separated integers"),
        (["--batch", "0"], "positive batch sizes"),
    ],
)
def test_bad_bench_arguments(cli, tiny_bundles, args, message):
    code, _, err = cli("bench", tiny_bundles[0].path, *args)
    assert code == 2 and message in err


def test_missing_backend_names_what_to_install(cli, tiny_bundles):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    code, _, err = cli("bench", tiny_bundles[0].path, "--backend", "tensorrt")
    assert code == 2 and "pip install tensorrt" in err


def _npz(tmp_path):
    import numpy as np

    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (16, 3, 16, 16), dtype=np.uint8), y=rng.integers(0, 5, 16))
    return path


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_cuda_reports_transfer_and_compute_separately(cli, tiny_bundles):
    code, stdout, err = cli(
        "bench", tiny_bundles[0].path, "--backend", "torch-cuda", "--batch", "8", "--duration", "0.5", "--json"
    )
    entry = json.loads(stdout)["results"][0]
    assert code == 0 and set(entry["phases_ms"]) == {"h2d", "compute", "d2h"} and entry["peak_device_mib"] > 0


@pytest.mark.tensorrt
def test_tensorrt_engine_matches_onnxruntime(tiny_bundles):
    pytest.importorskip("tensorrt")
    import numpy as np

    from deploy_robust.runtimes import create_runner

    x = np.random.default_rng(0).random((4, 3, 16, 16), dtype=np.float32)
    engine = create_runner("tensorrt", tiny_bundles[0]).infer(x)
    reference = create_runner("ort-cpu", tiny_bundles[0]).infer(x)
    assert np.abs(engine - reference).max() < 1e-3


def test_layers_and_the_executed_precision_of_each_runtime(cli, tiny_bundles):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install openvino)")
    bundle = tiny_bundles[0]
    code, _, err = cli("bench", bundle.path, "--backend", "ort-cpu", "--precision-hint", "f32", "--batch", "2")
    assert code == 2 and "--precision-hint applies to openvino; not to backend ort-cpu" in err
    code, stdout, err = cli(
        "bench",
        bundle.path,
        "--backend",
        "ort-cpu,openvino",
        "--precision-hint",
        "f32",
        "--batch",
        "2",
        "--duration",
        "0.2",
        "--threads",
        "1",
        "--json",
    )
    assert code == 0, err  # several backends: each takes what applies to it
    runtimes = {e["backend"]: e["runtime"] for e in json.loads(stdout)["results"]}
    assert runtimes["openvino"]["executed_precision"] == "f32" and "inference_precision_hint" not in runtimes["ort-cpu"]
    code, stdout, err = cli(
        "bench",
        bundle.path,
        "--backend",
        "openvino",
        "--precision-hint",
        "f32",
        "--batch",
        "2",
        "--duration",
        "0.2",
        "--layers",
        "--threads",
        "1",
        "--json",
    )
    assert code == 0, err
    doc = json.loads(stdout)
    assert doc["results"][0]["runtime"]["executed_precision"] == "f32"
    layers = doc["layers"][0]["layers"]
    assert (
        layers
        and abs(sum(r["share"] for r in layers) - 1) < 1e-6
        and {"layer", "op", "kernel", "precision"} <= set(layers[0])
    )
    code, stdout, err = cli("bench", bundle.path, "--batch", "2", "--duration", "0.2", "--layers")
    assert code == 0 and "time per layer" in stdout and "Conv" in stdout


def test_the_frontier_checks_every_input_before_measuring(cli, tiny_bundles, tmp_path):
    a, b = tiny_bundles
    wrong = tmp_path / "wrong.npz"
    import numpy as np

    np.savez(wrong, x=np.zeros((4, 1, 8, 8), np.uint8), y=np.zeros(4, int))
    code, _, err = cli(
        "bench", "--compare", a.path, b.path, "--frontier", tmp_path / "f.png", "--data", wrong, "--duration", "5"
    )
    assert code == 2 and "--frontier --data for fp32" in err and not (a.path / "bench.json").exists()
    for bundle, eps in ((a, 0.1), (b, 0.2)):
        (bundle.path / "verify.json").write_text(
            json.dumps(
                {
                    "schema": "deploy-robust/verify",
                    "threat_model": {"norm": "linf", "eps": eps, "description": f"L-inf eps={eps}"},
                    "data": {"n": 50, "name": "d"},
                    "suite": "quick",
                    "clean_accuracy": 0.9,
                    "robust_accuracy": 0.5,
                    "robust_accuracy_ci95": [0.4, 0.6],
                }
            )
        )
    code, _, err = cli("bench", "--compare", a.path, b.path, "--frontier", tmp_path / "f.png", "--duration", "5")
    assert code == 2 and "verified under different settings" in err and not (a.path / "bench.json").exists()


def test_the_label_says_what_the_runtime_really_computed_in():
    from deploy_robust.cli.bench_cmd import ran_as

    assert ran_as("fp32", {"executed_precision": "bf16"}) == "fp32 (ran bf16)"
    assert ran_as("fp32", {"executed_precision": "f32"}) == "fp32"
    assert ran_as("int8", {"executed_precision": "int8"}) == "int8"
    assert ran_as("int8", {"executed_precision": "int8+bf16"}) == "int8 (ran int8+bf16)"
    assert ran_as("fp32", {"executed_precision": "as the graph states"}) == "fp32"  # ONNX Runtime: no second word


def test_compare_on_openvino_labels_each_row_with_its_executed_precision(cli, tiny_bundles):
    pytest.importorskip("openvino")
    paths = [b.path for b in tiny_bundles]
    code, stdout, err = cli("bench", "--compare", *paths, "--backend", "openvino", "--duration", "0.2", "--no-plot")
    assert code == 0, err
    executed = json.loads((tiny_bundles[0].path / "bench.json").read_text())["results"][0]["runtime"]
    label = "fp32" if executed["executed_precision"] == "f32" else f"fp32 (ran {executed['executed_precision']})"
    assert f"vs first: throughput against fp32 ({label})" in stdout


def test_two_benches_keep_two_run_folders(cli, tiny_bundles):
    bundle = tiny_bundles[0]
    for _ in range(2):
        assert cli("bench", bundle.path, "--duration", "0.1", "--no-plot")[0] == 0
    runs = open_bundle(bundle.path).runs()
    assert len(runs) == 2 and all("-bench-ort-cpu" in p.name for p in runs)
    assert len(runs) == 2 and all((p / "bench.json").is_file() for p in runs)
