"""deploy-robust info: what a bundle or a model file is, or the built-in architectures."""

from __future__ import annotations

import argparse
from pathlib import Path

from deploy_robust import zoo
from deploy_robust.api.models import InfoRequest, info
from deploy_robust.bundle import Manifest
from deploy_robust.cli import args as cli_args
from deploy_robust.cli.output import emit_json, size, table
from deploy_robust.ingest.kinds import describe_defense, describe_transforms
from deploy_robust.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", metavar="BUNDLE_OR_MODEL")
    parser.add_argument("--zoo", action="store_true", help="list the built-in architectures")
    cli_args.add_model_args(parser)


def run(args: argparse.Namespace) -> int:
    if args.zoo:
        return _zoo(args)
    if not args.target:
        raise UserError("info needs a bundle or model file (or --zoo)")
    path = Path(args.target)
    result = info(InfoRequest(path, cli_args.model_options(args)))
    if args.json:
        emit_json(result.document, "info")
    elif result.bundle is not None:
        _print_bundle(result.bundle, result.document["graph"])
        _print_runs(result.bundle)
    else:
        _print_model(path, result.document)
    return 0


def _print_bundle(bundle, g: dict) -> None:
    m = bundle.manifest
    source, weights8 = m.source, m.precision.int8_weights
    print(f"bundle {bundle.path}  (schema v{m.schema_version})")
    rows = [
        ["precision / target", f"{m.precision.mode} / {m.target}"],
        *([["calibration", _describe_calibration(m)]] if m.calibration else []),
        ["input", _describe_input(m.input.to_json()) + f", batch {m.model.batch or 'dynamic'}"],
        ["graph", f"{g['nodes']} nodes, opset {m.model.opset}, {size(g['bytes'])}; ops {g['ops']}"],
        [
            "source",
            f"{source.get('file')} ({source.get('format')}, arch {source.get('arch')}), "
            f"sha256 {str(source.get('sha256'))[:12]}",
        ],
        ["exporter", m.model.exporter],
        *([["defense", describe_defense(m)]] if m.defense else []),
        *([["transforms", describe_transforms(m.transforms)]] if m.transforms else []),
        *(
            [
                [
                    "8-bit weights",
                    f"{weights8['range']} range ({weights8['levels']} levels), exact on {weights8['exact_on']}",
                ]
            ]
            if weights8
            else []
        ),
        *([["INT4 conv weights", INT4_RUNTIMES]] if _stores_int4_convs(bundle) else []),
        ["tools", ", ".join(f"{k} {v}" for k, v in m.tools.items())],
    ]
    print(table(["field", "value"], rows))
    if m.precision.layers:
        print()
        print(layer_table(m.precision.layers))


def _print_runs(bundle) -> None:
    """The verify and bench runs the bundle keeps, newest last; the top-level copies are the newest of each kind."""
    runs = bundle.runs()
    if runs:
        print()
        print(f"runs kept in {bundle.path}/runs/ ({len(runs)}, oldest first): " + ", ".join(p.name for p in runs))


def _print_model(path: Path, doc: dict) -> None:
    print(f"model {path}: {doc['source']['format']}, arch {doc['source']['arch']}, {doc['parameters']:,} parameters")
    print(f"input {_describe_input(doc['input'])}, batch {doc['batch']}")
    if doc["transforms"]:
        print(f"transforms: {describe_transforms(doc['transforms'])}")
    rows = [[entry["name"], entry["type"], entry["source_dtype"]] for entry in doc["layers"]]
    print(table(["layer", "type", "dtype"], rows))


def layer_table(layers) -> str:
    """Per weighted layer (as `polygraphy inspect model --mode layers` lists them): its name in the torch model,
    op, precision (and what was asked when it differs), source dtype, weight rounding and the reason."""
    rows = []
    for layer in layers:
        precision = layer.get("precision", "?")
        asked = layer.get("requested")
        shown = f"{precision} (asked {asked})" if asked and asked != precision else precision
        rows.append(
            [
                layer.get("name", "?"),
                layer.get("op", "-"),
                shown,
                layer.get("source_dtype", "-"),
                layer.get("weight_rounding", "-"),
                layer.get("reason", ""),
            ]
        )
    return table(["layer", "op", "precision", "source dtype", "rounding", "reason"], rows)


# Which runtimes get INT8 speed from an INT4 bundle, and how (measured: benchmarks/runtime_matrix.py)
INT4_RUNTIMES = (
    "stored 4-bit (1/8 of FP32); deploy-robust's ort-cpu and openvino backends widen them to INT8 at load "
    "(the same integers, INT8 kernels and speed); a plain ONNX Runtime or OpenVINO session dequantizes "
    "them to float instead (slower than INT8)"
)


def _stores_int4_convs(bundle) -> bool:
    return any(
        layer.get("precision") == "int4" and layer.get("op") == "Conv" for layer in bundle.manifest.precision.layers
    )


def _describe_calibration(manifest: Manifest) -> str:
    c = manifest.calibration
    rounding = manifest.precision.weight_rounding or "nearest"
    return f"{c.method} ranges over {c.num_images} images of {c.dataset}; weights rounded: {rounding}"


def _describe_input(inp: dict) -> str:
    norm = inp["normalization"]
    text = f"{'x'.join(map(str, inp['shape']))} in [0,1], {inp['num_classes']} classes"
    if norm:
        text += f", normalization folded in: mean {tuple(round(v, 4) for v in norm['mean'])} std {tuple(round(v, 4) for v in norm['std'])}"
    else:
        text += ", no normalization (the model takes raw [0,1] images)"
    return text


def _zoo(args: argparse.Namespace) -> int:
    entries = [zoo.get(n) for n in zoo.names()]
    if args.json:
        emit_json([{"name": e.name, "input": e.spec.to_json(), "description": e.description} for e in entries], "info")
    else:
        print(
            table(
                ["name", "input", "normalization", "description"],
                [
                    [
                        e.name,
                        "x".join(map(str, e.spec.shape)),
                        "yes"
                        if e.spec.normalized
                        else ("none (train: CIFAR-10's)" if e.train_normalization else "none"),
                        e.description,
                    ]
                    for e in entries
                ],
            )
        )
    return 0
