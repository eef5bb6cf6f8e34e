"""Direction-separable convolution (DSC): the student's replacement for a ResNet's second 3x3 conv.

Vertical (3x1) and horizontal (1x3) depthwise kernels give three directional responses
(vertical, separable "diagonal" = horizontal after vertical, horizontal), weighted per image by a
gate and mixed by a 1x1 bottleneck. The horizontal kernel is shared by two paths. Names follow the
published checkpoint: ``h_conv`` is the (3, 1) kernel, ``v_conv`` the (1, 3) kernel.
"""

from __future__ import annotations

import torch
from torch import nn


class DirectionSeparableConv(nn.Module):
    """DSC(C -> C): ``1x1(1x1(w0*Kv(F) + w1*Kh(Kv(F)) + w2*Kh(F)))``, no bias, no activation."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        mid, hidden = int(channels / 4), channels // 8
        if mid < 1 or hidden < 1:
            raise ValueError(f"DSC needs at least 8 channels, got {channels}")
        self.channels = channels
        self.h_conv = nn.Sequential(
            nn.Conv2d(channels, channels, (3, 1), padding=(1, 0), groups=channels, bias=False)
        )
        self.v_conv = nn.Sequential(
            nn.Conv2d(channels, channels, (1, 3), padding=(0, 1), groups=channels, bias=False)
        )
        self.conv_reduce = nn.Conv2d(channels, mid, 1, bias=False)
        self.conv_expand = nn.Conv2d(mid, channels, 1, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, 3),
            nn.Sigmoid(),
        )

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Direction weights (B, 3) in (0, 1) from global average pooling."""
        return self.mlp(x.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.h_conv(x)
        b = self.v_conv(a)
        c = self.v_conv(x)
        w = self.gate(x)[:, :, None, None]
        mixed = w[:, 0:1] * a + w[:, 1:2] * b + w[:, 2:3] * c
        return self.conv_expand(self.conv_reduce(mixed))
