"""deploy-robust export: a model file -> a bundle directory."""

from __future__ import annotations

import argparse
import sys

from deploy_robust.api import ExportRequest, SAPOptions, SqueezeOptions, Transforms, export
from deploy_robust.calibrators.methods import METHODS
from deploy_robust.cli import args as cli_args
from deploy_robust.cli.gdws_args import add_gdws_args, describe_plan, request_from_args
from deploy_robust.cli.output import emit_json, size
from deploy_robust.export import WEIGHT_ROUNDINGS, CalibrationOptions, ExportOptions
from deploy_robust.exporters.profiles import INT8_WEIGHT_RANGES
from deploy_robust.ingest.kinds import describe_defense
from deploy_robust.quant.plan import MODES
from deploy_robust.targets import EXPORT_TARGETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="TorchScript, .pt2, state_dict checkpoint (+ --arch), or ONNX file")
    parser.add_argument("-o", "--out", required=True, help="bundle directory to write (replaced atomically)")
    parser.add_argument("--precision", default="fp32", choices=list(MODES),
                        help="fp32, fp16, int8 (W8A8), int4 (4-bit weights; 8-bit activations for convs, weight-only "
                        "blocks for Gemm/MatMul), or mixed (--plan) (default fp32)")
    parser.add_argument("--target", default="ort-cpu", choices=EXPORT_TARGETS, help="runtime the bundle is for (default ort-cpu)")
    parser.add_argument("--static-batch", type=cli_args.positive_int, metavar="N",
                        help="fix the batch size in the graph (default: dynamic batch)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17; INT4 raises it to 21)")
    calib = parser.add_argument_group("calibration (int8, int4, mixed)")
    calib.add_argument("--calib", metavar="DATA", help="calibration images (any --data format; labels are not used)")
    calib.add_argument("--calib-method", default="mse", choices=list(METHODS), help="activation range method (default mse)")
    calib.add_argument("--calib-n", type=cli_args.positive_int, default=512, help="calibration images to use (default 512)")
    calib.add_argument("--percentile", type=cli_args.percentile, default=99.99, help="for --calib-method percentile (default 99.99)")
    calib.add_argument("--weight-rounding", default="gptq", choices=list(WEIGHT_ROUNDINGS),
                       help="gptq: round each layer's weights to keep its output on the calibration images (error "
                       "feedback, GPTQ); nearest: round each weight on its own (default gptq)")
    calib.add_argument("--min-agreement", type=cli_args.fraction, metavar="X",
                       help="keep the layers whose quantization moves predictions most in FP32, one at a time, until "
                       "top-1 agreement with the float graph is at least X (e.g. 0.99), measured on up to 1,000 --calib images "
                       "after the --calib-n used for calibration (else on those)")
    calib.add_argument("--int8-weights", default="auto", choices=list(INT8_WEIGHT_RANGES),
                       help="ort-cpu 8-bit weight range: full [-127, 127] (exact with ONNX Runtime's integer kernels on "
                       "x86 CPUs with VNNI or AMX and on non-x86 CPUs), reduced [-63, 63] (exact on every x86 CPU), auto: "
                       "full if this CPU has VNNI/AMX or is not x86, else reduced (default auto; the manifest records it)")
    calib.add_argument("--calib-cache", metavar="FILE", help="reuse a calibration.json (or a bundle holding one)")
    calib.add_argument("--plan", metavar="PLAN", help="per-layer precision plan (YAML/JSON) for --precision mixed")
    defense = parser.add_argument_group("defenses (verify the result: deploy-robust verify)")
    defense.add_argument("--sap", metavar="LAYERS", help="Stochastic Activation Pruning after these layers: 'all' (every "
                         "activation module) or comma-separated module names; ONNX Runtime draws a fresh mask per run")
    defense.add_argument("--sap-fraction", type=cli_args.number, default=1.0,
                         help="draws per layer as a fraction of its units (default 1.0)")
    defense.add_argument("--sap-seed", type=cli_args.seed, metavar="N", help="seeded, repeatable SAP (for tests; not a defense)")
    defense.add_argument("--squeeze", metavar="SQUEEZERS",
                         help="feature squeezing, e.g. bits:5,median:2 (bit depth; k x k median) folded into the graph")
    defense.add_argument("--squeeze-mode", default="squeeze", choices=["squeeze", "detect"],
                         help="squeeze: classify the squeezed input; detect: classify the input and add a "
                              "squeeze_score output with a threshold set on --calib (default squeeze)")
    defense.add_argument("--squeeze-fpr", type=cli_args.number, default=0.05,
                         help="detect mode: false-positive rate on clean --calib images (default 0.05)")
    add_gdws_args(parser, prefix="gdws-")
    cli_args.add_model_args(parser)


def run(args: argparse.Namespace) -> int:
    sap = None
    if args.sap:
        layers = None if args.sap == "all" else tuple(n.strip() for n in args.sap.split(",") if n.strip())
        sap = SAPOptions(layers, args.sap_fraction, args.sap_seed)
    squeeze = SqueezeOptions(args.squeeze, args.squeeze_mode, args.squeeze_fpr) if args.squeeze else None
    calibration = CalibrationOptions(args.calib_method, args.calib_n, args.percentile, args.calib_cache)
    options = ExportOptions(args.precision, args.target, calibration, args.plan, opset=args.opset, seed=args.seed,
                            weight_rounding=args.weight_rounding, min_agreement=args.min_agreement,
                            int8_weights=args.int8_weights)
    transforms = Transforms(request_from_args(args, prefix="gdws-"), sap, squeeze)
    request = ExportRequest(args.model, args.out, options, args.calib, args.static_batch, transforms,
                            cli_args.model_options(args))
    log = (lambda msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    result = export(request, log)
    if result.gdws_plan is not None and not args.json:
        print(describe_plan(result.gdws_plan), file=sys.stderr)
    if args.json:
        emit_json(result.document, "export")
        return 0
    bundle, summary = result.bundle, result.document["graph"]
    spec = bundle.spec
    norm = (f"normalization folded in: mean {', '.join(f'{v:.4g}' for v in spec.mean)}, std {', '.join(f'{v:.4g}' for v in spec.std)}"
            if spec.normalized else "no normalization: the model takes raw [0,1] images")
    print(f"wrote {bundle.path}/  {args.precision} for {args.target}: model.onnx {size(summary['bytes'])}, "
          f"{summary['nodes']} nodes, input {bundle.fixed_batch or 'N'}x{'x'.join(map(str, spec.shape))} in [0,1] ({norm}), "
          f"{spec.num_classes} classes")
    fallbacks = [layer for layer in bundle.manifest.precision.layers if layer.get("requested") and layer["precision"] != layer["requested"]]
    if bundle.manifest.defense:
        print(f"  defense: {describe_defense(bundle.manifest)}")
    weights = bundle.manifest.precision.int8_weights
    if weights and weights["requested"] == "auto":
        print(f"  8-bit weights: {weights['range']} range ({weights['levels']} levels; exact on {weights['exact_on']})")
    rounding = bundle.manifest.precision.weight_rounding or ""
    if rounding.startswith("nearest ("):
        print(f"  note: weights rounded to nearest{rounding[len('nearest'):]}")
    fallback = bundle.manifest.precision.fallback
    if fallback:
        which = "held-out --calib" if fallback["held_out"] else "calibration"
        print(f"  top-1 agreement with FP32 on {fallback['images']} {which} images: "
              f"{100 * fallback['agreement_all_quantized']:.2f}% all quantized, {100 * fallback['agreement']:.2f}% "
              f"with {len(fallback['kept_fp32'])} layer(s) kept FP32 (--min-agreement {fallback['target']:g})")
    for layer in fallbacks:
        print(f"  note: layer {layer['name']} stays {layer['precision']} (asked {layer['requested']}): {layer['reason']}")
    return 0
