"""Which layers hold a tune back: per layer, what each option saves on the target runtime and what it costs in
margin, read from a finished (or stopped) tune's frontier.json. Measures nothing itself.

Per layer: its MACs; the latency change of INT8 and of the fastest GDWS option (the tune's cost model: its share of
the uniform bundle's measured change, split by the runtime's own per-layer profile where the target gives one);
and the sensitivity of each (the points' mean margin loss with only that layer lowered, the larger of the robust
and clean margins where both were measured). Sorted by what the fastest GDWS option saves beyond INT8: the layers
a plan faster than uniform INT8 would have to rewrite, and what rewriting them costs.

    python benchmarks/tune_layers.py benchmarks/.tune/openvino/pyautoattack-resnet18/robust [--out NAME]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from machine import save_result


def layer_rows(frontier: dict) -> list[dict]:
    """One row per searched layer of the tune's cost model (layers the budget left FP32-only have no options)."""
    cost = frontier["cost_model"]
    rows = []
    for layer, latency, loss in zip(frontier["layers"], cost["latency_ms"], cost["margin_loss"]):
        gdws = {o: ms for o, ms in latency.items() if o.startswith("gdws") and o.endswith("-int8")}
        fastest = min(gdws, key=gdws.get) if gdws else None
        rows.append(
            {
                "layer": layer["name"],
                "macs": layer["macs"],
                "int8_ms": latency.get("int8"),
                "int8_sensitivity": loss.get("int8"),
                "gdws_option": fastest,
                "gdws_ms": gdws.get(fastest),
                "gdws_sensitivity": loss.get(fastest),
                "gdws_beyond_int8_ms": None
                if fastest is None or "int8" not in latency
                else gdws[fastest] - latency["int8"],
            }
        )
    return sorted(rows, key=lambda r: (r["gdws_beyond_int8_ms"] is None, r["gdws_beyond_int8_ms"] or 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tune", help="a tune's output folder (its frontier.json)")
    parser.add_argument("--out", help="results name (default: tune_layers_<model folder>)")
    args = parser.parse_args()
    folder = Path(args.tune)
    frontier = json.loads((folder / "frontier.json").read_text())
    if "cost_model" not in frontier:
        raise SystemExit(f"{folder}: the tune stopped before its cost model was made; nothing to read")
    cost = frontier["cost_model"]
    uniform = {r["name"]: r["latency_ms"] for r in frontier["measured"] if r["uniform"]}
    summary = {
        "tune": str(folder),
        "settings": frontier["settings"],
        "fp32_ms": cost["fp32_latency_ms"],
        "uniform_ms": uniform,
        "predicted_all_int8_ms": cost["fp32_latency_ms"] + sum(ms.get("int8", 0.0) for ms in cost["latency_ms"]),
        "predicted_fastest_ms": cost["fp32_latency_ms"] + sum(min(ms.values()) for ms in cost["latency_ms"]),
        "shared_by": cost["latency_check"].get("shared_by", {}),
        "layers": layer_rows(frontier),
    }
    save_result(
        args.out or "tune_layers_" + folder.parent.name.replace("-", "_").replace(".", "_"),
        [summary],
        script="tune_layers",
    )


if __name__ == "__main__":
    main()
