"""GDWSConv2d: channel gather -> depthwise KxK -> pointwise 1x1, the drop-in for a rewritten nn.Conv2d.

Intermediate channel j convolves input channel `channel_index[j]` with its own KxK filter, so
input channel c gets g_c filters. The depthwise conv always has one filter per group
(groups = G): ONNX Runtime's CPU kernels have a fast path for exactly that shape, and a
gather plus that path measured faster than a depthwise conv with a channel multiplier
(`benchmarks/gdws_speed.py`, layout table). The gather is left out where it is the
identity (g_c = 1 for every channel: a classic depthwise-separable conv).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class GDWSConv2d(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        allocation: list[int] | np.ndarray,
        kernel_size: tuple[int, int],
        stride=1,
        padding=0,
        dilation=1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        allocation = [int(g) for g in allocation]
        if len(allocation) != in_channels or min(allocation) < 0 or sum(allocation) < 1:
            raise ValueError(
                f"allocation must give each of {in_channels} input channels g_c >= 0 filters, at least one in all"
            )
        self.in_channels, self.out_channels, self.allocation = in_channels, out_channels, allocation
        width = sum(allocation)
        index = torch.repeat_interleave(torch.arange(in_channels), torch.tensor(allocation))
        self.gathers = not (width == in_channels and bool(torch.equal(index, torch.arange(in_channels))))
        self.register_buffer("channel_index", index, persistent=False)
        self.depthwise = nn.Conv2d(width, width, kernel_size, stride, padding, dilation, groups=width, bias=False)
        self.pointwise = nn.Conv2d(width, out_channels, 1, bias=bias)

    @property
    def width(self) -> int:
        """G, the number of depthwise filters."""
        return self.depthwise.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gathers:
            x = x.index_select(1, self.channel_index)
        return self.pointwise(self.depthwise(x))

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> G={self.width} -> {self.out_channels}, gather={self.gathers}"

    @classmethod
    def like(cls, conv: nn.Conv2d, allocation: list[int] | np.ndarray) -> "GDWSConv2d":
        """An (untrained) GDWS layer with `conv`'s geometry and the given allocation."""
        return cls(
            conv.in_channels,
            conv.out_channels,
            allocation,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            bias=conv.bias is not None,
        )
