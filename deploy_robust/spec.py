"""InputSpec: what a classifier takes and returns, carried from ingestion into the bundle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
        if self.num_classes < 2:
            raise UserError(f"a classifier needs at least 2 classes; got {self.num_classes}")
        channels = self.shape[0]
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and len(values) not in (1, channels):
                raise UserError(f"--{name} has {len(values)} values but the input has {channels} channels")
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
    def from_json(cls, doc: dict[str, Any]) -> "InputSpec":
        norm = doc.get("normalization")
        return cls(
            shape=tuple(int(d) for d in doc["shape"]),
            num_classes=int(doc["num_classes"]),
            mean=tuple(norm["mean"]) if norm else None,
            std=tuple(norm["std"]) if norm else None,
            value_range=tuple(doc.get("value_range", (0.0, 1.0))),
        )

    def replace(self, **changes: Any) -> "InputSpec":
        fields = dict(shape=self.shape, num_classes=self.num_classes, mean=self.mean, std=self.std,
                      value_range=self.value_range, labels=self.labels)
        fields.update({k: v for k, v in changes.items() if v is not None})
        return InputSpec(**fields)
