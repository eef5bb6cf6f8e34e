"""Colour correction of SR output against the bicubic input (optional, outside the network)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def match_mean_std(sr: torch.Tensor, ref: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per image and channel: ``(sr - mean sr) / std sr * std ref + mean ref`` (unbiased std)."""
    dims = (-2, -1)
    s_mean, s_std = sr.mean(dims, keepdim=True), sr.std(dims, keepdim=True)
    r_mean, r_std = ref.mean(dims, keepdim=True), ref.std(dims, keepdim=True)
    return (sr - s_mean) / (s_std + eps) * r_std + r_mean


def atrous_low_pass(x: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """Low band after ``levels`` a-trous blurs (3x3 binomial, dilations 1, 2, 4, ...)."""
    k1 = torch.tensor([0.25, 0.5, 0.25], dtype=x.dtype, device=x.device)
    kernel = (k1[:, None] * k1[None, :]).expand(x.shape[1], 1, 3, 3).contiguous()
    for i in range(levels):
        d = 2**i
        x = F.conv2d(
            F.pad(x, (d, d, d, d), mode="replicate"), kernel, dilation=d, groups=x.shape[1]
        )
    return x


def match_wavelet(sr: torch.Tensor, ref: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """Keep SR's high band, take the reference's low band (wavelet colour fix)."""
    return sr - atrous_low_pass(sr, levels) + atrous_low_pass(ref, levels)


def color_correct(sr: torch.Tensor, ref: torch.Tensor, method: str | None) -> torch.Tensor:
    if method in (None, "none"):
        return sr
    if method == "adain":
        return match_mean_std(sr, ref)
    if method == "wavelet":
        return match_wavelet(sr, ref)
    raise ValueError(f"colour correction must be none, adain or wavelet, got {method!r}")
