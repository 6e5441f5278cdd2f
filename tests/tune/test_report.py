from deploy_robust.tune.report import report


def _row(name, latency, holds, final=None):
    row = {
        "name": name,
        "latency_ms": latency,
        "robust_accuracy": 0.7,
        "robust_ci95": [0.6, 0.8],
        "clean_accuracy": 0.98,
        "robust_drop": {"drop": 0.01},
        "holds": holds,
    }
    return row | ({"final": final} if final else {})


def test_the_report_names_the_pick_and_lists_every_configuration_fastest_first():
    final = {"robust_accuracy": 0.69, "robust_drop": {"drop": 0.004, "ci95": [-0.01, 0.02]}, "holds": True}
    document = {
        "settings": {
            "target": "ort-cpu",
            "batch": 1,
            "objective": "latency",
            "metric": "robust",
            "max_robust_drop": 0.01,
            "max_clean_drop": 0.01,
            "threat": {"norm": "linf", "eps": 0.1},
            "pins": {"7": "fp32"},
        },
        "pick": "uniform int8",
        "acceptance": "accepted on the standard suite",
        "time_budget": {"seconds": 60, "stopped_in": ["bisection"]},
        "measured": [
            _row("uniform fp32", 0.9, True),
            _row("uniform int8", 0.4, True, final),
            _row("uniform int4", None, False),
        ],
    }
    text = report(document)
    assert (
        "**Pick: uniform int8**" in text and "Pinned layers: 7=fp32." in text and "stopped early in bisection" in text
    )
    rows = [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| uniform")]
    assert rows == ["| uniform int8", "| uniform fp32", "| uniform int4"]  # by latency, the unmeasured last
    assert "accepted" in text.split("| uniform int8")[1].splitlines()[0]
    # written while the tune goes: a pick not made yet is not "no plan met the budget"
    partial = report(document | {"pick": None, "in_progress": True})
    assert "**Pick: not made yet**" in partial and "still running or was stopped" in partial
    assert "no plan met the budget" in report(document | {"pick": None}) and "still running" not in text


def test_one_row_per_graph_and_every_no_says_why():
    from types import SimpleNamespace

    from deploy_robust.tune.report import _one_row_per_graph, _why_not

    rows = [
        _row("uniform int8", 0.4, True) | {"graph_sha256": "a"},
        _row("int8 but 0 fp32", None, True) | {"graph_sha256": "a"},
        _row("uniform int4", 0.3, False) | {"graph_sha256": "b", "why_not": "robust drop +3.0 pt > 1 pt"},
    ]
    merged = _one_row_per_graph(rows)
    assert [r["name"] for r in merged] == ["uniform int8", "uniform int4"]
    assert merged[0]["same_graph_as"] == ["int8 but 0 fp32"]
    settings = SimpleNamespace(max_clean_drop=0.01, max_robust_drop=0.01, metric="robust")
    failing = {"clean_drop": {"drop": 0.0}, "robust_drop": {"drop": 0.03}}
    assert _why_not(failing, settings) == "robust drop +3.0 pt > 1 pt"
    document = {
        "settings": {"target": "ort-cpu", "batch": 1, "objective": "latency", "metric": "robust",
                     "max_robust_drop": 0.01, "max_clean_drop": 0.01, "threat": {"norm": "linf", "eps": 0.1}},
        "pick": "uniform int8", "acceptance": "a", "measured": merged,
    }  # fmt: skip
    text = report(document)
    assert "uniform int8 (same graph: int8 but 0 fp32)" in text and "no: robust drop +3.0 pt > 1 pt" in text


def test_frontier_labels_of_nearby_points_do_not_overlap(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deploy_robust.bench.plots import _labels

    fig, ax = plt.subplots()
    ax.scatter([1.0, 1.001, 1.002, 3.0], [50.0, 50.05, 49.95, 80.0])
    _labels(ax, [(1.0, 50.0, "fp16"), (1.001, 50.05, "fp32"), (1.002, 49.95, "int8"), (3.0, 80.0, "int4")])
    fig.canvas.draw()
    from matplotlib.text import Text

    boxes = [Text.get_window_extent(t) for t in ax.texts]  # the names themselves, without their leader lines
    assert len(boxes) == 4
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    plt.close(fig)


def test_a_real_size_frontier_labels_each_plan_briefly_and_fits_its_figure(tmp_path):
    import warnings

    from deploy_robust.bench.plots import plan_label, tune_frontier_plot

    long_plan = "int8 but conv1 fp32, layer2.0.shortcut.0 fp32, layer3.0.shortcut.0 fp32, layer2.1.conv2 gdws0.25-int8"
    assert plan_label("uniform int8") == "int8" and plan_label("int8 but conv1 fp32") == "int8 but conv1 fp32"
    assert plan_label(long_plan) == "int8 + 3 fp32 + 1 gdws0.25-int8"
    names = [
        "uniform int8",
        long_plan,
        "fp32 but " + ", ".join(f"layer{i}.conv{j} int8" for i in range(4) for j in (1, 2)),
    ]
    rows = [
        {"name": name, "uniform": name.startswith("uniform"), "latency_ms": 1.4 + 0.1 * i, "robust_accuracy": 0.39,
         "robust_ci95": [0.33, 0.46], "clean_accuracy": 0.94}
        for i, name in enumerate(names)
    ]  # fmt: skip
    settings = {"target": "ort-cpu", "objective": "throughput", "batch": 32, "n": 200}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns where the labels leave no room for the axes
        tune_frontier_plot(rows, tmp_path / "frontier.png", settings)
    assert (tmp_path / "frontier.png").stat().st_size > 1000
