"""Uncertainty-aware likelihood losses for the estimator U (method.md section 4.2).

With ``s = log sigma^2`` predicted per latent pixel, the negative log posterior of a Gaussian
likelihood ``z_H ~ N(mu, sigma^2)`` under the Jeffreys prior ``p(sigma) ~ 1/sigma`` is
``(z_H - mu)^2 / (2 sigma^2) + log sigma^2``. The prior's extra ``log sigma`` pulls sigma down
harder than plain NLL, so the optimum is ``sigma^2 = (z_H - mu)^2 / 2``.
"""

from __future__ import annotations

import torch


def _check(target: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> None:
    if target.shape != mean.shape:
        raise ValueError(f"target {tuple(target.shape)} and mean {tuple(mean.shape)} differ")
    if logvar.ndim != mean.ndim or logvar.shape[1] not in (1, mean.shape[1]):
        raise ValueError(
            f"logvar {tuple(logvar.shape)} must be (B, 1 or {mean.shape[1]}, h, w) like the mean"
        )


def jeffreys_loss(target: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``L_U = mean[0.5 * exp(-s) * (z_H - mu)^2 + s]``.

    Args:
        target: z_H, (B, C, h, w).
        mean: mu = z_L + r, (B, C, h, w).
        logvar: s, (B, 1 or C, h, w); a single channel broadcasts over C.
    Returns:
        Scalar, computed in float32.
    """
    _check(target, mean, logvar)
    s = logvar.float()
    err2 = (target.float() - mean.float()).pow(2)
    return (0.5 * torch.exp(-s) * err2 + s).mean()


def laplace_loss(target: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Laplace variant: ``mean[exp(-s) * |z_H - mu| + 2 s]`` (same shapes as :func:`jeffreys_loss`)."""
    _check(target, mean, logvar)
    s = logvar.float()
    return (torch.exp(-s) * (target.float() - mean.float()).abs() + 2.0 * s).mean()


UNCERTAINTY_LOSSES = {"jeffreys": jeffreys_loss, "laplace": laplace_loss}

__all__ = ["UNCERTAINTY_LOSSES", "jeffreys_loss", "laplace_loss"]
