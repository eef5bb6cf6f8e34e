"""Blur kernels: anisotropic/generalised/plateau Gaussians, sinc, and their random sampling."""

from __future__ import annotations

import math

import torch

from slimdiffsr.data.degradation.config import (
    BlurConfig,
    SincConfig,
)
from slimdiffsr.data.degradation.draws import _bernoulli, _choice, _uniform


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return xx, yy


def _support_mask(sizes: torch.Tensor, grid: int) -> torch.Tensor:
    xx, yy = _grid(grid)
    half = (sizes.to(torch.float64) // 2).view(-1, 1, 1)
    return (xx.abs() <= half) & (yy.abs() <= half)


def anisotropic_kernels(
    sigma_x: torch.Tensor,
    sigma_y: torch.Tensor,
    rotation: torch.Tensor,
    beta: torch.Tensor | None = None,
    plateau: torch.Tensor | None = None,
    sizes: torch.Tensor | None = None,
    grid: int = 21,
) -> torch.Tensor:
    """Per-sample (generalised / plateau) bivariate Gaussian kernels, centred on a grid.

    With q = x^T Sigma^-1 x, Sigma = R(rotation) diag(sigma_x^2, sigma_y^2) R^T:
    Gaussian ``exp(-q/2)``; generalised ``exp(-q^beta/2)``; plateau ``1/(1+q^beta)``.
    Args: 1-D tensors of length B (sigmas in pixels, rotation in radians); ``plateau`` bool (B,);
    ``sizes`` odd kernel sizes (B,) (support outside is zero); ``grid`` odd padded size.
    Returns (B, grid, grid) float32 kernels summing to 1.
    """
    n = sigma_x.numel()
    sx = sigma_x.double().view(-1, 1, 1)
    sy = sigma_y.double().view(-1, 1, 1)
    th = rotation.double().view(-1, 1, 1)
    c, s = torch.cos(th), torch.sin(th)
    # Sigma^-1 = R diag(1/sx^2, 1/sy^2) R^T
    a = c * c / sx**2 + s * s / sy**2
    b = c * s * (1 / sx**2 - 1 / sy**2)
    d = s * s / sx**2 + c * c / sy**2
    xx, yy = _grid(grid)
    q = a * xx**2 + 2 * b * xx * yy + d * yy**2
    bt = torch.ones(n, 1, 1, dtype=torch.float64) if beta is None else beta.double().view(-1, 1, 1)
    qb = q.clamp_min(0).pow(bt)
    k = torch.exp(-0.5 * qb)
    if plateau is not None:
        k = torch.where(plateau.view(-1, 1, 1), 1.0 / (1.0 + qb), k)
    if sizes is not None:
        k = k * _support_mask(sizes, grid)
    return (k / k.sum(dim=(-2, -1), keepdim=True)).float()


def sinc_kernels(omega: torch.Tensor, sizes: torch.Tensor, grid: int = 21) -> torch.Tensor:
    """Per-sample circular low-pass (sinc) kernels ``omega J1(omega r) / (2 pi r)``.

    ``omega`` (B,) cut-off in radians per pixel, ``sizes`` (B,) odd support. Returns
    (B, grid, grid) float32 kernels summing to 1 (they have negative lobes: ringing).
    """
    xx, yy = _grid(grid)
    r = torch.sqrt(xx**2 + yy**2)
    w = omega.double().view(-1, 1, 1)
    safe_r = torch.where(r == 0, torch.ones_like(r), r)
    k = w * torch.special.bessel_j1(w * safe_r) / (2 * math.pi * safe_r)
    k = torch.where(r == 0, w**2 / (4 * math.pi), k)
    k = k * _support_mask(sizes, grid)
    return (k / k.sum(dim=(-2, -1), keepdim=True)).float()


def identity_kernels(batch: int, grid: int = 21) -> torch.Tensor:
    """(B, grid, grid) delta kernels: the "no blur" kernel, so mixed batches stay batched."""
    k = torch.zeros(batch, grid, grid)
    k[:, grid // 2, grid // 2] = 1.0
    return k


def sample_blur_kernels(
    batch: int, cfg: BlurConfig, generator: torch.Generator | None, scale: int = 1
) -> torch.Tensor:
    """Draw B kernels per ``cfg``: type, size, sigmas, rotation, beta, sinc, skip (identity).

    Betas follow BasicSR: with odds 1/2 from [low, 1] else [1, high]. ``scale`` multiplies
    sigmas when ``cfg.sigma_unit == "lr"``. Returns (B, G, G) float32 on the CPU.
    """
    unit = float(scale) if cfg.sigma_unit == "lr" else 1.0
    if cfg.sigma_unit == "lr":
        grid = 2 * math.ceil(3 * max(cfg.sigma_x[1], cfg.sigma_y[1]) * unit) + 1
        sizes = torch.full((batch,), grid)
    else:
        grid = max(cfg.kernel_sizes)
        n_sizes = len(cfg.kernel_sizes)
        sizes = torch.tensor(cfg.kernel_sizes)[_choice(batch, [1 / n_sizes] * n_sizes, generator)]
    kind = [cfg.kernel_types[i] for i in _choice(batch, cfg.kernel_probs, generator).tolist()]
    sx = _uniform(batch, cfg.sigma_x, generator) * unit
    sy = _uniform(batch, cfg.sigma_y, generator) * unit
    rot = _uniform(batch, cfg.rotation, generator)
    lo_g, hi_g = cfg.beta_generalized
    lo_p, hi_p = cfg.beta_plateau
    first_half = _bernoulli(batch, 0.5, generator)
    bg = torch.where(
        first_half,
        _uniform(batch, (lo_g, min(1.0, hi_g)), generator),
        _uniform(batch, (max(1.0, lo_g), hi_g), generator),
    )
    bp = torch.where(
        first_half,
        _uniform(batch, (lo_p, min(1.0, hi_p)), generator),
        _uniform(batch, (max(1.0, lo_p), hi_p), generator),
    )
    iso = torch.tensor([t.endswith("iso") and not t.endswith("aniso") for t in kind])
    gen_ = torch.tensor([t.startswith("generalized") for t in kind])
    plat = torch.tensor([t.startswith("plateau") for t in kind])
    sy = torch.where(iso, sx, sy)
    rot = torch.where(iso, torch.zeros_like(rot), rot)
    beta = torch.where(gen_, bg, torch.where(plat, bp, torch.ones_like(bg)))
    k = anisotropic_kernels(sx, sy, rot, beta=beta, plateau=plat, sizes=sizes, grid=grid)
    use_sinc = _bernoulli(batch, cfg.sinc_prob, generator)
    omega = torch.where(
        sizes < 13,
        _uniform(batch, (math.pi / 3, math.pi), generator),
        _uniform(batch, (math.pi / 5, math.pi), generator),
    )
    if bool(use_sinc.any()):
        k = torch.where(use_sinc.view(-1, 1, 1), sinc_kernels(omega, sizes, grid), k)
    apply = _bernoulli(batch, cfg.prob, generator)
    return torch.where(apply.view(-1, 1, 1), k, identity_kernels(batch, grid))


def sample_sinc_kernels(
    batch: int, cfg: SincConfig, generator: torch.Generator | None
) -> torch.Tensor:
    """Draw B final-stage sinc kernels (identity with probability ``1 - cfg.prob``)."""
    grid = max(cfg.kernel_sizes)
    n_sizes = len(cfg.kernel_sizes)
    sizes = torch.tensor(cfg.kernel_sizes)[_choice(batch, [1 / n_sizes] * n_sizes, generator)]
    omega = _uniform(batch, cfg.omega, generator)
    apply = _bernoulli(batch, cfg.prob, generator)
    return torch.where(
        apply.view(-1, 1, 1), sinc_kernels(omega, sizes, grid), identity_kernels(batch, grid)
    )
