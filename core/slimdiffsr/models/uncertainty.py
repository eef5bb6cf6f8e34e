"""Latent uncertainty estimator U (method.md section 4.2, stage 0).

U looks at the LR latent ``z_L = 0.18215 * E(x_bic)`` and predicts where, and by how much, the
HR latent will differ: a mean correction ``r`` (so ``mu = z_L + r``) and a log-variance map ``s``.
Trained alone with the Jeffreys-prior likelihood (``slimdiffsr.losses.uncertainty``), then frozen;
the teacher turns ``s`` into a noise level and a timestep.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class ResidualBlock(nn.Module):
    """conv3 -> ReLU -> conv3 (no bias) plus a 1x1 shortcut (no bias) when widths differ."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.act = nn.ReLU()
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, bias=False)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.conv1(x))) + self.shortcut(x)


@dataclass
class UncertaintyOutput:
    """``mean`` = z_L + r, ``residual`` = r, ``logvar`` = s = log sigma^2, clamped to the range."""

    mean: torch.Tensor
    residual: torch.Tensor
    logvar: torch.Tensor


class UncertaintyEstimator(ModelMixin, ConfigMixin):
    """U: RB(C->w), RB(w->w) x ``num_blocks``, RB(w->C+Cs); split into r and s.

    Args:
        latent_channels: channels of the latent (4 for SD).
        hidden_channels: trunk width (64).
        num_blocks: middle blocks (3).
        logvar_channels: 1 (one variance per latent pixel, broadcast over channels) or
            ``latent_channels``.
        logvar_range: ``s`` is clamped to this range (``(-10, 10)``) so that ``exp(-s)`` stays finite.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 4,
        hidden_channels: int = 64,
        num_blocks: int = 3,
        logvar_channels: int = 1,
        logvar_range: tuple[float, float] = (-10.0, 10.0),
    ) -> None:
        super().__init__()
        if logvar_channels not in (1, latent_channels):
            raise ValueError(
                f"logvar_channels must be 1 or latent_channels ({latent_channels}), "
                f"got {logvar_channels}"
            )
        if logvar_range[0] >= logvar_range[1]:
            raise ValueError(f"logvar_range must be increasing, got {logvar_range}")
        blocks = [ResidualBlock(latent_channels, hidden_channels)]
        blocks += [ResidualBlock(hidden_channels, hidden_channels) for _ in range(num_blocks)]
        blocks.append(ResidualBlock(hidden_channels, latent_channels + logvar_channels))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, z_lr: torch.Tensor) -> UncertaintyOutput:
        """(B, C, h, w) scaled LR latent -> mean (B, C, h, w) and log-variance (B, Cs, h, w)."""
        c = self.config.latent_channels
        out = self.blocks(z_lr)
        r, s = out[:, :c], out[:, c:]
        lo, hi = self.config.logvar_range
        return UncertaintyOutput(mean=z_lr + r, residual=r, logvar=s.clamp(lo, hi))


__all__ = ["ResidualBlock", "UncertaintyEstimator", "UncertaintyOutput"]
