"""Same model + seed -> byte-identical model.onnx, before and after a refactor.

Builds the same export matrix (every precision and target, calibration method and weight
rounding, GDWS, SAP, feature squeezing in both modes, a Defensive Quantization model, an EMPIR
ensemble at float and INT8 kernels) from a seeded, briefly trained digits CNN, with this checkout and with a base commit (checked out in a temporary git
worktree), then compares the sha256 of every model.onnx and manifest.json (less its tool versions and the
source's path) and the verify numbers of one quantized bundle and an EMPIR ensemble. Exit 1 on any difference.

    python tools/bundle_identity.py --base 6ea9b8b      # the commit before the redesign
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# (name, export arguments after the model path); the model is a seeded digits_cnn state_dict
MATRIX = [
    ("fp32", ["--precision", "fp32"]),
    ("fp16", ["--precision", "fp16"]),
    ("int8-ort-cpu", ["--precision", "int8", "--calib", "digits:train", "--calib-n", "128"]),
    ("int8-ort-cuda", ["--precision", "int8", "--target", "ort-cuda", "--calib", "digits:train", "--calib-n", "128"]),
    ("int8-tensorrt", ["--precision", "int8", "--target", "tensorrt", "--calib", "digits:train", "--calib-n", "128"]),
    ("int4", ["--precision", "int4", "--calib", "digits:train", "--calib-n", "128"]),
    (
        "int8-nearest",
        ["--precision", "int8", "--calib", "digits:train", "--calib-n", "128", "--weight-rounding", "nearest"],
    ),
    (
        "int8-percentile",
        ["--precision", "int8", "--calib", "digits:train", "--calib-n", "128", "--calib-method", "percentile"],
    ),
    ("gdws-fp32", ["--gdws-budget", "0.5"]),
    ("gdws-int8", ["--gdws-budget", "0.5", "--precision", "int8", "--calib", "digits:train", "--calib-n", "128"]),
    ("sap", ["--sap", "all", "--sap-seed", "3"]),
    ("squeeze-detect", ["--squeeze", "bits:4,median:2", "--squeeze-mode", "detect", "--calib", "digits:train"]),
    ("squeeze", ["--squeeze", "bits:4"]),
]

# Runs inside one checkout: seeded model, then every export of the matrix, then one verify.
WORKER = r"""
import hashlib, importlib.util, json, os, sys
from pathlib import Path
# exporters/, calibrators/ and kernels/ install as deploy_robust.* from the repository root: an editable
# install maps them to the main checkout, so bind them to this tree's folders before anything imports them
import deploy_robust
for sub in ("exporters", "calibrators", "kernels"):
    folder = Path(os.environ["TREE"]) / sub
    spec = importlib.util.spec_from_file_location(f"deploy_robust.{sub}", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    setattr(deploy_robust, sub, module)
    spec.loader.exec_module(module)
assert Path(deploy_robust.__file__).parent.parent == Path(os.environ["TREE"])
import torch
from deploy_robust import zoo
from deploy_robust.cli import main

from deploy_robust.data import load_dataset
from deploy_robust.train import train_classifier

out, matrix = Path(sys.argv[1]), json.loads(sys.argv[2])
torch.manual_seed(0)
net = zoo.get("digits_cnn").build()
train_classifier(net, load_dataset("digits:train"), epochs=3, seed=0)
model = out / "digits_cnn.pt"
torch.save(net.state_dict(), model)
quiet = ["--seed", "0", "--json"]
main(["dq", str(model), "--arch", "digits_cnn", "--bits", "4/4", "--epochs", "0", "--data", "digits:train",
      "-o", str(out / "dq.pt"), *quiet])
main(["ensemble", "--member", "w2a4", "--member", "fp32", "--member", "w2a4", "--arch", "digits", "--data",
      "digits:train", "--epochs", "1", "-o", str(out / "ens.pt"), *quiet])
jobs = [(name, [str(model), "--arch", "digits_cnn", *args]) for name, args in matrix]
jobs += [("dq-int8", [str(out / "dq.pt"), "--precision", "int8"]), ("empir", [str(out / "ens.pt")]),
         ("empir-int8", [str(out / "ens.pt"), "--precision", "int8"])]
result = {}
for name, args in jobs:
    code = main(["export", *args, "-o", str(out / name), *quiet])
    graph = out / name / "model.onnx"
    result[name] = hashlib.sha256(graph.read_bytes()).hexdigest() if code == 0 and graph.exists() else f"exit {code}"
    if code == 0:  # the manifest too, less what names this run's machine and folders
        manifest = json.loads((out / name / "manifest.json").read_text())
        manifest.pop("tools")
        manifest["source"].pop("file", None)
        result[name + ":manifest"] = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
main(["verify", str(out / "int8-ort-cpu"), "--data", "digits:test", "--eps", "0.05", "--n", "64", "--suite", "quick",
      "--no-sweep", "--no-resume", "--json"])
doc = json.loads((out / "int8-ort-cpu" / "verify.json").read_text())
result["verify"] = {k: doc[k] for k in ("clean_accuracy", "robust_accuracy")}
main(["verify", str(out / "empir-int8"), "--data", "digits:test", "--eps", "0.05", "--n", "32", "--suite", "quick",
      "--no-sweep", "--no-resume", "--json"])  # an ensemble: every majority of its members is attacked too
doc = json.loads((out / "empir-int8" / "verify.json").read_text())
result["verify-empir"] = {"robust_accuracy": doc["robust_accuracy"],
                          "attacks": {a["attack"]: a["robust_accuracy"] for a in doc["attacks"]}}
print("RESULT " + json.dumps(result))
"""


def _run(tree: Path, out: Path) -> dict:
    env = os.environ | {"PYTHONPATH": str(tree), "TREE": str(tree), "DEPLOY_ROBUST_HOME": str(out / ".home")}
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(out), json.dumps(MATRIX)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    line = next((text for text in done.stdout.splitlines() if text.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{tree}: the export matrix failed:\n{done.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", required=True, help="git revision to compare with")
    parser.add_argument("--out", type=Path, help="write the comparison as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base_tree = tmp / "base"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(base_tree), args.base], cwd=REPO, check=True, capture_output=True
        )
        try:
            (tmp / "a").mkdir(), (tmp / "b").mkdir()
            before, after = _run(base_tree, tmp / "a"), _run(REPO, tmp / "b")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=REPO, capture_output=True)
    rows = [(name, before.get(name), after.get(name)) for name in after]
    same = all(b == a for _, b, a in rows)
    for name, b, a in rows:
        shown = a if isinstance(a, dict) else str(a)[:16]
        print(f"{name:16s} {'same' if a == b else 'DIFFERENT'}  {shown}")
    if args.out:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        args.out.write_text(
            json.dumps(
                {
                    "base": args.base,
                    "head": head,
                    "identical": same,
                    "rows": [{"name": n, "before": b, "after": a} for n, b, a in rows],
                },
                indent=2,
            )
            + "\n"
        )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
