"""Feature squeezing (Xu, Evans and Qi, NDSS 2018): input squeezers folded into the exported graph.

Squeezers act on [0, 1] images: bit-depth reduction to b bits (`bits:5`) and k x k median
smoothing (`median:2`, reflect padding, the lower median for even k). Two modes:

- squeeze: the classifier sees the squeezed input (a preprocessing defense);
- detect: the classifier sees the input as given, and a second graph output,
  `squeeze_score`, is the largest L1 distance between its softmax on the input and on each
  squeezed version; inputs scoring above a threshold (set on clean data for a chosen
  false-positive rate) are flagged as adversarial.

Bit-depth reduction is a Round in the graph (straight-through in the twin: BPDA); the median
is a TopK over the window's shifted copies (its gradient reaches the selected pixel).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import nn

from deploy_robust.errors import UserError
from deploy_robust.model.kind import ModelKind

SCORE_OUTPUT = "squeeze_score"


class BitDepth(nn.Module):
    def __init__(self, bits: int) -> None:
        super().__init__()
        if not 1 <= bits <= 8:
            raise UserError(f"bits:N squeezer needs 1 <= N <= 8; got {bits}")
        self.bits, self.levels = bits, float(2**bits - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * self.levels) / self.levels

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


class MedianSmoothing(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        if not 2 <= size <= 5:
            raise UserError(f"median:K squeezer needs 2 <= K <= 5; got {size}")
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.size
        before, after = (k - 1) // 2, k - 1 - (k - 1) // 2
        padded = _reflect_pad(_reflect_pad(x, before, after, -1), before, after, -2)
        h, w = x.shape[-2:]
        windows = torch.stack([padded[..., i : i + h, j : j + w] for i in range(k) for j in range(k)])
        return windows.sort(0).values[(k * k - 1) // 2]

    def extra_repr(self) -> str:
        return f"size={self.size}"


def _reflect_pad(x: torch.Tensor, before: int, after: int, dim: int) -> torch.Tensor:
    """Reflect padding (edge not repeated) by slices and a concat: exports at any opset
    (ONNX Pad's reflect mode changed at opset 18 and has no down-converter)."""
    n = x.shape[dim]
    left = [x.narrow(dim, i, 1) for i in range(before, 0, -1)]
    right = [x.narrow(dim, n - 1 - i, 1) for i in range(1, after + 1)]
    return torch.cat([*left, x, *right], dim=dim)


def parse_squeezers(text: str) -> list[nn.Module]:
    """'bits:5,median:2' -> [BitDepth(5), MedianSmoothing(2)]."""
    makers = {"bits": BitDepth, "median": MedianSmoothing}
    squeezers = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        kind, _, value = item.partition(":")
        if kind not in makers or not value.isdigit():
            raise UserError(f"--squeeze: expected items like bits:5 or median:2; got {item!r}")
        squeezers.append(makers[kind](int(value)))
    if not squeezers:
        raise UserError("--squeeze needs at least one squeezer, e.g. bits:5,median:2")
    return squeezers


class Squeezed(nn.Module):
    """The classifier on the input squeezed by every squeezer in turn."""

    def __init__(self, classifier: nn.Module, squeezers: list[nn.Module]) -> None:
        super().__init__()
        self.classifier, self.squeezers = classifier, nn.ModuleList(squeezers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for squeeze in self.squeezers:
            x = squeeze(x)
        return self.classifier(x)


class SqueezeDetector(nn.Module):
    """(logits on the input, max over squeezers of the L1 distance between softmaxes)."""

    extra_output_names = (SCORE_OUTPUT,)

    def __init__(self, classifier: nn.Module, squeezers: list[nn.Module]) -> None:
        super().__init__()
        self.classifier, self.squeezers = classifier, nn.ModuleList(squeezers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.classifier(x)
        probs = torch.softmax(logits, dim=1)
        distances = [(probs - torch.softmax(self.classifier(s(x)), dim=1)).abs().sum(1) for s in self.squeezers]
        score = distances[0]
        for distance in distances[1:]:
            score = torch.maximum(score, distance)  # elementwise Max: no ReduceMax opset-18 attribute in the graph
        return logits, score


def calibrate_threshold(detector: nn.Module, images: np.ndarray, fpr: float, batch_size: int = 256) -> float:
    """The score above which at most `fpr` of these clean images are flagged."""
    scores = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            scores.append(detector(torch.from_numpy(images[start : start + batch_size]))[1].numpy())
    return float(np.quantile(np.concatenate(scores), 1.0 - fpr, method="higher"))


def apply_squeezing(loaded, squeezers: str, mode: str = "squeeze", calib=None, fpr: float = 0.05):
    """`loaded` with feature squeezing folded in; the normalization moves inside the module so
    the squeezers see [0, 1] pixels. Detect mode needs clean `calib` data for its threshold."""
    if mode not in ("squeeze", "detect"):
        raise UserError(f"--squeeze-mode must be squeeze or detect; got {mode}")
    chosen = parse_squeezers(squeezers)
    classifier = loaded.reference()
    spec = replace(loaded.spec, mean=None, std=None)
    defense = {
        "kind": "feature_squeezing",
        "reference": "Xu, Evans and Qi, NDSS 2018",
        "mode": mode,
        "squeezers": [repr(s) for s in chosen],
    }
    if mode == "squeeze":
        module = Squeezed(classifier, chosen).eval()
    else:
        if calib is None:
            raise UserError("--squeeze-mode detect needs --calib DATA (clean images) to set its threshold")
        if not 0 < fpr < 1:
            raise UserError(f"--squeeze-fpr must be in (0, 1); got {fpr:g}")
        module = SqueezeDetector(classifier, chosen).eval()
        images, _ = next(calib.take(min(len(calib), 1000)).batches(1000))
        defense |= {
            "threshold": calibrate_threshold(module, images, fpr),
            "target_fpr": fpr,
            "score_output": SCORE_OUTPUT,
            "threshold_set_on": f"{calib.name}, {len(images)} images",
        }
    return replace(loaded, module=module, spec=spec, defense=defense)


def describe_section(d: dict, stochastic: bool) -> str:
    threshold = (
        f"; flags inputs with score > {d['threshold']:.4g} (FPR {d['target_fpr']:g})" if "threshold" in d else ""
    )
    return f"feature squeezing ({d['mode']}): {', '.join(d['squeezers'])}{threshold}"


KIND = ModelKind("squeeze", describe=describe_section, defense_kind="feature_squeezing")
