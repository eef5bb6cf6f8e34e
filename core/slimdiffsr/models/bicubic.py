"""Bicubic upsampling as a model, so the baseline runs through exactly the engine's path."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimdiffsr.models.card import ModelCard


def bicubic_upsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Torch bicubic (a = -0.75, align_corners=False, no clamp), as the paper's pipeline uses."""
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


class BicubicSR(nn.Module):
    """LR [-1, 1] (B, C, h, w) -> bicubic SR [-1, 1] (B, C, s*h, s*w); any number of bands."""

    halo = 4  # the cubic kernel reaches 2 LR px; 4 keeps borders exact

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        if scale not in (2, 3, 4, 8):
            raise ValueError(f"bicubic scale must be 2, 3, 4 or 8, got {scale}")
        self.scale = scale
        self.card = ModelCard(
            name="bicubic",
            architecture="bicubic",
            scale=scale,
            bands=[],  # any bands
            value_contract={},  # uses the raster's natural contract
            description="Bicubic interpolation baseline (no learned weights).",
            license="MIT",
            halo=self.halo,
        )
        self.model_hash = f"bicubic-x{scale}"

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return bicubic_upsample(lr, self.scale)
