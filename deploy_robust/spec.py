"""InputSpec: what a classifier takes and returns, carried from ingestion into the bundle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deploy_robust import limits
from deploy_robust.errors import UserError


@dataclass(frozen=True)
class InputSpec:
    """Shape (C, H, W) of one image, its value range, normalization and the class count.

    Exported engines always take images in `value_range` (default [0, 1]); `mean`/`std`
    are the normalization the model expects on top of that, which the exporter folds
    into the graph. `mean`/`std` are None when the model normalizes by itself or not at all.
    """

    shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    value_range: tuple[float, float] = (0.0, 1.0)
    labels: tuple[str, ...] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or any(int(d) <= 0 for d in self.shape):
            raise UserError(f"input shape must be three positive sizes C,H,W; got {self.shape}")
        if (
            max(self.shape) > limits.MAX_DIM
            or self.shape[0] * self.shape[1] * self.shape[2] > limits.MAX_INPUT_ELEMENTS
        ):
            raise UserError(
                f"input shape {'x'.join(map(str, self.shape))} is larger than deploy-robust handles "
                f"(each size <= {limits.MAX_DIM}, C*H*W <= {limits.MAX_INPUT_ELEMENTS})"
            )
        if self.num_classes < 2:
            raise UserError(f"a classifier needs at least 2 classes; got {self.num_classes}")
        if self.num_classes > limits.MAX_CLASSES:
            raise UserError(f"{self.num_classes} classes is more than deploy-robust handles ({limits.MAX_CLASSES})")
        channels = self.shape[0]
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and len(values) not in (1, channels):
                raise UserError(f"--{name} has {len(values)} values but the input has {channels} channels")
        for name, values in (("mean", self.mean), ("std", self.std)):
            for v in values or ():
                limits.finite_number(v, f"--{name} value", -1e6, 1e6)
        if self.std is not None and any(s <= 0 for s in self.std):
            raise UserError(f"--std values must be positive; got {self.std}")
        if (self.mean is None) != (self.std is None):
            object.__setattr__(self, "mean", self.mean or (0.0,))
            object.__setattr__(self, "std", self.std or (1.0,))

    @property
    def normalized(self) -> bool:
        return self.mean is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "layout": "NCHW",
            "dtype": "float32",
            "value_range": list(self.value_range),
            "num_classes": self.num_classes,
            "normalization": None if not self.normalized else {"mean": list(self.mean), "std": list(self.std)},
        }

    @classmethod
    def from_json(cls, doc: Any) -> "InputSpec":
        """The spec a manifest or model file records; every field type- and range-checked."""
        if not isinstance(doc, dict):
            raise UserError("the recorded input spec is not an object")
        shape, norm = doc.get("shape"), doc.get("normalization")
        if not isinstance(shape, list) or len(shape) != 3:
            raise UserError(f"the recorded input shape must be a list C,H,W; got {shape!r}")
        dims = tuple(limits.whole_number(d, "an input size", 1, limits.MAX_DIM) for d in shape)
        classes = limits.whole_number(doc.get("num_classes"), "num_classes", 2, limits.MAX_CLASSES)
        if norm is not None and not (
            isinstance(norm, dict) and all(isinstance(norm.get(k), list) and norm[k] for k in ("mean", "std"))
        ):
            raise UserError("the recorded normalization must be null or {mean: [...], std: [...]}")
        value_range = doc.get("value_range", [0.0, 1.0])
        if not isinstance(value_range, (list, tuple)) or len(value_range) != 2:
            raise UserError(f"the recorded value_range must be [low, high]; got {value_range!r}")
        low, high = (limits.finite_number(v, "value_range", -1e6, 1e6) for v in value_range)
        if not low < high:
            raise UserError(f"the recorded value_range must have low < high; got {value_range!r}")
        return cls(
            shape=dims,
            num_classes=classes,
            mean=tuple(limits.finite_number(v, "mean", -1e6, 1e6) for v in norm["mean"]) if norm else None,
            std=tuple(limits.finite_number(v, "std", -1e6, 1e6) for v in norm["std"]) if norm else None,
            value_range=(low, high),
        )

    def replace(self, **changes: Any) -> "InputSpec":
        fields = dict(
            shape=self.shape,
            num_classes=self.num_classes,
            mean=self.mean,
            std=self.std,
            value_range=self.value_range,
            labels=self.labels,
        )
        fields.update({k: v for k, v in changes.items() if v is not None})
        return InputSpec(**fields)
