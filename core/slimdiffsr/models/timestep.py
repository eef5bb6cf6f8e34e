"""From predicted uncertainty to a diffusion timestep (method.md section 4.3).

The teacher denoises in one step from a timestep that matches how unsure the LR latent is. SNR
alignment makes the noise level of timestep t, ``sigma_t = sqrt((1 - abar_t) / abar_t)``, equal to
the predicted std ``sigma_hat``. The predictor :class:`NoiseLevelPredictor` refines the analytic
guess ``log sigma_hat = s / 2`` from the estimator's log-variance ``s``; the inversion
:func:`sigma_to_timestep` then finds the *float* timestep whose noise level is ``sigma_hat`` by a
binary search in the ascending table of ``sigma_t`` and linear interpolation, so the timestep stays
differentiable with respect to ``sigma_hat`` (the predictor is trained through the UNet's
sinusoidal time embedding). Tables are float64 on the CPU and used in float32, so that casting a
model to half precision never coarsens the schedule.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

# ------------------------------------------------------------------------------------------------
# Schedule tables
# ------------------------------------------------------------------------------------------------


def scaled_linear_alphas_cumprod(
    num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
) -> torch.Tensor:
    """``alphas_cumprod`` of SD's ``scaled_linear`` schedule, float64 (the default teacher base)."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas**2, dim=0)


def sigmas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Noise levels ``sigma_t = sqrt((1 - abar_t) / abar_t)``: ascending, float64, index = t."""
    abar = alphas_cumprod.detach().to(torch.float64).cpu()
    if abar.ndim != 1 or abar.numel() < 2:
        raise ValueError(f"alphas_cumprod must be 1-D with >= 2 entries, got {tuple(abar.shape)}")
    sigmas = ((1.0 - abar) / abar).sqrt()
    if not bool((sigmas[1:] > sigmas[:-1]).all()):
        raise ValueError("the noise levels of alphas_cumprod are not strictly ascending")
    return sigmas


def alpha_bar_from_sigma(sigma: torch.Tensor) -> torch.Tensor:
    """``abar = 1 / (1 + sigma^2)``: the SNR-aligned signal level of noise level ``sigma``."""
    return 1.0 / (1.0 + sigma * sigma)


def _table(sigmas: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return sigmas.to(device=like.device, dtype=torch.float32)


def sigma_to_timestep(sigma: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Float timestep whose noise level is ``sigma`` (any shape), differentiable in ``sigma``.

    ``i = clamp(searchsorted(table, sigma) - 1, 0, T - 2)``; ``t = i + (sigma - s_i) / (s_{i+1} -
    s_i)``. ``sigma`` is first clamped to the table's range, so t lies in [0, T - 1] and the
    gradient is zero outside. Exact at the table points, monotone, piecewise linear. Computed in
    float32 whatever the input dtype; returns float32.
    """
    table = _table(sigmas, sigma)
    x = sigma.float().clamp(table[0], table[-1])
    idx = torch.searchsorted(table, x.detach().contiguous()) - 1
    idx = idx.clamp(0, table.numel() - 2)
    lo, hi = table[idx], table[idx + 1]
    return idx.to(torch.float32) + (x - lo) / (hi - lo)


def timestep_to_sigma(t: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """The forward schedule: noise level of a (float) timestep, linear between table points."""
    table = _table(sigmas, t)
    x = t.float().clamp(0, table.numel() - 1)
    idx = x.detach().floor().long().clamp(0, table.numel() - 2)
    frac = x - idx.to(torch.float32)
    return table[idx] + frac * (table[idx + 1] - table[idx])


def log_sigma_bounds(sigmas: torch.Tensor, t_min: int = 1, t_max: int = 999) -> tuple[float, float]:
    """``(log sigma_{t_min}, log sigma_{t_max})``: the clamp range of the predicted noise level."""
    n = sigmas.numel()
    if not 0 <= t_min < t_max <= n - 1:
        raise ValueError(f"need 0 <= t_min < t_max <= {n - 1}, got t_min={t_min}, t_max={t_max}")
    return math.log(float(sigmas[t_min])), math.log(float(sigmas[t_max]))


def per_image_sigma(sigma_map: torch.Tensor) -> torch.Tensor:
    """``sqrt(mean sigma^2)`` over all but the batch axis: one noise level per image, shape (B,)."""
    return sigma_map.float().pow(2).flatten(1).mean(1).sqrt()


SD_SIGMAS = sigmas_from_alphas_cumprod(scaled_linear_alphas_cumprod())
"""The SD-2.x noise levels: sigma_1 = .041, sigma_100 = .344, sigma_500 = 1.618, sigma_999 = 14.61."""
SD_LOG_SIGMA_RANGE = log_sigma_bounds(SD_SIGMAS)

# ------------------------------------------------------------------------------------------------
# Predictor P
# ------------------------------------------------------------------------------------------------


class _ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.1))


class NoiseLevelPredictor(ModelMixin, ConfigMixin):
    """P: ``log sigma_hat = clamp(s/2 + Delta([s, z]), log_sigma_min, log_sigma_max)``.

    ``Delta`` comes from conv3 -> LeakyReLU(0.1) -> ``num_blocks`` residual blocks -> a
    zero-initialised conv3, so training starts at the analytic noise level ``sqrt(exp(s))``.

    Args:
        logvar_channels: channels of the estimator's ``s`` (1, or 4 per latent channel).
        latent_channels: channels of the latent ``z`` (4 for SD).
        hidden_channels: width of the residual trunk.
        num_blocks: residual blocks.
        log_sigma_min, log_sigma_max: clamp range, ``log sigma_1`` and ``log sigma_999`` of the
            SD schedule by default (see :func:`log_sigma_bounds`).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        logvar_channels: int = 1,
        latent_channels: int = 4,
        hidden_channels: int = 32,
        num_blocks: int = 6,
        log_sigma_min: float = SD_LOG_SIGMA_RANGE[0],
        log_sigma_max: float = SD_LOG_SIGMA_RANGE[1],
    ) -> None:
        super().__init__()
        if log_sigma_min >= log_sigma_max:
            raise ValueError(
                f"log_sigma_min ({log_sigma_min}) must be below log_sigma_max ({log_sigma_max})"
            )
        self.conv_in = nn.Conv2d(logvar_channels + latent_channels, hidden_channels, 3, padding=1)
        self.blocks = nn.Sequential(*[_ResBlock(hidden_channels) for _ in range(num_blocks)])
        self.conv_out = nn.Conv2d(hidden_channels, 1, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, logvar: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """(B, Cs, h, w) log-variance and (B, 4, h, w) latent -> (B, 1, h, w) log sigma_hat."""
        h = F.leaky_relu(self.conv_in(torch.cat([logvar, latent], dim=1)), 0.1)
        delta = self.conv_out(self.blocks(h))
        analytic = 0.5 * logvar.mean(dim=1, keepdim=True)
        cfg = self.config
        return (analytic + delta).clamp(cfg.log_sigma_min, cfg.log_sigma_max)


__all__ = [
    "SD_LOG_SIGMA_RANGE",
    "SD_SIGMAS",
    "NoiseLevelPredictor",
    "alpha_bar_from_sigma",
    "log_sigma_bounds",
    "per_image_sigma",
    "scaled_linear_alphas_cumprod",
    "sigma_to_timestep",
    "sigmas_from_alphas_cumprod",
    "timestep_to_sigma",
]
