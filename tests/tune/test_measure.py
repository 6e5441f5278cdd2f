import json
from types import SimpleNamespace

import pytest

from deploy_robust.tune.measure import (
    Cache,
    early_verdict,
    latency_model,
    layer_times,
    merged_figures,
    paired_drop,
    profile_changes,
)
from deploy_robust.tune.space import Layer


def test_the_cache_computes_once_and_survives_a_new_process(tmp_path):
    calls = []
    cache = Cache(tmp_path / "m.json")
    assert cache.get("a", lambda: calls.append(1) or 3.5) == 3.5 and cache.get("a", lambda: 0) == 3.5
    again = Cache(tmp_path / "m.json")
    assert again.get("a", lambda: 0) == 3.5 and calls == [1] and (again.hits, again.misses) == (1, 0)
    assert json.loads((tmp_path / "m.json").read_text())["entries"] == {"a": 3.5}


def test_a_forged_or_malformed_cache_is_set_aside_and_recomputed(tmp_path):
    Cache(tmp_path / "m.json").get("a", lambda: 3.5)
    document = json.loads((tmp_path / "m.json").read_text())
    document["entries"]["a"] = 100.0  # edited without this user's key
    (tmp_path / "m.json").write_text(json.dumps(document))
    forged = Cache(tmp_path / "m.json")
    assert forged.get("a", lambda: 3.5) == 3.5 and forged.rejected == 1 and forged.misses == 1
    for bad in (b"{not json", b"\x00\xff" * 10, b"[" * 100_000, b'{"entries": [], "tag": 1}'):
        (tmp_path / "m.json").write_bytes(bad)
        again = Cache(tmp_path / "m.json")
        assert again.values == {} and again.rejected == 1


def test_the_paired_drop_counts_discordant_points_on_the_same_points():
    reference = {"per_example": {"robust": "1111100000"}}
    candidate = {"per_example": {"robust": "1110100001"}}  # loses one, gains one
    d = paired_drop(reference, candidate)
    assert d["drop"] == 0 and (d["lost"], d["gained"], d["n"]) == (1, 1, 10) and d["ci95"][0] < 0 < d["ci95"][1]
    worse = paired_drop(reference, {"per_example": {"robust": "0000000000"}})
    assert worse["drop"] == pytest.approx(0.5) and worse["ci95"][0] > 0
    with pytest.raises(ValueError):
        paired_drop(reference, {"per_example": {"robust": "1"}})


def _outcomes(robust: str, clean: str | None = None) -> dict:
    return {"per_example": {"robust": robust, "clean": clean or robust}}


def test_an_interim_look_decides_only_when_the_drop_is_clearly_inside_or_outside_the_budget():
    reference = _outcomes("1" * 50)
    assert early_verdict(reference, _outcomes("0" * 10 + "1" * 40), {"robust": 0.01}) is False  # 20 pt lost
    assert early_verdict(reference, reference, {"robust": 0.01}) is None  # 0 of 50 discordant: 1 pt is not excluded
    wide = _outcomes("1" * 200)
    assert early_verdict(wide, wide, {"robust": 0.02, "clean": 0.02}) is True  # at 200 points 2 pt is
    assert early_verdict(wide, _outcomes("0" + "1" * 199), {"robust": 0.02}) is True  # 1 lost: still clear
    assert early_verdict(wide, _outcomes("000" + "1" * 197), {"robust": 0.02}) is None  # inside, not clearly
    # every budgeted field counts: robust clearly fine, clean clearly lost
    mixed = {"per_example": {"robust": "1" * 200, "clean": "0" * 40 + "1" * 160}}
    assert early_verdict(wide, mixed, {"robust": 0.02, "clean": 0.02}) is False
    assert early_verdict(wide, mixed, {"robust": 0.02}) is True


def test_merged_figures_are_the_figures_of_the_points_together():
    parts = [
        {"per_example": {"robust": "1100", "clean": "1110"}, "flags": ["b"]},
        {"per_example": {"robust": "10", "clean": "11"}, "flags": ["a", "b"]},
    ]
    merged = merged_figures(parts)
    assert merged["per_example"] == {"robust": "110010", "clean": "111011"} and merged["flags"] == ["a", "b"]
    assert merged["robust_accuracy"] == pytest.approx(0.5) and merged["clean_accuracy"] == pytest.approx(5 / 6)
    low, high = merged["robust_accuracy_ci95"]
    assert low < 0.5 < high


def _uniform(precisions: dict[str, str]):
    """What latency_model reads of a uniform bundle: the precision each layer was exported at."""
    layers = [{"name": name, "precision": p} for name, p in precisions.items()]
    return SimpleNamespace(manifest=SimpleNamespace(precision=SimpleNamespace(layers=layers)))


def test_the_latency_model_shares_a_uniform_change_by_macs_or_by_the_runtimes_own_profile():
    layers = [Layer("a", "Conv", 300, ("fp32", "int8"), "node_a"), Layer("b", "Conv", 100, ("fp32", "int8"), "node_b")]
    uniform = {"int8": (_uniform({"a": "int8", "b": "int8"}), 6.0)}  # 10 ms in FP32, 6 ms in INT8: 4 ms saved
    by_macs = latency_model(layers, uniform, 10.0)
    assert [m["int8"] for m in by_macs] == pytest.approx([-3.0, -1.0]) and by_macs[0]["fp32"] == 0
    # the profile says b got slower in INT8 (a small layer: its quantize and reorders cost more than it saves)
    changes = profile_changes({"node_a": 5.0, "node_b": 1.0}, {"node_a": 2.0, "node_b": 1.5}, layers)
    assert changes == {"a": -3.0, "b": 0.5}
    by_profile = latency_model(layers, uniform, 10.0, {"int8": changes})
    assert [m["int8"] for m in by_profile] == pytest.approx([-4.8, 0.8])  # shares -3/-2.5 and 0.5/-2.5 of -4 ms
    assert sum(m["int8"] for m in by_profile) == pytest.approx(-4.0)  # the measured change, shared differently
    # a layer the uniform bundle kept in float (the narrow first conv) is predicted no change either way
    kept = {"int8": (_uniform({"a": "int8", "b": "fp32"}), 6.0)}
    assert [m["int8"] for m in latency_model(layers, kept, 10.0, {"int8": changes})] == pytest.approx([-4.0, 0.0])


def test_openvino_profile_rows_lead_back_to_the_graphs_nodes():
    rows = [
        {"layer": "node_conv2d/WithoutBiases", "ms": 1.0},
        {"layer": "node_conv2d/WithoutBiases_bf16_u8_node_conv2d_1/WithoutBiases", "ms": 0.25},  # its output reorder
        {"layer": "node_conv2d_1/WithoutBiases", "ms": 2.0},
        {"layer": "node_linear", "ms": 0.5},
    ]
    rows.append({"layer": "logits", "ms": 0.125})  # the last layer, named after the graph's output
    names = {n: (n,) for n in ("node_conv2d", "node_conv2d_1", "node_linear")} | {
        "node_linear_1": ("node_linear_1", "logits")
    }
    assert layer_times(rows, names) == {
        "node_conv2d": 1.25,
        "node_conv2d_1": 2.0,
        "node_linear": 0.5,
        "node_linear_1": 0.125,
    }
    fused = [{"layer": "relu_nchwc", "ms": 1.0}]  # ONNX Runtime names fused kernels after tensors
    assert layer_times(fused, {"node_conv2d": ("node_conv2d", "conv2d")}) is None


def test_a_gdws_option_adds_its_share_of_the_rewrites_measured_change_to_its_precisions():
    from deploy_robust.tune.measure import with_gdws_latencies

    allowed = ("fp32", "int8", "gdws0.5-fp32", "gdws0.5-int8")
    layers = [
        Layer("a", "Conv", 300, allowed),
        Layer("b", "Conv", 100, allowed),
        Layer("c", "Gemm", 10, ("fp32", "int8")),
    ]
    uniform = {"int8": (_uniform({"a": "int8", "b": "int8", "c": "int8"}), 6.0)}
    plain = latency_model(layers, uniform, 10.0)
    assert all(not any(o.startswith("gdws") for o in options) for options in plain)  # measured apart
    # the rewrites measured 8 ms (FP32) and 5 ms (INT8): 2 and 1 ms saved, a saving 3 MACs to b's 1
    rewrites = {"gdws0.5-fp32": (8.0, {"a": 30, "b": 10}), "gdws0.5-int8": (5.0, {"a": 30, "b": 10})}
    model = with_gdws_latencies(layers, plain, rewrites, {"fp32": 10.0, "int8": 6.0})
    assert model[0]["gdws0.5-fp32"] == pytest.approx(-1.5) and model[1]["gdws0.5-fp32"] == pytest.approx(-0.5)
    assert model[0]["gdws0.5-int8"] == pytest.approx(plain[0]["int8"] - 0.75)
    assert model[1]["gdws0.5-int8"] == pytest.approx(plain[1]["int8"] - 0.25)
    assert model[2] == plain[2] and "gdws0.5-int8" not in model[2]
    # with the runtime's own profile of the FP32 bundle and of each rewrite: a's rewrite got slower (its gather and
    # reorders cost more than its smaller convolutions save), b's faster: each takes its share of the measured -2 ms
    profiled = {"gdws0.5-fp32": {"a": 1.0, "b": -3.0, "c": 0.0}}
    model = with_gdws_latencies(layers, plain, rewrites, {"fp32": 10.0, "int8": 6.0}, profiled)
    assert model[0]["gdws0.5-fp32"] == pytest.approx(1.0) and model[1]["gdws0.5-fp32"] == pytest.approx(-3.0)
    assert model[0]["gdws0.5-int8"] == pytest.approx(plain[0]["int8"] - 0.75)  # not profiled: by MACs saved


def test_a_reorder_between_two_nodes_of_one_layer_is_that_layers():
    rows = [
        {"layer": "node_conv2d_2/WithoutBiases_acdb_abcd_node_index_select_1", "ms": 0.5},  # into the gather: 2's
        {"layer": "node_index_select_1", "ms": 1.0},
        {"layer": "node_index_select_1_abcd_acdb_node_Conv_19", "ms": 2.0},  # gather -> depthwise: the layer's
        {"layer": "node_Conv_19", "ms": 4.0},
        {"layer": "node_conv2d_4/WithoutBiases", "ms": 8.0},
        {"layer": "node_conv2d_2/WithoutBiases", "ms": 16.0},
    ]
    names = {
        "layer1.0.conv2": ("node_index_select_1", "index_select_1", "node_Conv_19", "node_conv2d_4"),
        "layer1.0.conv1": ("node_conv2d_2",),
        "other": ("node_index_select_10",),  # a prefix of no row of the others
    }
    assert layer_times(rows, {k: v for k, v in names.items() if k != "other"}) == {
        "layer1.0.conv2": 15.0,
        "layer1.0.conv1": 16.5,
    }
    assert layer_times(rows, names) is None


def test_a_probes_penalty_moves_its_option_on_every_layer_and_nothing_else():
    from deploy_robust.tune.measure import with_probe_penalties

    model = ({"fp32": 0.0, "int8": -0.5}, {"fp32": 0.0, "int8": -0.2, "gdws0.5-int8": -0.6})
    corrected = with_probe_penalties(model, {"gdws0.5-int8": 0.3, "gdws0.25-int8": 9.0})
    assert corrected == ({"fp32": 0.0, "int8": -0.5}, {"fp32": 0.0, "int8": -0.2, "gdws0.5-int8": pytest.approx(-0.3)})
    assert with_probe_penalties(model, {}) == model
