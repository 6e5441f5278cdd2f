from deploy_robust.bench.plots import eps_curve_plot, frontier_plot, latency_plot

PNG = b"\x89PNG\r\n\x1a\n"


def _doc(name, backend="ort-cpu"):
    stats = {"p50": 2.0, "min": 1.5, "p99": 3.0}
    return {
        "bundle": {"path": f"/x/{name}"},
        "results": [{"backend": backend, "batch": b, "latency_ms": stats} for b in (1, 8)],
    }


def test_every_plot_writes_a_png(tmp_path):
    outs = [
        latency_plot([_doc("a"), _doc("b")], tmp_path / "lat.png"),
        frontier_plot(
            [
                {"name": "a", "throughput": 10, "clean_accuracy": 0.9, "robust_accuracy": 0.4},
                {"name": "b", "throughput": 20, "clean_accuracy": 0.8},
            ],
            tmp_path / "front.png",
            32,
        ),
        eps_curve_plot([{"eps": 0.0, "accuracy": 0.9}, {"eps": 8 / 255, "accuracy": 0.1}], tmp_path / "eps.png", "t"),
    ]
    for out in outs:
        assert out.read_bytes().startswith(PNG)
