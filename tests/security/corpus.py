"""A corpus of malicious files, one per way a format we read could run code, generated on the fly.

No payload is committed: each case is written by `build(folder)`. Every payload, if it ever ran,
would create the file `folder/PWNED` (by unpickling `open(marker, "w")`, or by importing a
Python file that writes it), so a test only has to check that the marker never appears.

    python -m tests.security.corpus OUT_DIR     # writes the corpus and lists the cases
"""

from __future__ import annotations

import io
import json
import pickle
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

MARKER = "PWNED"


class Payload:
    """Unpickling this object calls open(marker, "w"): proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@dataclass
class Case:
    name: str
    kind: str  # model | dataset | plan
    command: list[str]  # CLI arguments, with the case's own paths filled in
    message: str  # regex the one-line error must match


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)).eval()


def _exported_program(path: Path) -> None:
    program = torch.export.export(_tiny(), (torch.zeros(1, 1, 8, 8),))
    torch.export.save(program, str(path))


def _rewrite_zip(path: Path, edit: Callable[[str, bytes], bytes | None], extra: dict[str, bytes] | None = None) -> None:
    """Copy the zip at `path` entry by entry through `edit` (None drops an entry), adding `extra`."""
    with zipfile.ZipFile(path) as src:
        entries = [(info.filename, src.read(info)) for info in src.infolist()]
    root = entries[0][0].split("/", 1)[0]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for name, data in entries:
            new = edit(name, data)
            if new is not None:
                dst.writestr(name, new)
        for stem, data in (extra or {}).items():
            dst.writestr(f"{root}/{stem}", data)


def _pickled(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save(Payload(marker), buffer)
    return buffer.getvalue()


def _pt2_sample_inputs(path: Path, marker: Path) -> None:
    _exported_program(path)
    _rewrite_zip(path, lambda name, data: _pickled(marker) if "data/sample_inputs/" in name else data)


def _pt2_pickled_weight(path: Path, marker: Path) -> None:
    _exported_program(path)

    def edit(name: str, data: bytes) -> bytes:
        if name.endswith("_weights_config.json"):
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        if name.endswith("data/weights/weight_0"):
            return _pickled(marker)
        return data

    _rewrite_zip(path, edit)


def _pt2_opaque_constant(path: Path, marker: Path) -> None:
    _exported_program(path)

    def edit(name: str, data: bytes) -> bytes:
        if name.endswith("_constants_config.json"):
            return json.dumps(
                {
                    "config": {
                        "evil": {
                            "path_name": "opaque_obj_0",
                            "is_param": False,
                            "use_pickle": True,
                            "tensor_meta": None,
                        }
                    }
                }
            ).encode()
        return data

    _rewrite_zip(path, edit, {"data/constants/opaque_obj_0": pickle.dumps(Payload(marker))})


def _helper_file(folder: Path, marker: Path) -> Path:
    helper = folder / "helper.py"
    helper.write_text(
        f"open({str(marker)!r}, 'w').write('code ran')\n"
        "import torch\n\ndef factory(num_classes=10):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, num_classes))\n"
    )
    return helper


def _metadata_model(path: Path, key: str, marker: Path, relative: bool) -> None:
    helper = _helper_file(path.parent, marker)
    arch = f"{helper.name if relative else helper}:factory"
    state = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).state_dict()
    spec = {"shape": [1, 8, 8], "num_classes": 10, "normalization": None}
    config = {"arch": arch, "input": spec, "training": {}}
    if key == "deploy_robust_gdws":
        config = {"arch": arch, "input": spec, "plan": {"layers": []}}
    torch.save({key: config, "state_dict": state}, path)


def build(folder: str | Path) -> list[Case]:
    """Write every malicious file under `folder`; return the cases that exercise them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / MARKER
    cases: list[Case] = []
    out = str(folder / "out")

    def model(name: str, write: Callable[[Path], None], message: str, *extra: str) -> None:
        path = folder / name
        write(path)
        cases.append(Case(f"model:{name}", "model", ["export", str(path), "-o", out, *extra], message))

    model("legacy_pickle.pt", lambda p: p.write_bytes(pickle.dumps(Payload(marker), protocol=2)), "--trust-pickle")
    model("zip_pickle.pt", lambda p: torch.save(Payload(marker), p), "--trust-pickle")
    model("whole_module.pt", lambda p: torch.save(_tiny(), p), "pickled Python object")
    model("sample_inputs.pt2", lambda p: _pt2_sample_inputs(p, marker), "sample_inputs.*--trust-pickle")
    model("pickled_weight.pt2", lambda p: _pt2_pickled_weight(p, marker), "pickled Python object.*--trust-pickle")
    model("opaque_constant.pt2", lambda p: _pt2_opaque_constant(p, marker), "pickled Python object.*--trust-pickle")
    for key, label in (("deploy_robust_model", "trained"), ("deploy_robust_gdws", "gdws")):
        for relative in (True, False):
            sub = folder / f"{label}_{'relative' if relative else 'absolute'}"
            sub.mkdir(exist_ok=True)
            path = sub / "model.pt"
            _metadata_model(path, key, marker, relative)
            cases.append(
                Case(
                    f"model:{label}-metadata-{'relative' if relative else 'absolute'}-code",
                    "model",
                    ["info", str(path)],
                    "runs that file.*--trust-code",
                )
            )

    def dataset(name: str, path: Path, message: str) -> None:
        cases.append(
            Case(
                f"dataset:{name}",
                "dataset",
                ["eval", str(folder / "plain.pt"), "--arch", "digits_cnn", "--data", str(path)],
                message,
            )
        )

    from deploy_robust import zoo

    torch.save(zoo.get("digits_cnn").build().state_dict(), folder / "plain.pt")
    npz = folder / "objects.npz"
    with zipfile.ZipFile(npz, "w") as z:
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, np.array([Payload(marker)], dtype=object), allow_pickle=True)
        z.writestr("x.npy", buffer.getvalue())
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, np.zeros(1, np.int64))
        z.writestr("y.npy", buffer.getvalue())
    dataset("object-array.npz", npz, "Python objects")
    cifar = folder / "cifar"
    cifar.mkdir(exist_ok=True)
    (cifar / "test_batch").write_bytes(pickle.dumps(Payload(marker), protocol=2))
    dataset("cifar-batch-pickle", cifar, "refusing to load")

    plan = folder / "plan.yaml"
    plan.write_text(f"default: !!python/object/apply:builtins.open [{str(marker)!r}, w]\n")
    cases.append(
        Case(
            "plan:yaml-python-tag",
            "plan",
            [
                "export",
                str(folder / "plain.pt"),
                "--arch",
                "digits_cnn",
                "--precision",
                "mixed",
                "--plan",
                str(plan),
                "--calib",
                "digits:train",
                "-o",
                out,
            ],
            "not valid YAML",
        )
    )
    return cases


if __name__ == "__main__":
    for case in build(sys.argv[1] if len(sys.argv) > 1 else "malicious-corpus"):
        print(f"{case.name:45s} deploy-robust {' '.join(case.command)}")
