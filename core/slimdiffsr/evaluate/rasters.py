"""Reading evaluation rasters into [0, 1], cropping, resizing and rounding to the source dtype."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slimdiffsr.evaluate.scoring import EvaluateError


def _parse_bands(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        bands = [int(b) for b in text.split(",") if b.strip()]
    except ValueError as e:
        raise EvaluateError(f"--bands must be 1-based integers like 1,2,3, got {text!r}") from e
    if not bands or min(bands) < 1:
        raise EvaluateError(f"--bands must be 1-based integers like 1,2,3, got {text!r}")
    return bands


def _default_bands(path: Path, n: int | None) -> list[int] | None:
    """First ``n`` bands (the model's band count); without a model, RGB from >= 3-band rasters."""
    import rasterio

    with rasterio.open(path) as src:
        count = src.count
    if n is not None:
        if count < n:
            raise EvaluateError(f"{path} has {count} bands; the model needs {n}")
        return list(range(1, n + 1))
    return [1, 2, 3] if count >= 3 else None


@dataclass
class Raster:
    unit: np.ndarray  # (C, H, W) float32 in [0, 1]
    valid: np.ndarray  # (H, W) bool
    dtype: str
    contract: Any  # ValueContract

    @property
    def value_range(self) -> float:
        hi = float(np.mean(self.contract.high))
        lo = float(np.mean(self.contract.low))
        return hi - lo


def read_raster(path: Path, bands: list[int] | None, contract: Any = None) -> Raster:
    """Read bands of a raster (GeoTIFF, PNG, ...) into [0, 1] through a value contract."""
    from slimdiffsr.data.datasets import inspect_raster, read_unit

    info = inspect_raster(path, bands, contract)
    unit, valid = read_unit(info, bands)
    return Raster(unit, valid, info.dtype, info.contract)


def centre_crop(x: np.ndarray, size: int | None, multiple: int) -> np.ndarray:
    """Centre crop (C, H, W) to at most ``size`` per side, then to a multiple of ``multiple``
    (dropping the bottom/right remainder, as ``build_paired_val`` does)."""
    h, w = x.shape[-2:]
    if size is not None:
        ch, cw = min(h, size), min(w, size)
        r, c = (h - ch) // 2, (w - cw) // 2
        x = x[..., r : r + ch, c : c + cw]
        h, w = ch, cw
    hh, ww = h // multiple * multiple, w // multiple * multiple
    if hh == 0 or ww == 0:
        raise EvaluateError(f"an image of {h}x{w} is smaller than the scale {multiple}")
    return np.ascontiguousarray(x[..., :hh, :ww])


def to_dtype_grid(unit: np.ndarray, raster: Raster) -> np.ndarray:
    """Round an SR in [0, 1] the way the engine writes it in the source dtype, and read it back."""
    if np.dtype(raster.dtype).kind not in "ui":
        return np.clip(unit, 0.0, 1.0).astype(np.float32)
    dn = raster.contract.from_model(unit * 2.0 - 1.0, raster.dtype)
    return ((raster.contract.to_model(dn) + 1.0) * 0.5).astype(np.float32)


def resize_to(x: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bicubic resize (C, H, W) to ``hw`` (antialiased when shrinking), clipped to [0, 1]."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
    t = F.interpolate(t, size=hw, mode="bicubic", align_corners=False, antialias=True)
    return t[0].clamp(0, 1).numpy()
