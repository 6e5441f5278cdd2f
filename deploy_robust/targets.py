"""The deployment targets, one row each: what `--target` means to export, tune, bench and verify.

A target names the Q/DQ export profile its bundle is written with (deploy_robust.exporters.profiles),
the runtime backend that runs it (deploy_robust.runtimes.BACKENDS; whether that is a GPU is the
backend's), and the per-layer precisions it runs natively (fp16 is emulated, slower than fp32, on the
CPU runtimes). `export --target` takes the targets that are their own profile; OpenVINO runs the
ort-cpu bundle. Adding a target is one row here (and its profile, if it needs a new one).
"""

from __future__ import annotations

from dataclasses import dataclass

from deploy_robust.errors import UserError


@dataclass(frozen=True)
class Target:
    name: str
    profile: str  # the Q/DQ export profile its bundle is written with
    backend: str  # the runtime that runs the bundle
    precisions: tuple[str, ...]  # the per-layer precisions it runs natively

    @property
    def exportable(self) -> bool:
        """Whether `export --target` takes it (a target that runs another target's bundle does not)."""
        return self.profile == self.name


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("ort-cpu", "ort-cpu", "ort-cpu", ("fp32", "int8", "int4")),
        Target("openvino", "ort-cpu", "openvino", ("fp32", "int8", "int4")),
        Target("ort-cuda", "ort-cuda", "ort-cuda", ("fp32", "fp16", "int8")),
        Target("tensorrt", "tensorrt", "tensorrt", ("fp32", "fp16", "int8")),
    )
}
EXPORT_TARGETS: tuple[str, ...] = tuple(name for name, t in TARGETS.items() if t.exportable)


def get_target(name: str, *, export: bool = False) -> Target:
    """The target called `name`; with `export`, only the ones `export --target` takes."""
    choices = EXPORT_TARGETS if export else tuple(TARGETS)
    if name not in choices:
        raise UserError(f"--target must be one of {', '.join(choices)}; got {name}")
    return TARGETS[name]
