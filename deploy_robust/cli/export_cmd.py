"""deploy-robust export: a model file -> a bundle directory."""

from __future__ import annotations

import argparse

from deploy_robust.cli import args as cli_args
from deploy_robust.cli.output import emit_json, size
from deploy_robust.export import TARGETS, export_bundle, onnx_summary
from deploy_robust.ingest import load_model

NAME = "export"
HELP = "export a model to a bundle (model.onnx + manifest.json)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="TorchScript, .pt2, state_dict checkpoint (+ --arch), or ONNX file")
    parser.add_argument("-o", "--out", required=True, help="bundle directory to write (replaced atomically)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16"], help="numeric precision (default fp32)")
    parser.add_argument("--target", default="ort-cpu", choices=TARGETS, help="runtime the bundle is for (default ort-cpu)")
    parser.add_argument("--static-batch", type=cli_args.positive_int, metavar="N",
                        help="fix the batch size in the graph (default: dynamic batch)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    cli_args.add_model_args(parser)


def run(args: argparse.Namespace) -> int:
    loaded = load_model(args.model, args.arch, trust_pickle=args.trust_pickle, overrides=cli_args.overrides(args))
    if args.static_batch:
        loaded.fixed_batch = args.static_batch
    bundle = export_bundle(loaded, args.out, args.precision, args.target, opset=args.opset, seed=args.seed)
    summary = onnx_summary(bundle.model_path)
    if args.json:
        emit_json({"bundle": str(bundle.path), "manifest": bundle.manifest, "graph": summary})
    else:
        spec = bundle.spec
        norm = "normalization folded in" if spec.normalized else "no normalization"
        print(f"wrote {bundle.path}/  {args.precision} for {args.target}: model.onnx {size(summary['bytes'])}, "
              f"{summary['nodes']} nodes, input Nx{'x'.join(map(str, spec.shape))} in [0,1] ({norm}), "
              f"{spec.num_classes} classes")
    return 0
