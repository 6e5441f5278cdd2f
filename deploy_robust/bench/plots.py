"""Plots: latency against batch size, and the deployment frontier (speed against accuracy)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from deploy_robust.bundle.store import write_file_atomic


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from deploy_robust.errors import UserError

        raise UserError("plots need matplotlib: pip install matplotlib") from None
    return plt


def _axes():
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    return plt, fig, ax


def _save(plt, fig, ax, out: Path) -> Path:
    """Render to memory, then write atomically (a planted symlink at `out` is replaced, not followed)."""
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, dpi=120, format="png")
    plt.close(fig)
    return write_file_atomic(Path(out), image.getvalue())


def latency_plot(documents: list[dict[str, Any]], out: Path) -> Path:
    plt, fig, ax = _axes()
    for doc in documents:
        name = Path(doc["bundle"]["path"]).name
        for backend in sorted({e["backend"] for e in doc["results"]}):
            entries = sorted((e for e in doc["results"] if e["backend"] == backend), key=lambda e: e["batch"])
            batches = [e["batch"] for e in entries]
            ax.errorbar(
                batches,
                [e["latency_ms"]["p50"] for e in entries],
                yerr=[
                    [e["latency_ms"]["p50"] - e["latency_ms"]["min"] for e in entries],
                    [e["latency_ms"]["p99"] - e["latency_ms"]["p50"] for e in entries],
                ],
                marker="o",
                capsize=3,
                label=f"{name} ({backend})",
            )
            for e in entries:  # each point's figures, readable without the JSON
                rate = f", {e['throughput']:.0f} img/s" if "throughput" in e else ""
                ax.annotate(f"{e['latency_ms']['p50']:.2f} ms{rate}", (e["batch"],
                            e["latency_ms"]["p50"]), fontsize=6, xytext=(4, -8), textcoords="offset points")  # fmt: skip
    batches = sorted({e["batch"] for doc in documents for e in doc["results"]})
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("latency per batch (ms): p50, bars min..p99")
    if len(batches) == 1:
        ax.set_title(f"one batch size measured ({batches[0]}); `bench --batch 1,8,32` draws the curve", fontsize=8)
    ax.legend(fontsize=7)
    return _save(plt, fig, ax, out)


def frontier_plot(points: list[dict[str, Any]], out: Path, batch: int, robust_label: str | None = None) -> Path:
    """`points`: name, throughput, clean_accuracy and optionally robust_accuracy with its robust_ci95 (from
    verify.json); `robust_label` names the threat model and sample the robust points share."""
    plt, fig, ax = _axes()
    for key, marker, label in (
        ("clean_accuracy", "o", "clean"),
        ("robust_accuracy", "s", robust_label or "robust (verify)"),
    ):
        pts = [p for p in points if p.get(key) is not None]
        if not pts:
            continue
        ax.scatter([p["throughput"] for p in pts], [100 * p[key] for p in pts], marker=marker, label=label)
        bars = [p for p in pts if key == "robust_accuracy" and p.get("robust_ci95")]
        if bars:
            ax.errorbar(
                [p["throughput"] for p in bars],
                [100 * p[key] for p in bars],
                fmt="none",
                capsize=3,
                yerr=[
                    [100 * (p[key] - p["robust_ci95"][0]) for p in bars],
                    [100 * (p["robust_ci95"][1] - p[key]) for p in bars],
                ],
            )
        for p in pts:
            ax.annotate(
                p["name"], (p["throughput"], 100 * p[key]), fontsize=7, xytext=(4, 4), textcoords="offset points"
            )
    ax.set_xlabel(f"throughput at batch {batch} (images/s)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("deployment frontier")
    ax.legend(fontsize=8)
    return _save(plt, fig, ax, out)


def eps_curve_plot(
    curve: list[dict[str, float]], out: Path, title: str, verified: tuple[float, float, int] | None = None
) -> Path:
    """Engine accuracy against eps (from verify's sweep): should fall, and reach about 0. `verified`: the eps,
    robust accuracy and point count of the full suite, marked on the curve."""
    plt, fig, ax = _axes()
    ax.plot([255 * p["eps"] for p in curve], [100 * p["accuracy"] for p in curve], marker="o", label="PGD-CE sweep")
    if verified is not None:
        eps, robust, n = verified
        ax.axvline(255 * eps, color="grey", linestyle=":", linewidth=1)
        ax.plot([255 * eps], [100 * robust], marker="*", markersize=12, color="C3", linestyle="none",
                label=f"verified: {100 * robust:.1f}% at {255 * eps:.3g}/255 (full suite, n = {n})")  # fmt: skip
        ax.legend(fontsize=8)
    ax.set_xlabel("eps (x/255)")
    ax.set_ylabel("accuracy of E (%)")
    ax.set_title(title, fontsize=9)
    ax.set_ylim(-2, 102)
    return _save(plt, fig, ax, out)


def tune_frontier_plot(rows: list[dict[str, Any]], out: Path, settings: dict[str, Any]) -> Path:
    """`tune`'s measured configurations: latency against verified robust accuracy (95% CI bars), and against
    clean accuracy in a second panel; uniform configurations as squares, searched plans as dots. The band is the
    95% interval of the most robust configuration: points whose own interval reaches into it are
    indistinguishable from it at this n, and drawn hollow."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    timed = [r for r in rows if r.get("latency_ms") is not None]
    top = max(timed, key=lambda r: r["robust_accuracy"], default=None)
    for ax, key, label in (
        (axes[0], "robust_accuracy", "robust accuracy (verify quick, on the engine)"),
        (axes[1], "clean_accuracy", "clean accuracy"),
    ):
        if key == "robust_accuracy" and top is not None:
            ax.axhspan(100 * top["robust_ci95"][0], 100 * top["robust_ci95"][1], color="grey", alpha=0.15,
                       label=f"95% CI of {plan_label(top['name'])}")  # fmt: skip
        for uniform, marker in ((True, "s"), (False, "o")):
            pts = [r for r in timed if r["uniform"] == uniform]
            if not pts:
                continue
            hollow = [key == "robust_accuracy" and r is not top and _within(r, top) for r in pts]
            ax.scatter(
                [r["latency_ms"] for r in pts],
                [100 * r[key] for r in pts],
                marker=marker,
                facecolors=["none" if h else f"C{0 if uniform else 1}" for h in hollow],
                edgecolors=f"C{0 if uniform else 1}",
                label="uniform" if uniform else "tuned plans",
            )
            if key == "robust_accuracy":
                ax.errorbar(
                    [r["latency_ms"] for r in pts],
                    [100 * r[key] for r in pts],
                    fmt="none",
                    capsize=3,
                    ecolor=f"C{0 if uniform else 1}",
                    yerr=[
                        [100 * (r[key] - r["robust_ci95"][0]) for r in pts],
                        [100 * (r["robust_ci95"][1] - r[key]) for r in pts],
                    ],
                )
        _labels(ax, [(r["latency_ms"], 100 * r[key], plan_label(r["name"])) for r in timed])
        ax.set_xlabel(
            f"{'latency per batch' if settings['objective'] == 'latency' else 'time per image'} (ms), "
            f"batch {settings['batch']}"
        )
        ax.set_ylabel(f"{label} (%)")
        ax.grid(True, alpha=0.3)
        if timed:  # a run stopped before any measurement has nothing to label
            ax.legend(fontsize=7)
    fig.suptitle(
        f"tune on {settings['target']}: left is faster, up is more accurate; n = {settings['n']} points per "
        "candidate (hollow: within the most robust one's 95% CI)",
        fontsize=9,
    )
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, dpi=120, format="png")
    plt.close(fig)
    return write_file_atomic(Path(out), image.getvalue())


def _within(row: dict[str, Any], top: dict[str, Any]) -> bool:
    """Whether two configurations' robust 95% intervals overlap (indistinguishable at this n)."""
    return row["robust_ci95"][1] >= top["robust_ci95"][0]


def plan_label(name: str, width: int = 32) -> str:
    """A configuration's name short enough to print beside its point: `int8` for `uniform int8`; a plan's full
    name (`int8 but conv1 fp32, linear fp32`) where it fits `width`, else its layers off the common option counted
    per option (`int8 + 5 fp32`; real-size plans name a dozen layers). report.md keeps the full names."""
    name = name.replace("uniform ", "")
    if len(name) <= width or " but " not in name:
        return name
    common, others = name.split(" but ", 1)
    options = [item.rsplit(" ", 1)[-1] for item in others.split(", ")]
    counted = sorted(set(options), key=lambda o: (-options.count(o), o))
    return " + ".join([common, *(f"{options.count(o)} {o}" for o in counted)])


def _labels(ax, points: list[tuple[float, float, str]], size: float = 6) -> None:
    """Each point's name beside it, moved up in steps until it clears every label placed before (in pixels),
    so names of nearby points do not print over each other."""
    ax.autoscale_view()
    px_per_pt = ax.figure.dpi / 72
    line, char = 1.5 * size * px_per_pt, 0.65 * size * px_per_pt  # a label's height and a character's width
    placed: list[tuple[float, float, float]] = []  # left, bottom, right of each label, in pixels
    for x, y, text in sorted(points, key=lambda p: (p[0], p[1])):
        px, py = ax.transData.transform((x, y))
        left, right, dy = px + 3 * px_per_pt, px + 3 * px_per_pt + char * len(text), 3.0
        while any(left < r and lo < right and abs(py + dy * px_per_pt - b) < line for lo, b, r in placed):
            dy += 1.5 * size
        placed.append((left, py + dy * px_per_pt, right))
        ax.annotate(text, (x, y), fontsize=size, xytext=(3, dy), textcoords="offset points",
                    arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "grey"} if dy > 3 else None)  # fmt: skip
