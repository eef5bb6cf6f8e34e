"""The trust layer: how far the SR output strays from the input it was made from.

Consistency is ``|down(SR) - LR|`` per band and LR pixel, in the input's units, where ``down`` is
the mean over each ``scale x scale`` block (the inverse of the SR's footprint on the LR grid). A
faithful SR changes detail, not the local averages, so large values flag invented or shifted
content. Statistics accumulate block by block as the output is written (fixed-bin histograms give
percentiles without holding the map), so the QA costs no extra pass over the output.

The seam metric compares the mean absolute gradient across tile borders with the mean elsewhere:
about 1 means the tile grid is invisible; naive tiling gives clearly more.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

HIST_BINS = 4096


def downsample_mean(x: np.ndarray, scale: int) -> np.ndarray:
    """(bands, H, W) -> (bands, H/scale, W/scale) block means, float32. H, W multiples of scale."""
    c, h, w = x.shape
    if h % scale or w % scale:
        raise ValueError(f"shape {x.shape} is not a multiple of scale {scale}")
    v = x.astype(np.float32, copy=False).reshape(c, h // scale, scale, w // scale, scale)
    return v.mean(axis=(2, 4), dtype=np.float32)


def consistency_map(
    sr: np.ndarray, lr: np.ndarray, scale: int, valid: np.ndarray | None = None
) -> np.ndarray:
    """``|down(sr) - lr|`` (bands, h, w) float32 in the input's units; NaN where not ``valid``."""
    diff = np.abs(downsample_mean(sr, scale) - lr.astype(np.float32))
    if valid is not None:
        diff[:, ~valid] = np.nan
    return diff


class ConsistencyStats:
    """Running per-band mean, max and histogram percentiles of a consistency map."""

    def __init__(self, value_range: Sequence[float], bins: int = HIST_BINS) -> None:
        self.range = np.asarray(value_range, dtype=np.float64)
        self.bins = bins
        n = self.range.size
        self.hist = np.zeros((n, bins), dtype=np.int64)
        self.sum = np.zeros(n)
        self.count = np.zeros(n, dtype=np.int64)
        self.max = np.zeros(n)

    def update(self, diff: np.ndarray) -> None:
        for b in range(diff.shape[0]):
            v = diff[b][np.isfinite(diff[b])]
            if v.size == 0:
                continue
            self.sum[b] += float(v.sum(dtype=np.float64))
            self.count[b] += v.size
            self.max[b] = max(self.max[b], float(v.max()))
            idx = np.minimum((v / self.range[b] * self.bins).astype(np.int64), self.bins - 1)
            self.hist[b] += np.bincount(idx, minlength=self.bins)

    def percentile(self, band: int, q: float) -> float:
        n = self.count[band]
        if n == 0:
            return float("nan")
        cum = np.cumsum(self.hist[band])
        i = int(np.searchsorted(cum, q / 100.0 * n))
        return float((i + 1) / self.bins * self.range[band])  # upper edge of the bin

    def mean(self) -> float:
        """Mean over all bands' valid pixels (NaN when there are none)."""
        total = self.count.sum()
        return float(self.sum.sum() / total) if total else float("nan")

    def summary(self) -> dict[str, Any]:
        per_band = []
        for b in range(self.range.size):
            n = int(self.count[b])
            per_band.append(
                {
                    "band": b + 1,
                    "mean": float(self.sum[b] / n) if n else None,
                    "p50": self.percentile(b, 50) if n else None,
                    "p95": self.percentile(b, 95) if n else None,
                    "p99": self.percentile(b, 99) if n else None,
                    "max": float(self.max[b]) if n else None,
                    "pixels": n,
                }
            )
        return {
            "mean": self.mean(),
            "per_band": per_band,
            "bin_width": (self.range / self.bins).tolist(),
        }


class SeamStats:
    """Mean absolute gradient across tile borders vs elsewhere, accumulated block by block.

    ``row_borders``/``col_borders`` are HR positions ``b``: the step between pixel ``b-1`` and
    ``b``. "Elsewhere" is sampled every ``sample``-th step to keep the cost small. Steps across the
    edges of the blocks passed to :meth:`update` are not seen.
    """

    def __init__(self, row_borders: Sequence[int], col_borders: Sequence[int], sample: int = 8):
        self.rows = np.asarray(sorted(row_borders), dtype=np.int64)
        self.cols = np.asarray(sorted(col_borders), dtype=np.int64)
        self.sample = sample
        self.sums = np.zeros(2)  # border, elsewhere
        self.counts = np.zeros(2)

    def _axis(self, img: np.ndarray, valid: np.ndarray | None, pos0: int, borders: np.ndarray):
        """Steps between columns j-1 and j of ``img`` (C, H, W); column 0 is at ``pos0``."""
        w = img.shape[-1]
        steps = np.arange(1, w)
        is_border = np.isin(pos0 + steps, borders)
        picks = (steps[is_border], steps[~is_border & ((pos0 + steps) % self.sample == 0)])
        for k, j in enumerate(picks):
            if j.size == 0:
                continue
            d = np.abs(
                img[:, :, j].astype(np.float32).mean(axis=0)
                - img[:, :, j - 1].astype(np.float32).mean(axis=0)
            )
            if valid is not None:
                ok = valid[:, j] & valid[:, j - 1]
                self.sums[k] += float(d[ok].sum(dtype=np.float64))
                self.counts[k] += int(ok.sum())
            else:
                self.sums[k] += float(d.sum(dtype=np.float64))
                self.counts[k] += d.size

    def update(self, img: np.ndarray, y0: int, x0: int, valid: np.ndarray | None = None) -> None:
        """Add a (bands, H, W) or (H, W) block whose top-left pixel is at HR (y0, x0)."""
        if img.ndim == 2:
            img = img[None]
        self._axis(img, valid, x0, self.cols)
        self._axis(img.transpose(0, 2, 1), None if valid is None else valid.T, y0, self.rows)

    def summary(self) -> dict[str, Any]:
        b, o = (
            float(self.sums[k] / self.counts[k]) if self.counts[k] else float("nan") for k in (0, 1)
        )
        ratio = b / o if self.counts.all() and o > 0 else float("nan")
        return {"border_gradient": b, "elsewhere_gradient": o, "ratio": ratio}


def seam_metric(
    image: np.ndarray,
    row_borders: Sequence[int],
    col_borders: Sequence[int],
    valid: np.ndarray | None = None,
    sample: int = 1,
) -> dict[str, Any]:
    """Seam metric of a whole (bands, H, W) or (H, W) image: ``ratio`` ~ 1 means no seams."""
    stats = SeamStats(row_borders, col_borders, sample=sample)
    stats.update(np.asarray(image), 0, 0, valid)
    return stats.summary()


def window_sums(
    diff: np.ndarray, windows: Sequence[tuple[int, int, int, int]]
) -> list[tuple[list[float], int]]:
    """Per-band sums and valid-pixel counts of a (bands, h, w) map (NaN = invalid) over windows.

    ``windows`` are ``(row0, row1, col0, col1)`` in the map's pixels; uses one integral image, so
    many overlapping tile windows cost one pass.
    """
    ok = np.isfinite(diff)
    c, h, w = diff.shape
    ii = np.zeros((c + 1, h + 1, w + 1))
    ii[:c, 1:, 1:] = np.where(ok, diff, 0.0).cumsum(1, dtype=np.float64).cumsum(2)
    ii[c, 1:, 1:] = ok.all(axis=0).cumsum(0, dtype=np.float64).cumsum(1)
    out = []
    for r0, r1, c0, c1 in windows:
        v = ii[:, r1, c1] - ii[:, r0, c1] - ii[:, r1, c0] + ii[:, r0, c0]
        out.append((v[:c].tolist(), int(round(v[c]))))
    return out


def enforce_lr_consistency(sr: Any, lr: Any, scale: int, iterations: int = 3) -> Any:
    """Replace the SR's low frequencies with the input's (iterative back-projection).

    ``sr`` (B, C, s*h, s*w) and ``lr`` (B, C, h, w) in model units: each step adds the bicubic
    upsampling of ``lr - down(sr)``, so ``down(sr)`` converges to ``lr`` while the SR's detail
    above the LR Nyquist frequency is kept.
    """
    import torch.nn.functional as F

    for _ in range(iterations):
        residual = lr - F.avg_pool2d(sr, scale)
        sr = sr + F.interpolate(residual, scale_factor=scale, mode="bicubic", align_corners=False)
    return sr


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_finite(data), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        return _finite(obj.item())
    return obj
