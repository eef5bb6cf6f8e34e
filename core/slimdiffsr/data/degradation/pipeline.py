"""Composition: one or two blur/resize/noise/JPEG stages, the final sinc/resize/JPEG stage and
rounding (:func:`degrade`)."""

from __future__ import annotations

import torch

from slimdiffsr.data.degradation.config import (
    DegradationConfig,
    StageConfig,
)
from slimdiffsr.data.degradation.draws import _bernoulli, _choice
from slimdiffsr.data.degradation.kernels import (
    sample_sinc_kernels,
)
from slimdiffsr.data.degradation.ops import (
    blur,
    quantize,
    random_blur,
    random_jpeg,
    random_noise,
    random_resize,
    resize,
)


def _final_resize(
    x: torch.Tensor,
    size: tuple[int, int],
    cfg: DegradationConfig,
    generator: torch.Generator | None,
) -> torch.Tensor:
    mode = cfg.final_resize_modes[int(_choice(1, cfg.final_resize_probs, generator))]
    return resize(x, size, mode, antialias=cfg.final_antialias)


def _stage(
    x: torch.Tensor,
    stage: StageConfig,
    generator: torch.Generator | None,
    scale: int,
    base: tuple[int, int] | None,
) -> torch.Tensor:
    if stage.blur is not None:
        x = random_blur(x, stage.blur, generator, scale)
    if stage.resize is not None:
        x = random_resize(x, stage.resize, generator, base)
    if stage.noise is not None:
        x = random_noise(x, stage.noise, generator)
    if stage.jpeg is not None:
        x = random_jpeg(x.clamp(0, 1), stage.jpeg, generator)
    return x


def degrade(
    hr: torch.Tensor,
    scale: int,
    config: DegradationConfig | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Make LR inputs from HR crops with the pipeline described by ``config``.

    Args:
        hr: (B, C, H, W) float in [0, 1], H and W multiples of ``scale``; any band count.
        scale: 4 or 8 (any integer >= 1 works).
        config: a :class:`DegradationConfig`; default :meth:`DegradationConfig.rs`.
        generator: the only source of randomness; same seed + device + input -> same output.
    Returns:
        (B, C, H/scale, W/scale) float (dtype of ``hr``) in [0, 1], on ``hr``'s device.
    """
    if hr.dim() != 4:
        raise ValueError(f"hr must be (B, C, H, W), got shape {tuple(hr.shape)}")
    if not hr.is_floating_point():
        raise ValueError(f"hr must be a float tensor in [0, 1], got {hr.dtype}")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"HR size {h}x{w} is not a multiple of the scale {scale}")
    cfg = config if config is not None else DegradationConfig.rs()
    out_size = (h // scale, w // scale)
    x = hr.float()
    x = _stage(x, cfg.first, generator, scale, None)
    if cfg.second is not None:
        x = _stage(x, cfg.second, generator, scale, out_size)
    resize_first = bool(_bernoulli(1, cfg.final_order_prob, generator))
    if resize_first:
        x = _final_resize(x, out_size, cfg, generator)
        if cfg.final_sinc is not None:
            x = blur(x, sample_sinc_kernels(x.shape[0], cfg.final_sinc, generator))
        if cfg.final_jpeg is not None:
            x = random_jpeg(x.clamp(0, 1), cfg.final_jpeg, generator)
    else:
        if cfg.final_jpeg is not None:
            x = random_jpeg(x.clamp(0, 1), cfg.final_jpeg, generator)
        x = _final_resize(x, out_size, cfg, generator)
        if cfg.final_sinc is not None:
            x = blur(x, sample_sinc_kernels(x.shape[0], cfg.final_sinc, generator))
    if cfg.final_noise is not None:
        x = random_noise(x, cfg.final_noise, generator)
    x = x.clamp(0.0, 1.0)
    if cfg.quantize_bits is not None:
        x = quantize(x, cfg.quantize_bits)
    return x.to(hr.dtype)
