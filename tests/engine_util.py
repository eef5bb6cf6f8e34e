"""Helpers shared by the engine tests: small real GeoTIFFs, real models, a tile-counting wrapper."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from affine import Affine
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RGB_BYTE = DATA / "rasterio" / "RGB.byte.tif"
NAIP = DATA / "naip" / "m_4709963_se_14_1_20200831.tif"
UTM = "EPSG:32618"
TRANSFORM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4500000.0)


def texture(bands: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth-ish random imagery in [0, 1], (bands, h, w) float32: sums of random sinusoids."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((bands, h, w), np.float32)
    for b in range(bands):
        for _ in range(6):
            fy, fx = rng.uniform(0.01, 0.25, 2)
            ph = rng.uniform(0, 2 * np.pi)
            out[b] += np.sin(fy * yy + fx * xx + ph) * rng.uniform(0.3, 1.0)
        out[b] += rng.normal(0, 0.15, (h, w))
    out -= out.min(axis=(1, 2), keepdims=True)
    out /= out.max(axis=(1, 2), keepdims=True)
    return out


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    nodata: float | None = None,
    crs: Any = UTM,
    transform: Affine = TRANSFORM,
    colorinterp: list | None = None,
    mask: np.ndarray | None = None,
    descriptions: list[str] | None = None,
    **extra: Any,
) -> Path:
    """Write (bands, h, w) ``data`` as a tiled GeoTIFF (optionally with an internal mask)."""
    c, h, w = data.shape
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": c,
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 64,
        "blockysize": 64,
        **extra,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if colorinterp:
            dst.colorinterp = colorinterp
        if descriptions:
            dst.descriptions = tuple(descriptions)
        if mask is not None:
            dst.write_mask(np.where(mask, 255, 0).astype(np.uint8))
    return path


class CountingModel(nn.Module):
    """Wraps a real model and counts the tiles it is asked to super-resolve."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.scale, self.halo = inner.scale, inner.halo
        self.card = getattr(inner, "card", None)
        self.model_hash = getattr(inner, "model_hash", "unknown")
        self.tiles = 0

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        self.tiles += lr.shape[0]
        return self.inner(lr)


@lru_cache(maxsize=2)
def nano_model(scale: int = 4) -> nn.Module:
    """The nano student with seeded random weights; its zero-initialised last conv gets small
    random weights too, so the output is not just the bicubic residual base."""
    from slimdiffsr.models.student import SlimDiffSRStudent

    torch.manual_seed(0)
    m = SlimDiffSRStudent.from_preset("nano", scale=scale)
    last = m._decoder_last_conv()
    if last is not None:
        with torch.no_grad():
            nn.init.normal_(last.weight, std=0.02)
            nn.init.zeros_(last.bias)
    m.model_hash = "nano-random-seed0"
    return m.eval()
