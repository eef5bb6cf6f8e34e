"""Remote-sensing trust metrics: does the SR agree with its input, and what did it invent?

Pixel metrics say how close an SR is to a reference; an analyst also needs to know whether the SR
still *measures the same ground* as the input. These are pure numpy functions on (C, H, W) float
arrays in [0, 1] (the same unit as ``ValueContract``), with ``value_range`` converting differences
back to raster units (e.g. 255 for uint8, 10000 for scaled reflectance):

- :func:`consistency_l1`: mean |area_down(SR) - LR| in raster units. A super-resolved pixel block
  should integrate to the LR pixel it came from (area downsampling = sensor pixel integration).
- :func:`spectral_angle`: mean angle (degrees) between per-pixel band vectors, e.g. of
  area_down(SR) and LR; sensitive to colour/spectral shifts that L1 hides. Needs >= 2 bands.
- :func:`seam_score`: gradient magnitude across tile borders over the gradient elsewhere; ~1 means
  no visible seams, >1 means steps along the tile grid.
- :func:`detail_scores`: in the spirit of opensr-test's correctness scores (Aybar et al. 2024):
  per patch, the high-frequency detail the SR adds on top of the upsampled LR is compared with the
  detail the HR really has, and classified as *improvement* (moves toward the HR), *omission*
  (stays at the LR's blur) or *hallucination* (adds detail that is not in the HR).
"""

from __future__ import annotations

import numpy as np


def _chw(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"{name} must be (C, H, W) or (H, W), got shape {a.shape}")
    return a


def area_downsample(img: np.ndarray, scale: int) -> np.ndarray:
    """Mean over ``scale`` x ``scale`` blocks: (C, H, W) -> (C, H/scale, W/scale)."""
    a = _chw(img, "img")
    c, h, w = a.shape
    if h % scale or w % scale:
        raise ValueError(f"size {h}x{w} is not a multiple of the scale {scale}")
    return a.reshape(c, h // scale, scale, w // scale, scale).mean(axis=(2, 4))


def _check_lr(sr: np.ndarray, lr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    s, lo = _chw(sr, "sr"), _chw(lr, "lr")
    want = (lo.shape[0], lo.shape[1] * scale, lo.shape[2] * scale)
    if s.shape != want:
        raise ValueError(f"sr shape {s.shape} is not lr shape {lo.shape} x{scale} = {want}")
    return s, lo


def consistency_map(sr: np.ndarray, lr: np.ndarray, scale: int) -> np.ndarray:
    """(h, w) mean-over-bands |area_down(SR) - LR| in the input's unit (for pictures)."""
    s, lo = _check_lr(sr, lr, scale)
    return np.abs(area_downsample(s, scale) - lo).mean(axis=0)


def consistency_l1(
    sr: np.ndarray,
    lr: np.ndarray,
    scale: int,
    value_range: float = 1.0,
    valid: np.ndarray | None = None,
) -> float:
    """Mean |area_down(SR) - LR| times ``value_range`` (raster units); ``valid`` (h, w) masks LR."""
    m = consistency_map(sr, lr, scale)
    if valid is not None:
        m = m[np.asarray(valid, dtype=bool)]
    return float(m.mean() * value_range) if m.size else float("nan")


def spectral_angle(a: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> float:
    """Mean spectral angle in degrees between per-pixel band vectors of two (C, H, W) images."""
    x, y = _chw(a, "a"), _chw(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {y.shape}")
    if x.shape[0] < 2:
        raise ValueError("the spectral angle needs at least 2 bands")
    dot = (x * y).sum(0)
    norm = np.sqrt((x * x).sum(0) * (y * y).sum(0))
    ok = norm > eps
    if not ok.any():
        return 0.0
    cos = np.clip(dot[ok] / norm[ok], -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)).mean())


def consistency_sam(sr: np.ndarray, lr: np.ndarray, scale: int) -> float:
    """Spectral angle (degrees) between area_down(SR) and LR."""
    s, lo = _check_lr(sr, lr, scale)
    return spectral_angle(area_downsample(s, scale), lo)


def seam_score(img: np.ndarray, tile: int, offset: int = 0) -> float:
    """Mean |gradient| across tile borders / mean |gradient| elsewhere (1 = seamless).

    Borders sit between pixel ``offset + k*tile - 1`` and ``offset + k*tile`` along both axes (the
    engine's output tile grid). Gradients are of the band mean; returns nan without borders.
    """
    a = _chw(img, "img").mean(axis=0)
    if tile < 2:
        raise ValueError(f"tile must be >= 2, got {tile}")
    gx = np.abs(np.diff(a, axis=1))  # between column j and j+1
    gy = np.abs(np.diff(a, axis=0))
    bx = np.zeros(gx.shape[1], dtype=bool)
    by = np.zeros(gy.shape[0], dtype=bool)
    bx[np.arange(offset + tile - 1, gx.shape[1], tile)] = True
    by[np.arange(offset + tile - 1, gy.shape[0], tile)] = True
    if not bx.any() and not by.any():
        return float("nan")
    on = np.concatenate([gx[:, bx].ravel(), gy[by, :].ravel()])
    off = np.concatenate([gx[:, ~bx].ravel(), gy[~by, :].ravel()])
    base = off.mean() if off.size else 0.0
    return float(on.mean() / base) if base > 0 else float("nan")


def _patch_norms(d: np.ndarray, patch: int) -> np.ndarray:
    """L2 norm of (C, H, W) differences over non-overlapping patch x patch blocks -> (h, w)."""
    c, h, w = d.shape
    hh, ww = h // patch * patch, w // patch * patch
    blocks = d[:, :hh, :ww].reshape(c, hh // patch, patch, ww // patch, patch)
    return np.sqrt((blocks**2).sum(axis=(0, 2, 4)))


def detail_scores(
    sr: np.ndarray, hr: np.ndarray, lr_up: np.ndarray, patch: int = 16, min_detail: float = 1e-3
) -> dict[str, float]:
    """Fractions of patches where the SR improves on, omits, or hallucinates HR detail.

    ``lr_up`` is the LR brought to HR size with a plain interpolator (bicubic): the "no new
    detail" answer. Per patch, with ``r = ||HR - lr_up||`` (the detail to recover),
    ``d_im = ||SR - HR|| / r`` and ``d_om = ||SR - lr_up|| / r``:

    - improvement: ``d_im < 1`` and ``d_im < d_om`` (closer to the HR than the blurry answer is);
    - omission: ``d_om <= d_im`` and ``d_om < 1`` (SR stayed near the blurry answer);
    - hallucination: everything else (the SR is far from both: it invented detail).

    Patches whose RMS detail is below ``min_detail`` (flat areas) are ignored. Returns the three
    fractions (summing to 1) and ``patches`` (how many were scored); nan fractions if none.
    """
    s, h, u = _chw(sr, "sr"), _chw(hr, "hr"), _chw(lr_up, "lr_up")
    if not s.shape == h.shape == u.shape:
        raise ValueError(f"shapes differ: sr {s.shape}, hr {h.shape}, lr_up {u.shape}")
    r = _patch_norms(h - u, patch)
    d_im = _patch_norms(s - h, patch)
    d_om = _patch_norms(s - u, patch)
    n_px = s.shape[0] * patch * patch
    keep = r / np.sqrt(n_px) > min_detail
    if not keep.any():
        nan = float("nan")
        return {"improvement": nan, "omission": nan, "hallucination": nan, "patches": 0.0}
    x, y = d_im[keep] / r[keep], d_om[keep] / r[keep]
    imp = (x < 1) & (x < y)
    om = ~imp & (y <= x) & (y < 1)
    hal = ~imp & ~om
    n = float(keep.sum())
    return {
        "improvement": float(imp.sum() / n),
        "omission": float(om.sum() / n),
        "hallucination": float(hal.sum() / n),
        "patches": n,
    }


__all__ = [
    "area_downsample",
    "consistency_l1",
    "consistency_map",
    "consistency_sam",
    "detail_scores",
    "seam_score",
    "spectral_angle",
]
