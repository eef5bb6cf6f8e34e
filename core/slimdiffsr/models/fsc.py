"""Frequency-separable convolution (FSC): the student's replacement for a ResNet's first 3x3 conv.

A depthwise 3x3 extracts a low band, a second depthwise 3x3 filters the residual (high band), and
a squeeze-excite style gate weights the two bands per image before a 1x1 bottleneck mixes
channels. Cost is O(C) per pixel for the depthwise part instead of O(C^2 * 9).
Attribute names are the published checkpoint keys (``low_branch.0``, ``mlp.2``, ``bottleneck.2``).
"""

from __future__ import annotations

import torch
from torch import nn


class FrequencySeparableConv(nn.Module):
    """FSC(Cin -> Cout): ``1x1(ReLU(1x1(w0*L + w1*H)))`` with ``L = DW(F)``, ``H = DW'(F - L)``."""

    def __init__(self, in_channels: int, out_channels: int, gate_hidden: int = 8) -> None:
        super().__init__()
        mid = int(in_channels / 4)
        if mid < 1:
            raise ValueError(f"FSC needs at least 4 input channels, got {in_channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.low_branch = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False)
        )
        self.high_branch = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False)
        )
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, gate_hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(gate_hidden, 2),
            nn.Sigmoid(),
        )
        self.bottleneck = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, 1, bias=False),
        )

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Band weights (B, 2) in (0, 1) from global average pooling."""
        return self.mlp(x.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.low_branch(x)
        high = self.high_branch(x - low)
        w = self.gate(x)[:, :, None, None]
        return self.bottleneck(w[:, 0:1] * low + w[:, 1:2] * high)
