"""Degradation settings: frozen dataclasses per step and the ``realesrgan`` / ``rs`` / ``bicubic`` presets."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

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
