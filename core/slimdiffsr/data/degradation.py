"""Synthetic degradations that turn HR training crops into LR inputs (method.md section 6).

Two presets, both a frozen :class:`DegradationConfig`:

- :meth:`DegradationConfig.realesrgan` reproduces the authors' second-order Real-ESRGAN pipeline
  (blur -> resize -> noise -> JPEG, twice, then a final sinc / resize / JPEG stage and 8-bit
  rounding), for reproducing the paper.
- :meth:`DegradationConfig.rs` is the remote-sensing preset: a sensor-like Gaussian PSF, area
  downsampling (pixel integration), Gaussian read noise plus Poisson shot noise at LR level, no JPEG
  and 12-bit quantisation. JPEG and 8-bit rounding are artefacts that 12-16-bit, usually losslessly
  stored RS products never show, so a model trained on them learns to remove things that are not there.

Every step is one function with a deterministic twin that takes explicit parameters
(``gaussian_noise(x, sigma)``) and a ``random_*`` wrapper that only samples those parameters from a
``torch.Generator`` and calls the twin, so tests can pin each step. All randomness comes from the
generator passed in (never the global RNG): the same seed, device and input give the same output.

Conventions (all functions): images are float tensors of shape (B, C, H, W) with values in [0, 1]
(not the model's [-1, 1]); any number of bands C; noise levels and sigmas are in that [0, 1] unit,
never "in 0-255". Per-sample parameters are 1-D tensors of length B. Random draws happen on the
generator's device; pass a generator on the images' device for speed on GPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
import torch.nn.functional as F

KernelType = Literal[
    "iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"
]
KERNEL_TYPES: tuple[str, ...] = (
    "iso",
    "aniso",
    "generalized_iso",
    "generalized_aniso",
    "plateau_iso",
    "plateau_aniso",
)
RESIZE_MODES: tuple[str, ...] = ("area", "bilinear", "bicubic")
Range = tuple[float, float]


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------
def _check_range(name: str, r: Sequence[float], low: float = -math.inf) -> None:
    if len(r) != 2 or r[0] > r[1] or r[0] < low:
        raise ValueError(f"{name} must be (low, high) with {low} <= low <= high, got {tuple(r)}")


def _check_probs(name: str, p: Sequence[float], n: int) -> None:
    if len(p) != n or any(v < 0 for v in p) or not math.isclose(sum(p), 1.0, abs_tol=1e-6):
        raise ValueError(
            f"{name} must be {n} non-negative probabilities summing to 1, got {tuple(p)}"
        )


@dataclass(frozen=True)
class BlurConfig:
    """A random blur kernel per sample (BasicSR ``random_mixed_kernels`` plus sinc).

    ``sigma_x``/``sigma_y`` are in HR pixels, or in LR pixels (multiplied by the scale) when
    ``sigma_unit="lr"``; then the kernel size follows the sigma (``6 sigma + 1``, odd) so a
    sensor PSF at x8 is not truncated, and ``kernel_sizes`` is ignored.
    """

    prob: float = 1.0
    kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    kernel_types: tuple[str, ...] = KERNEL_TYPES
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sigma_x: Range = (0.2, 1.5)
    sigma_y: Range = (0.2, 1.5)
    rotation: Range = (-math.pi, math.pi)
    beta_generalized: Range = (0.5, 2.0)
    beta_plateau: Range = (1.0, 1.5)
    sinc_prob: float = 0.1
    sigma_unit: Literal["hr", "lr"] = "hr"

    def __post_init__(self) -> None:
        if not 0.0 <= self.prob <= 1.0 or not 0.0 <= self.sinc_prob <= 1.0:
            raise ValueError("BlurConfig.prob and sinc_prob must lie in [0, 1]")
        if not self.kernel_sizes or any(k < 1 or k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"kernel_sizes must be odd positive ints, got {self.kernel_sizes}")
        unknown = set(self.kernel_types) - set(KERNEL_TYPES)
        if unknown:
            raise ValueError(f"unknown kernel types {sorted(unknown)}; known: {KERNEL_TYPES}")
        _check_probs("kernel_probs", self.kernel_probs, len(self.kernel_types))
        for n in ("sigma_x", "sigma_y", "beta_generalized", "beta_plateau"):
            _check_range(n, getattr(self, n), low=1e-6)
        _check_range("rotation", self.rotation)
        if self.sigma_unit not in ("hr", "lr"):
            raise ValueError(f"sigma_unit must be 'hr' or 'lr', got {self.sigma_unit!r}")


@dataclass(frozen=True)
class ResizeConfig:
    """Random up/down/keep resize; one factor and mode per batch (shapes must agree)."""

    probs: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    up: Range = (1.0, 1.5)
    down: Range = (0.3, 1.0)
    modes: tuple[str, ...] = RESIZE_MODES
    mode_probs: tuple[float, ...] = (1 / 3, 1 / 3, 1 / 3)

    def __post_init__(self) -> None:
        _check_probs("ResizeConfig.probs", self.probs, 3)
        _check_range("up", self.up, low=1e-3)
        _check_range("down", self.down, low=1e-3)
        _check_modes(self.modes, self.mode_probs)


def _check_modes(modes: Sequence[str], probs: Sequence[float]) -> None:
    unknown = set(modes) - set(RESIZE_MODES)
    if not modes or unknown:
        raise ValueError(f"resize modes must be a non-empty subset of {RESIZE_MODES}, got {modes}")
    _check_probs("mode_probs", probs, len(modes))


@dataclass(frozen=True)
class NoiseConfig:
    """Gaussian and/or Poisson noise with per-sample levels.

    ``combine="either"``: Gaussian with ``gaussian_prob`` else Poisson (Real-ESRGAN).
    ``combine="both"``: shot noise plus read noise on every sample (sensor model).
    ``poisson_peak`` is the count at value 1.0; Real-ESRGAN's 8-bit world corresponds to 256.
    """

    combine: Literal["either", "both"] = "either"
    gaussian_prob: float = 0.5
    gaussian_sigma: Range = (1 / 255, 15 / 255)
    poisson_scale: Range = (0.05, 2.0)
    poisson_peak: float = 256.0
    gray_prob: float = 0.4

    def __post_init__(self) -> None:
        if self.combine not in ("either", "both"):
            raise ValueError(f"combine must be 'either' or 'both', got {self.combine!r}")
        if not 0 <= self.gaussian_prob <= 1 or not 0 <= self.gray_prob <= 1:
            raise ValueError("gaussian_prob and gray_prob must lie in [0, 1]")
        _check_range("gaussian_sigma", self.gaussian_sigma, low=0.0)
        _check_range("poisson_scale", self.poisson_scale, low=0.0)
        if self.poisson_peak <= 0:
            raise ValueError(f"poisson_peak must be > 0, got {self.poisson_peak}")


@dataclass(frozen=True)
class JpegConfig:
    """JPEG re-compression with a per-sample quality drawn from ``quality``."""

    quality: Range = (60.0, 95.0)
    prob: float = 1.0

    def __post_init__(self) -> None:
        _check_range("quality", self.quality, low=1.0)
        if self.quality[1] > 100 or not 0 <= self.prob <= 1:
            raise ValueError("JPEG quality must lie in [1, 100] and prob in [0, 1]")


@dataclass(frozen=True)
class StageConfig:
    """One order of degradation: blur -> resize -> noise -> JPEG; ``None`` skips a step."""

    blur: BlurConfig | None = None
    resize: ResizeConfig | None = None
    noise: NoiseConfig | None = None
    jpeg: JpegConfig | None = None


@dataclass(frozen=True)
class SincConfig:
    """The final-stage sinc (ringing/overshoot) filter; samples without it get the identity."""

    prob: float = 0.8
    kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    omega: Range = (math.pi / 3, math.pi)

    def __post_init__(self) -> None:
        if not 0 <= self.prob <= 1:
            raise ValueError("SincConfig.prob must lie in [0, 1]")
        if not self.kernel_sizes or any(k < 1 or k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f"kernel_sizes must be odd positive ints, got {self.kernel_sizes}")
        _check_range("omega", self.omega, low=1e-3)


@dataclass(frozen=True)
class DegradationConfig:
    """Every parameter of the pipeline run by :func:`degrade`; build with a preset.

    Order: ``first`` stage; ``second`` stage (its resize is relative to H/s); final stage
    (``final_order_prob``: [resize to H/s -> sinc -> JPEG], else [JPEG -> resize -> sinc]);
    ``final_noise`` on the LR image; clamp to [0, 1]; quantise to ``quantize_bits`` (None: keep
    floats). Change single fields with ``dataclasses.replace`` or :meth:`with_`.
    """

    name: str = "custom"
    first: StageConfig = field(default_factory=StageConfig)
    second: StageConfig | None = None
    final_sinc: SincConfig | None = None
    final_jpeg: JpegConfig | None = None
    final_order_prob: float = 0.5
    final_resize_modes: tuple[str, ...] = RESIZE_MODES
    final_resize_probs: tuple[float, ...] = (1 / 3, 1 / 3, 1 / 3)
    final_antialias: bool = False
    final_noise: NoiseConfig | None = None
    quantize_bits: int | None = 8

    def __post_init__(self) -> None:
        if not 0 <= self.final_order_prob <= 1:
            raise ValueError("final_order_prob must lie in [0, 1]")
        _check_modes(self.final_resize_modes, self.final_resize_probs)
        if self.quantize_bits is not None and not 1 <= self.quantize_bits <= 16:
            raise ValueError(f"quantize_bits must be in 1..16 or None, got {self.quantize_bits}")

    def with_(self, **changes: object) -> DegradationConfig:
        """A copy with some fields changed (the config itself is frozen)."""
        return replace(self, **changes)

    @classmethod
    def realesrgan(cls) -> DegradationConfig:
        """The authors' second-order Real-ESRGAN setup (method.md section 6 table)."""
        return cls(
            name="realesrgan",
            first=StageConfig(
                blur=BlurConfig(prob=1.0, sigma_x=(0.2, 1.5), sigma_y=(0.2, 1.5)),
                resize=ResizeConfig(probs=(0.2, 0.7, 0.1), up=(1.0, 1.5), down=(0.3, 1.0)),
                noise=NoiseConfig(gaussian_sigma=(1 / 255, 15 / 255), poisson_scale=(0.05, 2.0)),
                jpeg=JpegConfig(quality=(60.0, 95.0)),
            ),
            second=StageConfig(
                blur=BlurConfig(prob=0.5, sigma_x=(0.2, 1.0), sigma_y=(0.2, 1.0)),
                resize=ResizeConfig(probs=(0.3, 0.4, 0.3), up=(1.0, 1.2), down=(0.6, 1.0)),
                noise=NoiseConfig(gaussian_sigma=(1 / 255, 12 / 255), poisson_scale=(0.05, 1.0)),
            ),
            final_sinc=SincConfig(prob=0.8),
            final_jpeg=JpegConfig(quality=(60.0, 100.0)),
            final_order_prob=0.5,
            quantize_bits=8,
        )

    @classmethod
    def rs(cls, quantize_bits: int = 12) -> DegradationConfig:
        """Remote-sensing preset: sensor PSF, pixel integration, shot + read noise, no JPEG.

        PSF sigma 0.2-0.6 LR pixels (MTF at Nyquist about 0.1-0.4 after integration), mildly
        anisotropic; Gaussian read noise sigma 0.1-1 % of full scale; Poisson shot noise with a
        4095-count full well; 12-bit quantisation (use 16 for 16-bit products).
        """
        return cls(
            name="rs",
            first=StageConfig(
                blur=BlurConfig(
                    prob=1.0,
                    kernel_types=("iso", "aniso"),
                    kernel_probs=(0.7, 0.3),
                    sigma_x=(0.2, 0.6),
                    sigma_y=(0.2, 0.6),
                    sinc_prob=0.0,
                    sigma_unit="lr",
                ),
            ),
            final_resize_modes=("area",),
            final_resize_probs=(1.0,),
            final_order_prob=1.0,
            final_noise=NoiseConfig(
                combine="both",
                gaussian_sigma=(0.001, 0.01),
                poisson_scale=(0.5, 1.5),
                poisson_peak=4095.0,
                gray_prob=0.0,
            ),
            quantize_bits=quantize_bits,
        )

    @classmethod
    def bicubic(cls) -> DegradationConfig:
        """Classic bicubic downsampling (antialiased, like MATLAB ``imresize``), kept in float."""
        return cls(
            name="bicubic",
            final_resize_modes=("bicubic",),
            final_resize_probs=(1.0,),
            final_order_prob=1.0,
            final_antialias=True,
            quantize_bits=None,
        )

    @classmethod
    def preset(cls, name: str) -> DegradationConfig:
        """Look a preset up by name (``realesrgan``, ``rs``, ``rs16``, ``bicubic``)."""
        presets = {
            "realesrgan": cls.realesrgan,
            "rs": cls.rs,
            "rs16": lambda: cls.rs(16),
            "bicubic": cls.bicubic,
        }
        if name not in presets:
            raise ValueError(
                f"degradation preset {name!r} does not exist; choose from {sorted(presets)}"
            )
        return presets[name]()


# ------------------------------------------------------------------------------------------------
# Random helpers (explicit generator, draws on the generator's device)
# ------------------------------------------------------------------------------------------------
def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _uniform(n: int, r: Sequence[float], generator: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(n, generator=generator, device=_gen_device(generator), dtype=torch.float64)
    return (r[0] + (r[1] - r[0]) * u).float().cpu()


def _bernoulli(n: int, p: float, generator: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(n, generator=generator, device=_gen_device(generator))
    return (u < p).cpu()


def _choice(n: int, probs: Sequence[float], generator: torch.Generator | None) -> torch.Tensor:
    p = torch.tensor(probs, dtype=torch.float64, device=_gen_device(generator))
    return torch.multinomial(p, n, replacement=True, generator=generator).cpu()


def _as_batch(v: float | torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=torch.float32, device=device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"expected a scalar or {n} per-sample values, got {t.numel()}")
    return t


# ------------------------------------------------------------------------------------------------
# Blur kernels
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# Blur
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# Resize
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# Noise
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# JPEG and quantisation
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# Composition
# ------------------------------------------------------------------------------------------------
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


__all__ = [
    "BlurConfig",
    "DegradationConfig",
    "JpegConfig",
    "NoiseConfig",
    "ResizeConfig",
    "SincConfig",
    "StageConfig",
    "anisotropic_kernels",
    "blur",
    "degrade",
    "gaussian_noise",
    "identity_kernels",
    "jpeg",
    "poisson_noise",
    "quantize",
    "random_blur",
    "random_gaussian_noise",
    "random_jpeg",
    "random_noise",
    "random_poisson_noise",
    "random_resize",
    "resize",
    "sample_blur_kernels",
    "sample_sinc_kernels",
    "sinc_kernels",
]
