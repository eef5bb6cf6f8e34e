"""PSNR and SSIM as the SR literature computes them (BasicSR ``calculate_psnr/ssim``, pyiqa).

The paper reports both on Y of YCbCr (ITU-R BT.601, studio swing 16-235, as BasicSR's
``bgr2ycbcr(y_only=True)`` and pyiqa's ``color_space="ycbcr"``), with a border of ``scale`` pixels
cropped on every side, so that is the default here. ``color_space="yiq"`` (full-range luma
0.299 R + 0.587 G + 0.114 B, pyiqa's own default) exists only to reproduce pyiqa's published
calibration values.

Conventions: images are numpy arrays (or anything ``np.asarray`` accepts, e.g. CPU tensors) of
shape (C, H, W) or (H, W), float in [0, 1] (``data_range=1``) or [0, 255] (``data_range=255``).
For 3 or more bands, Y is computed from the first three bands taken as R, G, B (so RGBN imagery is
scored on its RGB part); a single band is used as is. Computation is in float64. Identical images
give ``inf`` PSNR. Shapes that differ raise.

:func:`psnr_torch` is the torch twin of :func:`psnr` for batches (B, C, H, W) on any device (the
training loops' validation): the same luma, border crop and mean squared error, computed by the
same array-generic helpers, so evaluation and training report the same number.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

ColorSpace = Literal["ycbcr", "yiq"]

_YCBCR_Y = np.array([65.481, 128.553, 24.966]) / 255.0  # BT.601, output 16/255..235/255
_YIQ_Y = np.array([0.299, 0.587, 0.114])


def _as_chw(img: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"{name} must have shape (C, H, W) or (H, W), got {a.shape}")
    return a


def _check_pair(img: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_chw(img, "img"), _as_chw(ref, "ref")
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    return a, b


def _luma(a, data_range: float, color_space: ColorSpace):
    """Luma (..., 1, H, W) of (..., C, H, W); numpy arrays and torch tensors alike."""
    c = a.shape[-3]
    if c == 1:
        return a
    if c < 3:
        raise ValueError(f"Y needs 1 or >= 3 bands, got {c}")
    if color_space == "ycbcr":
        w, offset = _YCBCR_Y, 16.0 / 255.0 * data_range
    elif color_space == "yiq":
        w, offset = _YIQ_Y, 0.0
    else:
        raise ValueError(f"color_space must be 'ycbcr' or 'yiq', got {color_space!r}")
    r, g, b = a[..., 0:1, :, :], a[..., 1:2, :, :], a[..., 2:3, :, :]
    return r * float(w[0]) + g * float(w[1]) + b * float(w[2]) + offset


def to_y(img: np.ndarray, data_range: float = 1.0, color_space: ColorSpace = "ycbcr") -> np.ndarray:
    """Luma (1, H, W) in the input's units from (C, H, W): first three bands as RGB, or the band."""
    return _luma(_as_chw(img, "img"), data_range, color_space)


def crop_border(img: np.ndarray, border: int) -> np.ndarray:
    """Drop ``border`` pixels on each side of the last two axes (SR convention: border = scale)."""
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    if border == 0:
        return img
    if img.shape[-1] <= 2 * border or img.shape[-2] <= 2 * border:
        raise ValueError(f"border {border} leaves nothing of a {img.shape[-2:]} image")
    return img[..., border:-border, border:-border]


def _mse(a, b, crop: int, test_y_channel: bool, data_range: float, color_space: ColorSpace):
    """Mean squared error over the last three axes after the border crop and, optionally, Y."""
    a, b = crop_border(a, crop), crop_border(b, crop)
    if test_y_channel:
        a, b = _luma(a, data_range, color_space), _luma(b, data_range, color_space)
    d = (a - b) ** 2
    return d.reshape(tuple(d.shape[:-3]) + (-1,)).mean(-1)


def psnr(
    img: np.ndarray,
    ref: np.ndarray,
    crop: int = 0,
    test_y_channel: bool = True,
    data_range: float = 1.0,
    color_space: ColorSpace = "ycbcr",
) -> float:
    """PSNR in dB; with ``test_y_channel`` on Y, else on all bands (BasicSR ``calculate_psnr``).

    ``img`` is not clipped: pass the SR the way it would be saved (clipped to the range).
    """
    a, b = _check_pair(img, ref)
    mse = float(_mse(a, b, crop, test_y_channel, data_range, color_space))
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def psnr_torch(
    img,
    ref,
    crop: int = 0,
    test_y_channel: bool = True,
    data_range: float = 1.0,
    color_space: ColorSpace = "ycbcr",
):
    """:func:`psnr` for torch batches: (B, C, H, W) tensors -> (B,) PSNR in dB (inf if equal).

    Float32 (float64 inputs stay float64) on the tensors' device; ``img`` is not clipped.
    """
    if img.shape != ref.shape or img.ndim != 4:
        raise ValueError(
            f"img {tuple(img.shape)} and ref {tuple(ref.shape)} must be equal (B, C, H, W)"
        )
    double = img.is_floating_point() and img.element_size() == 8
    a, b = (img.double(), ref.double()) if double else (img.float(), ref.float())
    mse = _mse(a, b, crop, test_y_channel, data_range, color_space)
    return 10.0 * (data_range**2 / mse).log10()


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of (H, W) with the outer product of ``g`` (MATLAB filter2)."""
    k = g.size
    h, w = x.shape
    rows = sum(g[i] * x[i : h - k + 1 + i, :] for i in range(k))
    return sum(g[j] * rows[:, j : w - k + 1 + j] for j in range(k))


def _ssim_2d(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    g = _gaussian_1d()
    mu1, mu2 = _filter_valid(a, g), _filter_valid(b, g)
    s11 = _filter_valid(a * a, g) - mu1**2
    s22 = _filter_valid(b * b, g) - mu2**2
    s12 = _filter_valid(a * b, g) - mu1 * mu2
    cs = np.maximum((2 * s12 + c2) / (s11 + s22 + c2), 0.0)  # pyiqa clamps the cs term at 0
    ssim_map = (2 * mu1 * mu2 + c1) / (mu1**2 + mu2**2 + c1) * cs
    return float(ssim_map.mean())


def ssim(
    img: np.ndarray,
    ref: np.ndarray,
    crop: int = 0,
    test_y_channel: bool = True,
    data_range: float = 1.0,
    color_space: ColorSpace = "ycbcr",
) -> float:
    """SSIM (Wang et al. 2004; 11x11 Gaussian, sigma 1.5, 'valid' window), mean over bands.

    Follows pyiqa's ``SSIM`` (itself BasicSR/MATLAB): values are scaled to 0-255 and, like 8-bit
    images, rounded to integers before filtering; no downsampling.
    """
    a, b = _check_pair(img, ref)
    a, b = crop_border(a, crop), crop_border(b, crop)
    if test_y_channel:
        a, b = to_y(a, data_range, color_space), to_y(b, data_range, color_space)
    if min(a.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 after cropping, got {a.shape[-2:]}")
    a = np.round(a * (255.0 / data_range))
    b = np.round(b * (255.0 / data_range))
    return float(np.mean([_ssim_2d(a[c], b[c], 255.0) for c in range(a.shape[0])]))


__all__ = ["crop_border", "psnr", "psnr_torch", "ssim", "to_y"]
