"""The degradation steps, each a deterministic function plus a ``random_*`` wrapper that only
draws its parameters: blur, resize, Gaussian/Poisson noise, JPEG, quantisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from slimdiffsr.data.degradation.config import (
    RESIZE_MODES,
    BlurConfig,
    JpegConfig,
    NoiseConfig,
    Range,
    ResizeConfig,
)
from slimdiffsr.data.degradation.draws import _as_batch, _bernoulli, _choice, _gen_device, _uniform
from slimdiffsr.data.degradation.kernels import (
    sample_blur_kernels,
)


def blur(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Filter each sample with its own kernel; reflect padding (replicate if the image is smaller).

    ``x`` (B, C, H, W) float; ``kernels`` (B, k, k) or (k, k), odd k. Returns (B, C, H, W).
    """
    b, c, h, w = x.shape
    if kernels.dim() == 2:
        kernels = kernels.expand(b, -1, -1)
    k = kernels.shape[-1]
    if kernels.shape[0] != b or k % 2 == 0 or kernels.shape[-2] != k:
        raise ValueError(f"kernels must be (B={b}, k, k) with odd k, got {tuple(kernels.shape)}")
    pad = k // 2
    mode = "reflect" if pad < min(h, w) else "replicate"
    xp = F.pad(x, (pad, pad, pad, pad), mode=mode)
    weight = kernels.to(x).repeat_interleave(c, dim=0).unsqueeze(1)  # (B*C, 1, k, k)
    out = F.conv2d(xp.reshape(1, b * c, h + 2 * pad, w + 2 * pad), weight, groups=b * c)
    return out.view(b, c, h, w)


def random_blur(
    x: torch.Tensor, cfg: BlurConfig, generator: torch.Generator | None, scale: int = 1
) -> torch.Tensor:
    """:func:`blur` with kernels drawn by :func:`sample_blur_kernels`."""
    return blur(x, sample_blur_kernels(x.shape[0], cfg, generator, scale))


def resize(
    x: torch.Tensor, size: tuple[int, int], mode: str, antialias: bool = False
) -> torch.Tensor:
    """Resize (B, C, H, W) to ``size`` = (h, w) with ``area``, ``bilinear`` or ``bicubic``.

    No clamping (bicubic may overshoot [0, 1]; the pipeline clamps later, as Real-ESRGAN does).
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode {mode!r} does not exist; choose from {RESIZE_MODES}")
    size = (max(1, int(size[0])), max(1, int(size[1])))
    if tuple(x.shape[-2:]) == size:
        return x
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=antialias)


def random_resize(
    x: torch.Tensor,
    cfg: ResizeConfig,
    generator: torch.Generator | None,
    base: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Resize by a random up/down/keep factor of ``base`` (default: the current size)."""
    base = base or (x.shape[-2], x.shape[-1])
    kind = int(_choice(1, cfg.probs, generator))
    factor = float(_uniform(1, cfg.up if kind == 0 else cfg.down, generator))
    if kind == 2:
        factor = 1.0
    mode = cfg.modes[int(_choice(1, cfg.mode_probs, generator))]
    return resize(x, (int(base[0] * factor), int(base[1] * factor)), mode)


def gaussian_noise(
    x: torch.Tensor,
    sigma: float | torch.Tensor,
    gray: bool | torch.Tensor = False,
    generator: torch.Generator | None = None,
    clip: bool = True,
) -> torch.Tensor:
    """Add zero-mean Gaussian noise of std ``sigma`` (scalar or (B,), [0, 1] units).

    ``gray`` (bool or (B,) bool): one noise field shared by all bands (luminance noise).
    """
    b, c, h, w = x.shape
    dev = _gen_device(generator)
    sig = _as_batch(sigma, b, x.device).view(b, 1, 1, 1)
    g = _as_batch(gray, b, x.device).bool().view(b, 1, 1, 1)
    colour = torch.randn((b, c, h, w), generator=generator, device=dev).to(x)
    mono = torch.randn((b, 1, h, w), generator=generator, device=dev).to(x)
    out = x + torch.where(g, mono, colour) * sig
    return out.clamp(0.0, 1.0) if clip else out


def random_gaussian_noise(
    x: torch.Tensor,
    sigma_range: Range,
    gray_prob: float,
    generator: torch.Generator | None,
    clip: bool = True,
) -> torch.Tensor:
    """:func:`gaussian_noise` with sigma ~ U(sigma_range) and grey noise with ``gray_prob``."""
    b = x.shape[0]
    sigma = _uniform(b, sigma_range, generator)
    gray = _bernoulli(b, gray_prob, generator)
    return gaussian_noise(x, sigma, gray, generator, clip)


def poisson_noise(
    x: torch.Tensor,
    scale: float | torch.Tensor,
    gray: bool | torch.Tensor = False,
    generator: torch.Generator | None = None,
    peak: float = 256.0,
    clip: bool = True,
) -> torch.Tensor:
    """Add shot noise: ``(Poisson(x * peak) / peak - x) * scale`` (std = scale * sqrt(x / peak)).

    ``peak`` is the photon count at value 1.0. ``gray``: noise of the band mean, shared by bands.
    """
    b = x.shape[0]
    dev = _gen_device(generator)
    sc = _as_batch(scale, b, x.device).view(b, 1, 1, 1)
    g = _as_batch(gray, b, x.device).bool().view(b, 1, 1, 1)
    xc = x.detach().float().clamp_min(0.0).to(dev)
    colour = torch.poisson(xc * peak, generator=generator) / peak - xc
    mean = xc.mean(dim=1, keepdim=True)
    mono = torch.poisson(mean * peak, generator=generator) / peak - mean
    noise = torch.where(g, mono.to(x.device).to(x.dtype), colour.to(x.device).to(x.dtype))
    out = x + noise * sc
    return out.clamp(0.0, 1.0) if clip else out


def random_poisson_noise(
    x: torch.Tensor,
    scale_range: Range,
    gray_prob: float,
    generator: torch.Generator | None,
    peak: float = 256.0,
    clip: bool = True,
) -> torch.Tensor:
    """:func:`poisson_noise` with scale ~ U(scale_range) and grey noise with ``gray_prob``."""
    b = x.shape[0]
    scale = _uniform(b, scale_range, generator)
    gray = _bernoulli(b, gray_prob, generator)
    return poisson_noise(x, scale, gray, generator, peak, clip)


def random_noise(
    x: torch.Tensor, cfg: NoiseConfig, generator: torch.Generator | None
) -> torch.Tensor:
    """Gaussian or Poisson per sample (``combine="either"``), or both in turn (``"both"``)."""
    b = x.shape[0]
    if cfg.combine == "both":
        x = random_poisson_noise(x, cfg.poisson_scale, cfg.gray_prob, generator, cfg.poisson_peak)
        return random_gaussian_noise(x, cfg.gaussian_sigma, cfg.gray_prob, generator)
    use_gauss = _bernoulli(b, cfg.gaussian_prob, generator).to(x.device).view(b, 1, 1, 1)
    xg = random_gaussian_noise(x, cfg.gaussian_sigma, cfg.gray_prob, generator)
    xp = random_poisson_noise(x, cfg.poisson_scale, cfg.gray_prob, generator, cfg.poisson_peak)
    return torch.where(use_gauss, xg, xp)


def jpeg(x: torch.Tensor, quality: float | torch.Tensor) -> torch.Tensor:
    """JPEG-compress each sample at its quality (1-100) and decode it again (CPU, Pillow/libjpeg).

    Not differentiable. 3-band images use colour JPEG (4:2:0 chroma, like Real-ESRGAN's DiffJPEG);
    other band counts are compressed band by band as greyscale. Values are clamped and rounded to
    8 bit first. ``x`` (B, C, H, W) in [0, 1]; returns the same shape, dtype and device.
    """
    import io

    import numpy as np

    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - Pillow comes with torchvision (train extra)
        raise ImportError("JPEG degradation needs Pillow: pip install 'slimdiffsr[train]'") from e

    b, c, h, w = x.shape
    q = _as_batch(quality, b, torch.device("cpu")).round().clamp(1, 100).int().tolist()
    u8 = (x.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()
    out = np.empty_like(u8)
    groups = [slice(0, 3)] if c == 3 else [slice(j, j + 1) for j in range(c)]
    for i in range(b):
        for sl in groups:
            band = u8[i, sl].transpose(1, 2, 0)
            img = Image.fromarray(band if band.shape[-1] == 3 else band[..., 0])
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=int(q[i]))
            dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
            out[i, sl] = dec.transpose(2, 0, 1) if dec.ndim == 3 else dec[None]
    return (torch.from_numpy(out).float() / 255.0).to(device=x.device, dtype=x.dtype)


def random_jpeg(
    x: torch.Tensor, cfg: JpegConfig, generator: torch.Generator | None
) -> torch.Tensor:
    """:func:`jpeg` with quality ~ U(cfg.quality) per sample; samples skipped with 1 - prob."""
    b = x.shape[0]
    quality = _uniform(b, cfg.quality, generator)
    apply = _bernoulli(b, cfg.prob, generator).to(x.device).view(b, 1, 1, 1)
    return torch.where(apply, jpeg(x.clamp(0, 1), quality), x)


def quantize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Round [0, 1] values to ``2**bits - 1`` levels (8: the Real-ESRGAN rounding; 12/16 for RS)."""
    levels = float(2**bits - 1)
    return torch.round(x.clamp(0.0, 1.0) * levels) / levels
