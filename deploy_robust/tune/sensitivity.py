"""Per-layer robustness sensitivities measured in memory: the torch model with one layer lowered, no export.

With only layer i lowered to precision p (`quant.lowered.LoweredLayer`: the export's weight grid, rounded to
nearest, and its input fake-quantized at the export calibrator's range on the same calibration images), each
point's margin z_y - max_{j != y} z_j under PGD (straight-through through the rounding) on a fixed sample of
calibration images, against the FP32 model's on the same sample (`measure.margin_drop` makes the drop of them). A layer costs one PGD run on the sample, about
what an exported single-layer bundle costs after its export and GPTQ, which this skips: on the CIFAR ResNet-18
that export was most of the sensitivities' time (`benchmarks/tune_sensitivity.py` has both, and the ranking of
the two on the same layers).

A per-layer GDWS option is measured the same way: the convolution replaced by its GDWS rewrite (and, at INT8, its
two convolutions rounded and their inputs fake-quantized), inside the same private copy.

Layers the torch model does not hold by name as a Conv2d or Linear (a model already GDWS-rewritten, an ONNX or
exported-program model whose layers are graph nodes) are not lowerable here; tune measures those from exported
bundles (and offers them no per-layer GDWS).
"""

from __future__ import annotations

import contextlib
import copy

import onnx
import torch

from deploy_robust.cpu import u8s8_saturates
from deploy_robust.data import Dataset
from deploy_robust.exporters.profiles import get_profile
from deploy_robust.ingest import LoadedModel
from deploy_robust.tune.lowered import (
    LOWERABLE,
    input_ranges,
    reads_moved_data,
    rounded_layer,
    shipped_layers,
    swapped,
)
from deploy_robust.transforms.gdws.layer import GDWSConv2d
from deploy_robust.transforms.gdws.network import gdws_conv
from deploy_robust.tune.measure import attacked_margins
from deploy_robust.tune.space import GDWS_PARTS
from deploy_robust.verify import ThreatModel

CALIBRATION_IMAGES = 256  # as many as tune's exports calibrate on (CalibrationOptions(n=256))
CALIBRATION_METHOD = "mse"  # the export's default calibrator
LOWERING_VERSION = 2  # in cache keys: a change to how a layer is lowered measures every layer again


class InMemoryLowering:
    """A private copy of the model whose layers are lowered one at a time; calibrated once, on first use."""

    def __init__(
        self,
        loaded: LoadedModel,
        fp32_graph: onnx.ModelProto,
        profile_name: str,
        calib: Dataset,
        int8_weights: str = "auto",
        uniform: dict[str, tuple[str, onnx.ModelProto]] | None = None,
    ) -> None:
        """`uniform`: precision -> (a content key, the graph) of the uniform bundles already exported; a layer
        they lower is lowered here with their weights and input quantizer (GPTQ's rounding included), the others
        are rounded to nearest on the export's grid."""
        if int8_weights == "auto":
            int8_weights = "reduced" if u8s8_saturates() else "full"
        self.profile = get_profile(profile_name, int8_weights if profile_name == "ort-cpu" else "full")
        self.reads_moved_data = reads_moved_data(fp32_graph, self.profile)
        self.module = copy.deepcopy(loaded.module).eval()
        self.model = LoadedModel(self.module, loaded.spec, loaded.source).reference().eval()
        self.calib = calib.take(CALIBRATION_IMAGES)
        self._ranges: dict[str, tuple[float, float]] | None = None
        self.shipped = {p: (key, shipped_layers(graph, fp32_graph)) for p, (key, graph) in (uniform or {}).items()}

    def lowerable(self, name: str) -> bool:
        """Whether layer `name` (as the plan names it) is a Conv2d or Linear of the torch model."""
        if name not in self.reads_moved_data:
            return False
        try:
            return isinstance(self.module.get_submodule(name), LOWERABLE)
        except AttributeError:
            return False

    def grid(self, name: str, precision: str) -> str:
        """Which weights layer `name` gets at `precision`: a uniform bundle's (by its key), or rounded here."""
        key, layers = self.shipped.get(precision, ("", {}))
        return f"shipped-{key}" if name in layers else "nearest"

    def ranges(self) -> dict[str, tuple[float, float]]:
        if self._ranges is None:
            layers = {n: m for n, m in self.module.named_modules() if isinstance(m, LOWERABLE)}
            self._ranges = self._input_ranges(layers)
        return self._ranges

    def _input_ranges(self, layers: dict[str, torch.nn.Module]) -> dict[str, tuple[float, float]]:
        """The range the export's calibrator picks for each of `layers`' inputs, the model as it stands now."""
        images = torch.from_numpy(next(self.calib.batches(len(self.calib)))[0])
        return input_ranges(self.model, layers, images, CALIBRATION_METHOD, self.profile.signed_activations)

    def margins(
        self,
        name: str | None,
        precision: str,
        sample: Dataset,
        threat: ThreatModel,
        metric: str,
        seed: int = 0,
        *,
        gdws_allocation: list[int] | None = None,
    ) -> list[float]:
        """`attacked_margins` of the model with layer `name` at `precision` (None: the FP32 model itself); with
        `gdws_allocation`, the layer rewritten by GDWS with that allocation first (`gdws_layer`)."""
        return self.margins_each(name, precision, sample, threat, (metric,), seed, gdws_allocation=gdws_allocation)[
            metric
        ]

    def margins_each(
        self,
        name: str | None,
        precision: str,
        sample: Dataset,
        threat: ThreatModel,
        metrics: tuple[str, ...],
        seed: int = 0,
        *,
        gdws_allocation: list[int] | None = None,
    ) -> dict[str, list[float]]:
        """`margins` for each of `metrics`, the layer lowered once for all of them (a GDWS-INT8 rewrite calibrates
        its inputs' ranges on the calibration images each time it is made)."""
        replacement = self._lowered_layer(name, precision, gdws_allocation)
        with contextlib.nullcontext() if replacement is None else swapped(self.module, name, replacement):
            return {metric: attacked_margins(self.model, sample, threat, metric, seed) for metric in metrics}

    def _lowered_layer(
        self, name: str | None, precision: str, gdws_allocation: list[int] | None
    ) -> torch.nn.Module | None:
        """What layer `name` becomes at `precision` (rewritten by GDWS first, with `gdws_allocation`); None where
        nothing is lowered (name None, or fp32 without a rewrite)."""
        if gdws_allocation is not None:
            return self.gdws_layer(name, gdws_allocation, precision)
        if name is None or precision == "fp32":
            return None
        layer = self.module.get_submodule(name)
        shipped = self.shipped.get(precision, ("", {}))[1].get(name)
        if shipped is not None:
            return shipped.lowered(layer)
        moved = self.reads_moved_data[name]
        return rounded_layer(layer, precision, self.profile, self.ranges().get(name), reads_moved_data=moved)

    def gdws_layer(self, name: str, allocation: list[int], precision: str) -> GDWSConv2d:
        """Convolution `name` rewritten by GDWS with `allocation` (the BatchNorm after it stays, unfolded: per
        output channel that rounds as the folded graph does), its depthwise and pointwise convolutions at
        `precision`: rounded to nearest on the export's grid, each input quantized at the range the export's
        calibrator picks with the rewritten layer in place."""
        rewritten = gdws_conv(self.module.get_submodule(name), allocation)
        if precision == "fp32":
            return rewritten
        parts = {part: getattr(rewritten, part) for part in GDWS_PARTS}
        with swapped(self.module, name, rewritten):
            ranges = self._input_ranges(parts)
        for part, conv in parts.items():
            setattr(rewritten, part, rounded_layer(conv, precision, self.profile, ranges[part]))
        return rewritten
