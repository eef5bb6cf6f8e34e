"""Total variation, used on the predicted noise-level map so that it stays piecewise smooth."""

from __future__ import annotations

import torch


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    """``mean|x[..., 1:, :] - x[..., :-1, :]| + mean|x[..., 1:] - x[..., :-1]|`` (anisotropic L1).

    Args:
        x: (B, C, h, w); a side of length 1 contributes 0.
    Returns:
        Scalar in x's dtype.
    """
    if x.ndim != 4:
        raise ValueError(f"tv_loss expects (B, C, h, w), got {tuple(x.shape)}")
    total = x.new_zeros(())
    if x.shape[-2] > 1:
        total = total + (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    if x.shape[-1] > 1:
        total = total + (x[..., 1:] - x[..., :-1]).abs().mean()
    return total


__all__ = ["tv_loss"]
