"""Property-based fuzzing of every loader: mutated files may fail only with the project's UserError.

Seeds are small valid files of each format (written by `write_seeds`); hypothesis mutates their
bytes (truncation, flipped bytes, overwritten and inserted runs, and, for zip-based formats, the
same edits inside one archive member, so the inner parsers are reached too). Each loader must
either load the file or raise UserError; anything else is a failure. Run as a script it prints
one JSON line with the counts and the peak RSS of the process:

    python -m tests.security.fuzz --examples 300 --seed 0
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from hypothesis import HealthCheck, given, seed as hypothesis_seed, settings, strategies as st

from deploy_robust.bench.measure import peak_rss_mib  # VmHWM: the child's own peak, not the forked parent's
from deploy_robust.errors import UserError

# Per-format share of the examples: slow loaders (torch.export, TorchScript) get fewer.
WEIGHTS = {
    "checkpoint": 1.0,
    "torchscript": 0.5,
    "exported_program": 0.25,
    "onnx": 1.0,
    "onnx_graph": 1.0,
    "onnx_qdq_graph": 1.0,
    "npz": 1.0,
    "cifar": 1.0,
    "idx": 1.0,
    "image_folder": 0.5,
    "plan": 1.0,
    "calib_cache": 1.0,
    "manifest": 1.0,
    "tune_cache": 1.0,
    "resume_batch": 1.0,
}

# Formats whose seed is mutated as a structure (the parsed ONNX graph), not as bytes.
STRUCTURAL = {"onnx_graph", "onnx_qdq_graph"}


class ForgedEntryAccepted(AssertionError):
    """A signed cache file was edited, and its edited contents were used (a failure, not a refusal)."""


TUNE_ENTRIES = {"latency:int8:b1": [0.41, 0.43, 0.40], "verify:int8:quick": {"clean": 0.98, "robust": 0.71}}
RESUME_SETTINGS = {"suite": "quick", "eps": 0.1, "n": 4}
RESUME_INPUTS = (np.zeros((4, 1, 8, 8), np.float32), np.arange(4))
RESUME_RESULT = {"robust": np.array([True, False, True, True]), "margin": np.array([0.5, -0.1, 0.2, 0.3], np.float32)}


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(2 * 8 * 8, 10)
    ).eval()


def write_seeds(folder: Path) -> dict[str, Path]:
    """One small valid file of each format (a directory for the directory formats)."""
    from PIL import Image

    from deploy_robust import zoo
    from deploy_robust.data import Dataset
    from deploy_robust.export import CalibrationOptions, ExportOptions, export_bundle
    from deploy_robust.ingest import load_model
    from deploy_robust.tune.measure import Cache
    from deploy_robust.verify.resume import BatchCheckpoint

    seeds: dict[str, Path] = {}
    digits = zoo.get("digits_cnn").build()
    seeds["checkpoint"] = folder / "digits_cnn.pt"
    torch.save(digits.state_dict(), seeds["checkpoint"])
    x = torch.zeros(1, 1, 8, 8)
    seeds["torchscript"] = folder / "model.ts"
    torch.jit.save(torch.jit.trace(_net(), x), seeds["torchscript"])
    seeds["exported_program"] = folder / "model.pt2"
    torch.export.save(torch.export.export(_net(), (x,)), str(seeds["exported_program"]))
    bundle = export_bundle(load_model(seeds["checkpoint"]), folder / "bundle")
    seeds["onnx"] = bundle.model_path
    seeds["manifest"] = bundle.path / "manifest.json"
    rng = np.random.default_rng(0)
    seeds["npz"] = folder / "data.npz"
    np.savez_compressed(seeds["npz"], x=rng.integers(0, 255, (4, 1, 8, 8), dtype=np.uint8), y=np.arange(4))
    (folder / "cifar").mkdir()
    seeds["cifar"] = folder / "cifar" / "test_batch"
    import pickle

    seeds["cifar"].write_bytes(
        pickle.dumps({b"data": rng.integers(0, 255, (2, 3072), dtype=np.uint8), b"labels": [0, 1]}, protocol=2)
    )
    (folder / "mnist").mkdir()
    seeds["idx"] = folder / "mnist" / "t10k-images-idx3-ubyte"
    seeds["idx"].write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 4]) + bytes(32))
    (folder / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 2, 3, 4]))
    (folder / "images" / "a").mkdir(parents=True)
    (folder / "images" / "b").mkdir()
    for cls in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / "images" / cls / "0.png")
    seeds["image_folder"] = folder / "images" / "a" / "0.png"
    seeds["plan"] = folder / "plan.yaml"
    seeds["plan"].write_text("default: int8\nlayers:\n  conv1: fp32\n")
    seeds["calib_cache"] = folder / "calibration.json"
    seeds["calib_cache"].write_text(
        json.dumps(
            {
                "schema": "deploy-robust/calibration",
                "float_graph_sha256": "0" * 64,
                "tensors": {"t": {"low": 0.0, "high": 1.5}},
            }
        )
    )
    seeds["onnx_graph"] = folder / "graph.onnx"
    seeds["onnx_graph"].write_bytes(bundle.model_path.read_bytes())
    calib = Dataset(rng.integers(0, 255, (16, 1, 8, 8), dtype=np.uint8), np.arange(16) % 10, "fuzz", 255.0)
    int8 = export_bundle(
        load_model(seeds["checkpoint"]),
        folder / "bundle-int8",
        ExportOptions("int8", weight_rounding="nearest", calibration=CalibrationOptions(n=16)),
        calib=calib,
    )
    seeds["onnx_qdq_graph"] = folder / "graph-int8.onnx"
    seeds["onnx_qdq_graph"].write_bytes(int8.model_path.read_bytes())
    (folder / "tune-cache").mkdir(mode=0o700)
    seeds["tune_cache"] = folder / "tune-cache" / "measurements.json"
    Cache(seeds["tune_cache"]).put("latency:int8:b1", TUNE_ENTRIES["latency:int8:b1"])
    Cache(seeds["tune_cache"]).put("verify:int8:quick", TUNE_ENTRIES["verify:int8:quick"])
    resume = BatchCheckpoint(folder / "bundle", RESUME_SETTINGS, enabled=True)
    resume.save(0, RESUME_INPUTS, RESUME_RESULT)
    seeds["resume_batch"] = resume.dir / "batch-00000.npz"
    return seeds


def loaders(seeds: dict[str, Path]) -> dict[str, Callable[[Path], object]]:
    """What reads each format; the fuzzed file is written over the seed's path."""
    from calibrators.collect import SCHEMA as CALIB_SCHEMA, load_cache
    from deploy_robust.bundle import open_bundle
    from deploy_robust.data import load_dataset
    from deploy_robust.ingest import load_model
    from deploy_robust.model.loaded import SpecOverrides
    from deploy_robust.quant.plan import read_plan_file

    assert CALIB_SCHEMA == "deploy-robust/calibration"
    return {
        "checkpoint": lambda p: load_model(p),
        "torchscript": lambda p: load_model(p, overrides=SpecOverrides(shape=(1, 8, 8))),  # it records no input shape
        "exported_program": lambda p: load_model(p),
        "onnx": lambda p: load_model(p),
        "npz": lambda p: load_dataset(p),
        "cifar": lambda p: load_dataset(p.parent),
        "idx": lambda p: load_dataset(p),
        "image_folder": lambda p: load_dataset(p.parent.parent),
        "plan": lambda p: read_plan_file(p),
        "calib_cache": lambda p: load_cache(p, "0" * 64, ["t"]),
        "manifest": lambda p: open_bundle(p.parent),
        "onnx_graph": lambda p: load_model(p),
        "onnx_qdq_graph": lambda p: load_model(p),
        "tune_cache": _read_tune_cache,
        "resume_batch": _read_resume_batch,
    }


def _read_tune_cache(path: Path) -> None:
    """tune's measurements: an edited file is set aside whole, never read as measurements."""
    from deploy_robust.tune.measure import Cache

    values = Cache(path).values
    if values and values != TUNE_ENTRIES:
        raise ForgedEntryAccepted(f"an edited measurements.json was used: {str(values)[:120]}")


def _read_resume_batch(path: Path) -> None:
    """verify's resume batches: an edited batch file is recomputed, never reused."""
    from deploy_robust.verify.resume import BatchCheckpoint

    bundle = path.parent.parent.parent
    result = BatchCheckpoint(bundle, RESUME_SETTINGS, enabled=True).load(0, RESUME_INPUTS)
    if result is not None and (
        result.keys() != RESUME_RESULT.keys() or any(not np.array_equal(result[k], v) for k, v in RESUME_RESULT.items())
    ):
        raise ForgedEntryAccepted(f"an edited resume batch was reused: {result}")


def _edit(data: bytes, draw) -> bytes:
    kind = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert", "zero_run", "big_number"]))
    if not data:
        return draw(st.binary(max_size=64))
    at = draw(st.integers(0, len(data) - 1))
    if kind == "truncate":
        return data[:at]
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1 :]
    if kind == "overwrite":
        run = draw(st.binary(min_size=1, max_size=16))
        return data[:at] + run + data[at + len(run) :]
    if kind == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
    if kind == "zero_run":
        n = draw(st.integers(1, 64))
        return data[:at] + bytes(n) + data[at + n :]
    # a plausible size field: a huge little/big-endian integer, or a huge decimal in text formats
    value = draw(st.sampled_from([2**31 - 1, 2**32 - 1, 2**40, 10**9]))
    if data[:1] in (b"{", b"d") or data.isascii():
        return data[:at] + str(value).encode() + data[at:]
    return data[:at] + value.to_bytes(8, draw(st.sampled_from(["little", "big"]))) + data[at + 8 :]


def _pickle_edit(data: bytes, draw) -> bytes:
    """Rewrite one integer-carrying opcode of a pickle stream (a memo PUT/GET, a length, a size) with a huge value,
    keeping the stream parseable: what a forger aims at the unpickler's allocations."""
    import pickletools
    import struct

    try:
        ops = [
            (op.name, pos)
            for op, _, pos in pickletools.genops(data)
            if op.name in ("BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET", "BININT1", "BININT2", "BININT")
        ]
    except Exception:
        ops = []
    if not ops:
        return _edit(data, draw)
    name, pos = draw(st.sampled_from(ops))
    width = {"BINPUT": 1, "BINGET": 1, "BININT1": 1, "BININT2": 2, "LONG_BINPUT": 4, "LONG_BINGET": 4, "BININT": 4}[
        name
    ]
    value = draw(st.sampled_from([2**20, 2**28, 2**31 - 1, 2**32 - 1]))
    if name.endswith(("PUT", "GET")):
        code = b"r" if name.endswith("PUT") else b"j"  # LONG_BINPUT / LONG_BINGET
        return data[:pos] + code + struct.pack("<I", value) + data[pos + 1 + width :]
    return data[:pos] + b"J" + struct.pack("<i", min(value, 2**31 - 1)) + data[pos + 1 + width :]


def _edit_member(name: str, content: bytes, draw) -> bytes:
    if name.endswith((".pkl", ".debug_pkl")) and draw(st.booleans()):
        return _pickle_edit(content, draw)
    return _edit(content, draw)


def _mutate(data: bytes, draw) -> bytes:
    """Edit the bytes of the file, or of one member of a zip archive (then re-zip it); a pickled member
    (`data.pkl`, `constants.pkl`, `*.debug_pkl`) is picked half the time, and then edited opcode-wise half the time."""
    if data[:2] == b"PK" and draw(st.booleans()):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as src:
                entries = [(info, src.read(info)) for info in src.infolist()]
        except Exception:
            entries = []
        if entries:
            pickled = [i for i, (info, _) in enumerate(entries) if info.filename.endswith((".pkl", ".debug_pkl"))]
            index = (
                draw(st.sampled_from(pickled))
                if pickled and draw(st.booleans())
                else draw(st.integers(0, len(entries) - 1))
            )
            out = io.BytesIO()
            with zipfile.ZipFile(out, "w") as dst:
                for i, (info, content) in enumerate(entries):
                    dst.writestr(info, _edit_member(info.filename, content, draw) if i == index else content)
            return out.getvalue()
    if data[:1] == b"\x80" and draw(st.booleans()):  # a bare pickle stream (CIFAR batch)
        return _pickle_edit(data, draw)
    data = _edit(data, draw)
    for _ in range(draw(st.integers(0, 2))):
        data = _edit(data, draw)
    return data


_OPS = [
    "Conv",
    "Gemm",
    "MatMul",
    "Relu",
    "Add",
    "Mul",
    "Reshape",
    "Flatten",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "QuantizeLinear",
    "DequantizeLinear",
    "Softmax",
    "Transpose",
    "Concat",
    "Identity",
    "Loop",
    "If",
    "NoSuchOp",
]
_SIZES = [0, 1, 3, -1, 2**31 - 1, 2**40]


def _mutate_graph(data: bytes, draw) -> bytes:
    """One or two structural edits of a parsed ONNX model: an op swapped, a node dropped or duplicated, an input
    rewired, an initializer's dims, type or data changed, an attribute changed or dropped, the input shape, the
    opset. The result is a well-formed protobuf that reaches the graph checks and the ONNX->torch interpreter."""
    import onnx

    model = onnx.load_from_string(data)
    graph = model.graph
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(
            st.sampled_from(
                [
                    "op",
                    "drop",
                    "duplicate",
                    "rewire",
                    "dims",
                    "dtype",
                    "raw",
                    "attribute",
                    "drop_attribute",
                    "input_shape",
                    "opset",
                    "output",
                ]
            )
        )
        nodes, inits = graph.node, graph.initializer
        node = nodes[draw(st.integers(0, len(nodes) - 1))] if len(nodes) else None
        init = inits[draw(st.integers(0, len(inits) - 1))] if len(inits) else None
        if kind == "op" and node is not None:
            node.op_type = draw(st.sampled_from(_OPS))
        elif kind == "drop" and node is not None:
            nodes.remove(node)
        elif kind == "duplicate" and node is not None:
            nodes.add().CopyFrom(node)
        elif kind == "rewire" and node is not None and len(node.input):
            names = [n for other in nodes for n in other.output] + [i.name for i in inits] + ["", "missing"]
            node.input[draw(st.integers(0, len(node.input) - 1))] = draw(st.sampled_from(names))
        elif kind == "dims" and init is not None:
            dims = list(init.dims) or [1]
            dims[draw(st.integers(0, len(dims) - 1))] = draw(st.sampled_from(_SIZES))
            if draw(st.booleans()):
                dims.append(draw(st.sampled_from(_SIZES)))
            del init.dims[:]
            init.dims.extend(dims)
        elif kind == "dtype" and init is not None:
            init.data_type = draw(st.integers(0, 25))
        elif kind == "raw" and init is not None:
            raw = init.raw_data
            init.raw_data = raw[: draw(st.integers(0, len(raw)))] if raw else draw(st.binary(max_size=16))
        elif kind == "attribute" and node is not None and len(node.attribute):
            attr = node.attribute[draw(st.integers(0, len(node.attribute) - 1))]
            if len(attr.ints):
                attr.ints[draw(st.integers(0, len(attr.ints) - 1))] = draw(st.sampled_from(_SIZES))
            else:
                attr.i, attr.f = draw(st.sampled_from(_SIZES)), draw(st.sampled_from([0.0, -1.0, float("nan"), 1e30]))
            attr.type = draw(st.sampled_from([attr.type, 1, 2, 3, 7]))
        elif kind == "drop_attribute" and node is not None and len(node.attribute):
            del node.attribute[draw(st.integers(0, len(node.attribute) - 1))]
        elif kind == "input_shape" and len(graph.input):
            dims = graph.input[0].type.tensor_type.shape.dim
            if len(dims):
                dim = dims[draw(st.integers(0, len(dims) - 1))]
                if draw(st.booleans()):
                    dim.dim_value = draw(st.sampled_from([0, 1, 2**31 - 1, 2**40]))
                else:
                    dim.dim_param = "N"
        elif kind == "opset" and len(model.opset_import):
            model.opset_import[0].version = draw(st.sampled_from([1, 7, 10, 13, 21, 99]))
        elif kind == "output" and len(graph.output):
            graph.output[0].name = draw(st.sampled_from([graph.output[0].name, "missing", ""]))
    return model.SerializeToString()


def campaign(examples: int, seed: int, formats: list[str] | None = None) -> dict:
    """Run `examples` (scaled by WEIGHTS) mutated files through each loader; return counts and failures."""
    results = {"cases": 0, "failures": [], "by_format": {}}
    with tempfile.TemporaryDirectory() as tmp:
        seeds = write_seeds(Path(tmp))
        originals = {k: p.read_bytes() for k, p in seeds.items()}
        readers = loaders(seeds)
        for fmt in formats or list(WEIGHTS):
            path, original, reader = seeds[fmt], originals[fmt], readers[fmt]
            count = max(10, int(examples * WEIGHTS[fmt]))
            done = {"cases": 0, "failures": 0, "loaded": 0, "refused": 0}

            def check(data, path=path, original=original, reader=reader, done=done, fmt=fmt):
                mutated = (_mutate_graph if fmt in STRUCTURAL else _mutate)(original, data.draw)
                path.write_bytes(mutated[: 1 << 20])  # every input under 1 MB
                done["cases"] += 1
                try:
                    reader(path)
                    done["loaded"] += 1
                except UserError:
                    done["refused"] += 1
                except Exception as e:  # anything but the project's error type escaped
                    done["failures"] += 1
                    if len(results["failures"]) < 20:
                        results["failures"].append(
                            {
                                "format": fmt,
                                "error": f"{type(e).__name__}: {e}"[:300],
                                "at": traceback.extract_tb(e.__traceback__)[-1].filename,
                            }
                        )

            one = hypothesis_seed(seed)(
                settings(max_examples=count, deadline=None, database=None, suppress_health_check=list(HealthCheck))(
                    given(st.data())(lambda data: check(data))
                )
            )
            one()
            path.write_bytes(original)
            done["peak_rss_mib_after"] = round(peak_rss_mib())
            results["by_format"][fmt] = done
            results["cases"] += done["cases"]
    results["failure_count"] = sum(d["failures"] for d in results["by_format"].values())
    results["peak_rss_mib"] = peak_rss_mib()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--formats", help="comma-separated subset of " + ",".join(WEIGHTS))
    args = parser.parse_args(argv)
    import logging
    import warnings

    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    started = time.perf_counter()
    results = campaign(args.examples, args.seed, args.formats.split(",") if args.formats else None)
    results["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
