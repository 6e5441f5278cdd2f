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
