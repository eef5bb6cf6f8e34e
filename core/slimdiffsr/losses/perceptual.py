"""Losses of the perceptual model (issue 16): detail from a teacher, faithfulness to the input.

- output distillation: L1 to the (precomputed) Real-ESRGAN output, the detail the student copies;
- reconstruction: L1 + LPIPS against the HR crop, which keeps it from copying the teacher's
  inventions where the HR disagrees;
- LR consistency: L1 between the area-downsampled SR and the LR input (what the trust layer's
  consistency figure measures), the guard against hallucination;
- adversarial: a small spectral-norm PatchGAN trained from scratch (no DINO backbone offline).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


def area_down(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Mean over scale x scale blocks (the consistency metric's downsampling)."""
    return F.avg_pool2d(x, scale)


def consistency_loss(sr: torch.Tensor, lr: torch.Tensor, scale: int) -> torch.Tensor:
    """Mean |area_down(SR) - LR|, same units as the inputs."""
    return (area_down(sr, scale) - lr).abs().mean()


class PatchDiscriminator(nn.Module):
    """70x70-style PatchGAN with spectral norm, ~0.7 M parameters; input [-1, 1] RGB.
    Returns a one-element list of logit maps (the multi-head interface of ``adversarial``)."""

    def __init__(self, channels: int = 3, width: int = 32) -> None:
        super().__init__()
        w = width
        layers: list[nn.Module] = [nn.Conv2d(channels, w, 4, 2, 1), nn.LeakyReLU(0.2)]
        for cin, cout, stride in ((w, 2 * w, 2), (2 * w, 4 * w, 2), (4 * w, 8 * w, 1)):
            layers += [spectral_norm(nn.Conv2d(cin, cout, 4, stride, 1)), nn.LeakyReLU(0.2)]
        layers.append(spectral_norm(nn.Conv2d(8 * w, 1, 4, 1, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.net(x)]


__all__ = ["PatchDiscriminator", "area_down", "consistency_loss"]
