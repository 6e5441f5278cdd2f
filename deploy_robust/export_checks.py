"""The checks an export runs on the calibration images before it writes a bundle: both refuse a bundle that
would be silently wrong (exit 2, one line, nothing written).

- `check_normalization`: a state_dict for a generic built-in architecture (resnet18, ...) is taken to expect
  raw [0, 1] images. When it scores far better on the labelled images with the built-in's training
  normalization (CIFAR-10 mean/std) than without, the weights were trained behind it: the user is asked to say
  which, with both figures.
- `check_agreement`: the bundle's top-1 on ONNX Runtime against the loaded torch model's; under 50% agreement
  (an INT4 graph that lost the model, say) the export is refused with a hint. Only where the torch model is
  better than twice chance on the labels: an untrained model's top-1 is noise.
"""

from __future__ import annotations

import numpy as np
import torch

from deploy_robust import zoo
from deploy_robust.data import Dataset
from deploy_robust.errors import UserError
from deploy_robust.ingest import LoadedModel
from deploy_robust.normalize import with_normalization
from deploy_robust.runtimes.onnxruntime_runner import OnnxRuntimeRunner

CHECK_IMAGES = 256
MIN_AGREEMENT = 0.5
# the weights count as trained behind the normalization where it scores this much better than none: 20 points
# on 256 images is over 4 standard errors, and a model trained on raw inputs scores worse with it, not better
_CLEARLY_BETTER = 0.2


def _accuracy(module: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((module(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def check_normalization(loaded: LoadedModel, calib: Dataset | None) -> None:
    """Refuse a generic built-in's state_dict that scores far better with the built-in's training normalization
    than with none (the one in effect when the user passed no --mean/--std)."""
    entry = zoo.find(loaded.source.get("arch") or "")
    if calib is None or entry is None or entry.train_normalization is None or loaded.spec.normalized:
        return
    if loaded.source.get("format") != "state_dict":
        return  # a model file records its own normalization
    images = calib.take(CHECK_IMAGES)
    x, y = images.as_float(), images.labels
    raw = _accuracy(with_normalization(loaded.module, loaded.spec), x, y)
    mean, std = entry.train_normalization
    normalized = _accuracy(with_normalization(loaded.module, loaded.spec.replace(mean=mean, std=std)), x, y)
    chance = 1 / loaded.spec.num_classes
    if normalized > 2 * chance and normalized - raw > _CLEARLY_BETTER:
        as_list = lambda values: ",".join(f"{v:g}" for v in values)  # noqa: E731
        raise UserError(
            f"{loaded.source['file']}: on {len(images)} images of {calib.name} it scores {100 * raw:.1f}% on raw "
            f"[0, 1] inputs but {100 * normalized:.1f}% with {entry.name}'s CIFAR-10 normalization; say which it "
            f"was trained with: --mean {as_list(mean)} --std {as_list(std)}, or --mean 0 --std 1 for raw inputs"
        )


def check_agreement(model_bytes: bytes, loaded: LoadedModel, calib: Dataset | None, what: str) -> None:
    """Refuse a bundle whose engine agrees with the loaded torch model on under MIN_AGREEMENT of the images, where
    the torch model itself is better than twice chance on their labels (an untrained model's top-1 is noise)."""
    if calib is None:
        return
    images = calib.take(CHECK_IMAGES)
    x = images.as_float()
    with torch.no_grad():
        want = loaded.reference()(torch.from_numpy(x)).argmax(1).numpy()
    if float((want == images.labels).mean()) <= 2 / loaded.spec.num_classes:
        return
    runner = OnnxRuntimeRunner(model_bytes, fixed_batch=loaded.fixed_batch, optimization="basic")
    agreement = float((runner.infer(x).argmax(1) == want).mean())
    if agreement < MIN_AGREEMENT:
        raise UserError(
            f"the {what} graph agrees with the torch model on only {100 * agreement:.1f}% of {len(images)} "
            f"images of {calib.name}, so no bundle was written: try a higher --precision, or --min-agreement "
            "0.99 to keep the most sensitive layers in float"
        )
