import copy

import pytest
import torch

from deploy_robust.data import load_dataset
from deploy_robust.errors import UserError
from deploy_robust.ingest import LoadedModel
from deploy_robust.tune.options import TuneOptions
from deploy_robust.tune.workbench import Workbench
from deploy_robust.verify import ThreatModel


def test_a_workbench_refuses_an_output_folder_that_holds_another_tune(digits_loaded, tmp_path):
    calib, data = load_dataset("digits:train"), load_dataset("digits:test")
    options = TuneOptions(ThreatModel("linf", 0.1), n=20, final_n=20)
    bench = Workbench(digits_loaded, tmp_path, calib, data, options, log=lambda message: None)
    # every uniform precision is a contender (a whole-model fp16 bundle too), whatever the target runs per layer
    assert [c.name for c in bench.configs()] == ["uniform fp32", "uniform fp16", "uniform int8", "uniform int4"]
    assert (tmp_path / "cache" / "identity.json").is_file()
    Workbench(digits_loaded, tmp_path, calib, data, options, log=lambda message: None)  # the same tune: reused
    other = TuneOptions(ThreatModel("linf", 0.1), n=20, final_n=20, seed=1)
    with pytest.raises(UserError, match="holds a tune of another model, target, data or seed"):
        Workbench(digits_loaded, tmp_path, calib, data, other, log=lambda message: None)


def test_a_quick_check_stops_after_its_first_part_when_the_candidate_is_clearly_out_of_budget(digits_loaded, tmp_path):
    calib, data = load_dataset("digits:train"), load_dataset("digits:test")
    options = TuneOptions(ThreatModel("linf", 0.1), n=80, final_n=20)
    bench = Workbench(digits_loaded, tmp_path, calib, data, options, log=lambda message: None)
    fp32 = bench.bundle("fp32", "fp32")
    torch.manual_seed(0)
    untrained = copy.deepcopy(digits_loaded.module)
    for layer in untrained.modules():
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()  # the same architecture with fresh weights: about chance accuracy
    broken = bench.bundle("broken", "fp32", loaded=LoadedModel(untrained.eval(), digits_loaded.spec, {"file": "x"}))
    bad = bench.quick_check(broken, fp32)
    assert not bad["holds"] and bad["points_checked"] == 20  # a quarter of the points told
    same = bench.quick_check(fp32, fp32)
    assert same["holds"] and same["points_checked"] == 80  # no discordant point: only all 80 can show it holds
    assert same["verify"]["per_example"]["robust"] == bench.quick_verified(fp32)["per_example"]["robust"]


def test_openvinos_per_layer_profile_times_every_layer_and_onnx_runtimes_falls_back_to_macs(digits_loaded, tmp_path):
    pytest.importorskip("openvino")
    import onnx

    from deploy_robust.tune.measure import node_names
    from deploy_robust.tune.space import search_layers

    calib, data = load_dataset("digits:train"), load_dataset("digits:test")
    for target in ("openvino", "ort-cpu"):
        options = TuneOptions(ThreatModel("linf", 0.1), target=target, n=20, final_n=20, batch=4, threads=1)
        bench = Workbench(digits_loaded, tmp_path / target, calib, data, options, log=lambda message: None)
        fp32, int8 = bench.bundle("fp32", "fp32"), bench.bundle("int8", "int8")
        layers = search_layers(onnx.load(str(fp32.model_path)), target)
        nodes = [layer.node for layer in layers]
        names = node_names(onnx.load(str(fp32.model_path)), nodes)
        times = [bench.layer_times(bundle, names) for bundle in (fp32, int8)]
        if target == "openvino":
            assert all(set(t) == set(nodes) and all(ms > 0 for ms in t.values()) for t in times)
        else:
            assert times[0] is None  # ONNX Runtime names its fused float kernels after tensors, not nodes


@pytest.mark.slow  # three exports and two OpenVINO profiles (~25 s); the mapping's rules: test_measure.py
def test_a_gdws_rewrites_openvino_profile_leads_back_to_every_layer_its_gather_and_reorders_included(
    digits_loaded, tmp_path
):
    pytest.importorskip("openvino")
    import numpy as np
    import onnx

    from deploy_robust.runtimes import create_runner
    from deploy_robust.tune.measure import layer_times, rewritten_layer_names
    from deploy_robust.tune.space import search_layers
    from deploy_robust.tune.workbench import Config

    calib, data = load_dataset("digits:train"), load_dataset("digits:test")
    options = TuneOptions(ThreatModel("linf", 0.1), target="openvino", n=20, final_n=20, batch=4, threads=1,
                          space=("int8", "gdws"), gdws_budgets=(0.5,))  # fmt: skip
    bench = Workbench(digits_loaded, tmp_path, calib, data, options, log=lambda message: None)
    fp32 = bench.bundle("fp32", "fp32")
    layers = [layer.name for layer in search_layers(onnx.load(str(fp32.model_path)), "openvino")]
    for precision in ("fp32", "int8"):
        rewrite = bench.config_bundle(Config(precision, 0.5))
        names = rewritten_layer_names(onnx.load(str(rewrite.model_path)), rewrite.manifest.precision.layers)
        assert list(names) == layers  # the rewritten layer 2 by its own name, as plans name it
        assert any(a.startswith("node_index_select") for a in names["2"])  # its gather, through the Q/DQ at INT8
        rows = create_runner("openvino", rewrite, threads=1).layer_profile(np.zeros((4, 1, 8, 8), np.float32))
        times = layer_times(rows, names)
        assert times is not None and all(ms > 0 for ms in times.values())
        # the gather's reorder into the depthwise convolution is the rewritten layer's, counted once
        between = [r for r in rows if r["layer"].startswith("node_index_select") and "_node_" in r["layer"]]
        assert all(sum(r["layer"] == row["layer"] for r in rows) == 1 for row in between)
        assert times["2"] >= sum(r["ms"] for r in between)


def test_every_gdws_budget_reads_one_estimate_of_the_channel_weights_and_a_swapped_file_is_estimated_again(
    digits_loaded, tmp_path, monkeypatch
):
    import json

    from deploy_robust.transforms.gdws import rewrite

    estimates = []
    real = rewrite.estimate_alphas
    monkeypatch.setattr(rewrite, "estimate_alphas", lambda *a, **k: estimates.append(1) or real(*a, **k))
    calib, data = load_dataset("digits:train"), load_dataset("digits:test")
    options = TuneOptions(ThreatModel("linf", 0.1), n=20, final_n=20, space=("precision", "gdws"))

    def rewritten(budget):
        bench = Workbench(digits_loaded, tmp_path, calib, data, options, log=lambda message: None)
        return bench.gdws_model(budget).transforms["gdws"]

    half, quarter = rewritten(0.5), rewritten(0.25)
    assert len(estimates) == 1 and half["alphas"] == quarter["alphas"]  # one estimate serves both budgets
    assert half["budget"] == 0.5 and quarter["budget"] == 0.25
    (file,) = (tmp_path / "cache").glob("gdws-alphas-*.json")
    doc = json.loads(file.read_text())
    doc["alphas"] = {name: [1.0] * len(values) for name, values in doc["alphas"].items()}  # weights of another's
    file.write_text(json.dumps(doc))
    assert rewritten(0.5)["layers"] == half["layers"] and len(estimates) == 2  # not read: estimated again


def test_the_final_reference_attacks_fp32_where_the_candidate_lost_and_everywhere_only_when_asked(
    digits_loaded, tmp_path
):
    import numpy as np

    from deploy_robust.tune.measure import paired_drop
    from deploy_robust.verify.document import per_example

    calib, data = load_dataset("digits:train"), load_dataset("digits:test")
    bench = Workbench(digits_loaded, tmp_path, calib, data, TuneOptions(ThreatModel("linf", 0.1), n=20, final_n=40),
                      log=lambda message: None)  # fmt: skip
    fp32, int4 = bench.bundle("fp32", "fp32"), bench.bundle("int4", "int4")
    candidate = bench.verified(int4, "standard", 40, skip=20)
    lost = ~per_example(candidate, "robust")
    assert 0 < lost.sum() < 40
    bound = bench.final_reference(fp32, candidate, 20, everywhere=False)
    exact = bench.final_reference(fp32, candidate, 20, everywhere=True)
    upper, attacked = per_example(bound, "robust"), per_example(exact, "robust")
    # FP32 attacked (standard suite, on the engine) at exactly the points the candidate lost; held elsewhere
    misses = bench.cache.misses
    where_lost = bench.verified_at(fp32, "standard", np.flatnonzero(lost) + 20)
    assert bench.cache.misses == misses and len(where_lost["per_example"]["robust"]) == lost.sum()
    assert (upper[lost] == per_example(where_lost, "robust")).all() and upper[~lost].all()
    assert bound["attacked"] == f"the {lost.sum()} points the candidate lost" and exact["attacked"] == "every point"
    # so the drop it gives bounds the drop against FP32 attacked everywhere from above, point by point
    assert (upper >= attacked).all() and (upper[lost] == attacked[lost]).all()
    assert paired_drop(bound, candidate)["drop"] >= paired_drop(exact, candidate)["drop"]
    # once FP32 has been verified on every one of these points (its own final check, say), that run is the pairing:
    # read, exact, nothing attacked again
    whole = bench.verified(fp32, "standard", 40, skip=20)
    misses, hits = bench.cache.misses, bench.cache.hits
    read = bench.final_reference(fp32, candidate, 20, everywhere=False)
    assert read["attacked"] == "every point" and read["per_example"] == whole["per_example"]
    assert bench.cache.misses == misses and bench.cache.hits == hits + 1
    assert paired_drop(read, candidate)["drop"] == paired_drop(whole, candidate)["drop"]
