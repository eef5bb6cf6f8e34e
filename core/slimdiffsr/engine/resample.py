"""Bicubic upsampling in numpy, identical to ``models.bicubic.bicubic_upsample`` (torch).

The engine upsamples the bands a model does not take (near-infrared, SWIR, extra bands) and the
out-of-range part of a tile (residual transfer, see ``engine.loop``) with this, so the tile loop
never needs torch. Same definition as torch's ``F.interpolate(mode="bicubic",
align_corners=False)``: Keys kernel a = -0.75, source coordinate ``(i + 0.5) / s - 0.5``, edge
pixels replicated, no clamping of values.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

A = -0.75


def _cubic(t: np.ndarray) -> np.ndarray:
    t = np.abs(t)
    return np.where(
        t <= 1.0,
        ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0,
        np.where(t < 2.0, ((A * t - 5.0 * A) * t + 8.0 * A) * t - 4.0 * A, 0.0),
    )


@lru_cache(maxsize=32)
def _matrix(n: int, scale: int) -> np.ndarray:
    """(scale * n, n) interpolation matrix along one axis."""
    out = np.arange(n * scale, dtype=np.float64)
    src = (out + 0.5) / scale - 0.5
    i0 = np.floor(src).astype(np.int64)
    f = src - i0
    m = np.zeros((n * scale, n), dtype=np.float64)
    rows = np.arange(n * scale)
    for k in range(-1, 3):
        idx = np.clip(i0 + k, 0, n - 1)
        np.add.at(m, (rows, idx), _cubic(f - k))
    return m.astype(np.float32)


def bicubic_upsample_np(x: np.ndarray, scale: int) -> np.ndarray:
    """(..., h, w) -> (..., scale*h, scale*w) float32, as torch's bicubic ``scale_factor``."""
    x = np.asarray(x, dtype=np.float32)
    h, w = x.shape[-2:]
    my, mx = _matrix(h, scale), _matrix(w, scale)
    return np.matmul(np.matmul(my, x), mx.T)
