"""Resolve `--arch`: a built-in zoo name, or `path/to/file.py:factory` from the user's own code.

Importing `file.py` runs it. A name typed on the command line is the user's own choice; an
architecture *recorded in a model file* (train/dq/gdws metadata) is not: a downloaded folder
with `model.pt` and `helper.py` must not run `helper.py` on `info`. `CodeTrust` says when a
recorded code file may be imported: when the same file is named with `--arch`, or with
`--trust-code`.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch import nn

from deploy_robust import zoo
from deploy_robust.errors import UserError
from deploy_robust.spec import InputSpec


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable[[int | None], nn.Module]
    spec: InputSpec | None  # None for user code: the shape comes from flags
    train_spec: InputSpec | None = None  # what `train` normalizes with, where it differs from `spec`


@dataclass(frozen=True)
class CodeTrust:
    """What the user allowed: the `--arch` they typed (if any) and `--trust-code`."""

    arch: str | None = None
    trust_code: bool = False

    def resolve_recorded(self, recorded: str, source: str) -> Architecture:
        """The architecture a model file records; a code file only with the user's explicit opt-in."""
        if not isinstance(recorded, str) or not recorded:
            raise UserError(f"{source}: the recorded architecture is not a name")
        if is_code(recorded) and not (self.trust_code or self._names_same_file(recorded)):
            raise UserError(
                f"{source} names architecture code {recorded}; importing it runs that file, so it "
                f"was not imported: pass --arch {recorded} (or --trust-code) if you trust it"
            )
        return resolve(recorded)

    def _names_same_file(self, recorded: str) -> bool:
        if self.arch is None or not is_code(self.arch):
            return False
        (mine, my_factory), (theirs, factory) = self.arch.rsplit(":", 1), recorded.rsplit(":", 1)
        return my_factory == factory and Path(mine).resolve() == Path(theirs).resolve()


def is_code(arch: str) -> bool:
    """`path/to/file.py:factory` (user code, imported and run) rather than a built-in name."""
    return ":" in arch and arch.split(":", 1)[0].endswith(".py")


def resolve(arch: str) -> Architecture:
    """An architecture the user named (on the command line): a zoo name, or a code file it imports."""
    if is_code(arch):
        return _from_file(arch)
    entry = zoo.get(arch)
    return Architecture(entry.name, entry.build, entry.spec, entry.train_spec)


def _from_file(arch: str) -> Architecture:
    file_part, factory_name = arch.rsplit(":", 1)
    path = Path(file_part)
    if not path.is_file():
        raise UserError(f"--arch file not found: {path}")
    module_name = f"_deploy_robust_user_arch_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"cannot import {path} as Python code")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's code failed to import: report it in one line
        raise UserError(f"importing {path} failed: {type(e).__name__}: {e}") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise UserError(f"{path} has no callable '{factory_name}'")

    def build(num_classes: int | None) -> nn.Module:
        takes_classes = "num_classes" in inspect.signature(factory).parameters
        model = factory(num_classes=num_classes) if (takes_classes and num_classes) else factory()
        if not isinstance(model, nn.Module):
            raise UserError(f"{arch} returned a {type(model).__name__}, not a torch.nn.Module")
        return model

    return Architecture(f"{path.name}:{factory_name}", build, None)
