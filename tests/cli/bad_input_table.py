"""Every verb's bad inputs, as cases the tests run and as docs/trust.md's table (input -> message -> exit code).

`tests/cli/test_bad_input_table.py` runs each case through the real CLI (exit 2, one line, the
message) and checks that docs/trust.md holds exactly the table rendered from those runs. After
changing a case or a message, rewrite the page's block with:

    python -m tests.cli.bad_input_table --write
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

BEGIN, END = "<!-- bad-inputs:begin -->", "<!-- bad-inputs:end -->"


@dataclass(frozen=True)
class BadInput:
    verb: str
    what: str  # the input, as docs/trust.md names it
    args: tuple[str, ...]  # with {dir} (a scratch folder), {model}, {bundle} and {data} filled in


def _cases() -> list[BadInput]:
    export = ("export", "{model}", "--arch", "digits_cnn", "-o", "{dir}/out")
    verify = ("verify", "{bundle}", "--data", "{data}", "--n", "8", "--no-sweep")
    tune = (
        "tune",
        "{model}",
        "--arch",
        "digits_cnn",
        "--calib",
        "digits",
        "--data",
        "{data}",
        "--eps",
        "0.1",
        "-o",
        "{dir}/tuned",
    )
    return [
        BadInput("export", "model file that does not exist", ("export", "{dir}/absent.pt", "-o", "{dir}/out")),
        BadInput(
            "export",
            "truncated checkpoint",
            ("export", "{dir}/truncated.pt", "--arch", "digits_cnn", "-o", "{dir}/out"),
        ),
        BadInput("export", "pickled code in a checkpoint", ("export", "{dir}/evil.pt", "-o", "{dir}/out")),
        BadInput("export", "`--seed -1`", (*export, "--seed", "-1")),
        BadInput("export", "`--seed 2**70`", (*export, "--seed", str(2**70))),
        BadInput(
            "export", "`--percentile 150`", (*export, "--precision", "int8", "--calib", "digits", "--percentile", "150")
        ),
        BadInput(
            "export",
            "`--calib-cache` with an Inf range",
            (*export, "--precision", "int8", "--calib-cache", "{dir}/inf_cache.json"),
        ),
        BadInput(
            "export", "`-o` under a file", ("export", "{model}", "--arch", "digits_cnn", "-o", "{dir}/a_file/out")
        ),
        BadInput(
            "export",
            "YAML plan with wrong types",
            (*export, "--precision", "mixed", "--plan", "{dir}/plan.yaml", "--calib", "digits"),
        ),
        BadInput("info", "weights-only file recording code (`helper.py:factory`)", ("info", "{dir}/records_code.pt")),
        BadInput("info", "bundle whose model.onnx was swapped", ("info", "{dir}/swapped")),
        BadInput("info", "manifest declaring a batch of 10^9", ("info", "{dir}/huge_batch")),
        BadInput("eval", "truncated `.npz`", ("eval", "{bundle}", "--data", "{dir}/truncated.npz")),
        BadInput("eval", "`.npz` header declaring 5.7 GiB", ("eval", "{bundle}", "--data", "{dir}/huge.npz")),
        BadInput("eval", "`--min-accuracy 60`", ("eval", "{bundle}", "--data", "{data}", "--min-accuracy", "60")),
        BadInput("verify", "`--eps 8` (L-inf)", (*verify, "--eps", "8")),
        BadInput("verify", "`--eps nan`", (*verify, "--eps", "nan")),
        BadInput(
            "verify",
            "labels out of the model's range",
            ("verify", "{bundle}", "--data", "{dir}/labels.npz", "--eps", "0.1", "--n", "8", "--no-sweep"),
        ),
        BadInput(
            "verify",
            "bundle with a symlinked `eps_curve.png`",
            ("verify", "{dir}/linked", "--data", "{data}", "--eps", "0.1"),
        ),
        BadInput("bench", "`--duration 0`", ("bench", "{bundle}", "--duration", "0")),
        BadInput("bench", "`--warmup -5`", ("bench", "{bundle}", "--warmup", "-5")),
        BadInput(
            "gdws",
            "both `--beta` and `--budget`",
            ("gdws", "{model}", "--arch", "digits_cnn", "--beta", "1", "--budget", "0.5"),
        ),
        BadInput(
            "train",
            "unknown `--arch`",
            ("train", "--arch", "no_such_net", "--data", "digits", "--adv", "none", "-o", "{dir}/t.pt"),
        ),
        BadInput(
            "dq",
            "`--bits 9/9`",
            ("dq", "{model}", "--arch", "digits_cnn", "--bits", "9/9", "--data", "digits", "-o", "{dir}/d.pt"),
        ),
        BadInput(
            "ensemble",
            "member spec that does not parse",
            ("ensemble", "--member", "x", "--arch", "digits", "-o", "{dir}/e.pt"),
        ),
        BadInput(
            "tune",
            "a target that cannot run a precision (`--target tensorrt --space int4`)",
            (*tune, "--target", "tensorrt", "--space", "int4"),
        ),
        BadInput("tune", "`--max-robust-drop 1.5`", (*tune, "--max-robust-drop", "1.5")),
        BadInput("tune", "`--pin` naming a layer the model does not have", (*tune, "--pin", "conv9=fp32")),
        BadInput("tune", "`--pin 0=int3`", (*tune, "--pin", "0=int3")),
        BadInput("tune", "`--time-budget 30x`", (*tune, "--time-budget", "30x")),
        BadInput(
            "demo",
            "`--model` that does not exist",
            (
                "demo",
                "--model",
                "{dir}/absent.pt",
                "--arch",
                "digits_cnn",
                "--data",
                "digits:test",
                "--out",
                "{dir}/demo",
            ),
        ),
    ]


def write_inputs(folder: Path) -> dict[str, str]:
    """The files the cases name, written under `folder`; returns the placeholders' values."""
    from deploy_robust import zoo
    from deploy_robust.export import export_bundle
    from deploy_robust.ingest import load_model

    model = folder / "digits.pt"
    torch.save(zoo.get("digits_cnn").build().state_dict(), model)
    bundle = export_bundle(load_model(model, "digits_cnn"), folder / "bundle")
    (folder / "truncated.pt").write_bytes(model.read_bytes()[:900])
    (folder / "evil.pt").write_bytes(b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    (folder / "inf_cache.json").write_text(
        '{"schema": "deploy-robust/calibration", "float_graph_sha256": "x", '
        '"tensors": {"a": {"low": 0, "high": Infinity}}}'
    )
    (folder / "a_file").write_text("")
    (folder / "plan.yaml").write_text("default: int8\nlayers: [conv1, fp32]\n")
    torch.save(
        {
            "deploy_robust_model": {
                "arch": "helper.py:factory",
                "input": bundle.manifest.to_json()["input"],
                "training": {},
            },
            "state_dict": {},
        },
        folder / "records_code.pt",
    )
    for name in ("swapped", "huge_batch", "linked"):
        shutil.copytree(bundle.path, folder / name)
    (folder / "swapped" / "model.onnx").write_bytes((folder / "swapped" / "model.onnx").read_bytes() + b"\0")
    manifest = folder / "huge_batch" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"batch": "dynamic"', '"batch": 1000000000'))
    (folder / "linked" / "eps_curve.png").symlink_to(folder / "a_file")
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((4, 1, 8, 8), np.uint8), y=np.zeros(4, np.int64))
    (folder / "truncated.npz").write_bytes(buffer.getvalue()[:300])
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (1_536_000_000,)})
    with zipfile.ZipFile(folder / "huge.npz", "w") as z:
        z.writestr("x.npy", header.getvalue() + b"\0" * 64)
        z.writestr("y.npy", header.getvalue())
    np.savez(folder / "labels.npz", x=np.zeros((8, 1, 8, 8), np.uint8), y=np.full(8, 12))
    return {"dir": str(folder), "model": str(model), "bundle": str(bundle.path), "data": "digits:test"}


def run_case(case: BadInput, values: dict[str, str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of the case through the CLI, in this process."""
    from deploy_robust.cli import main

    args = [a.format(**values) for a in case.args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as e:  # argparse
            code = int(e.code or 0)
    return code, out.getvalue(), err.getvalue()


def render(rows: list[tuple[BadInput, int, str]], folder: str) -> str:
    lines = [BEGIN, "| verb | input | message (stderr, one line) | exit |", "|---|---|---|---|"]
    for case, code, message in rows:
        shown = re.sub(re.escape(folder) + r"/?", "", message).replace("|", "\\|")
        shown = re.sub(r"pid\d+|[0-9a-f]{16,}", "…", shown)
        lines.append(f"| `{case.verb}` | {case.what} | `{shown}` | {code} |")
    return "\n".join(lines + [END])


def table() -> tuple[str, list[tuple[BadInput, int, str, str]]]:
    """Run every case; return the rendered table and the raw results."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp).resolve()
        values = write_inputs(folder)
        results = [(case, *run_case(case, values)) for case in _cases()]
        rows = [(case, code, err.strip()) for case, code, _, err in results]
        return render(rows, str(folder)), results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the block in docs/trust.md")
    args = parser.parse_args(argv)
    text, _ = table()
    if not args.write:
        print(text)
        return 0
    readme = Path(__file__).resolve().parents[2] / "docs" / "trust.md"
    doc = readme.read_text()
    start, end = doc.index(BEGIN), doc.index(END) + len(END)
    readme.write_text(doc[:start] + text + doc[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
