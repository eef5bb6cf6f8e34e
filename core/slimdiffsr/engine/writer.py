"""From model units to raster values: nodata filling on the way in, conversion and masks out.

``fill_invalid`` gives nodata pixels of an LR tile values from their valid neighbours before the
model sees them. :class:`Writer` turns finished output rows (model units) into raster values of the
output dtype with the plan's affine map, keeps nodata pixels nodata (moving a valid pixel that
would read as nodata by one step), and writes the alpha band or the internal mask. No torch here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slimdiffsr.engine.plan import Plan


def fill_invalid(
    data: np.ndarray, valid: np.ndarray, fallback: np.ndarray, iterations: int
) -> np.ndarray:
    """Give invalid pixels the mean of their valid 8-neighbours, growing ``iterations`` rings.

    A pixel's fill depends only on pixels within its distance to valid data, so it does not
    depend on where the tile was cut. Pixels still empty get ``fallback`` (raster-wide band means).
    Returns float32 (bands, h, w).
    """
    out = data.astype(np.float32, copy=True)
    out[:, ~valid] = 0.0
    filled = valid.copy()
    h, w = valid.shape
    for _ in range(iterations):
        holes = ~filled
        if not holes.any():
            break
        f = filled.astype(np.float32)
        vp = np.pad(out * f, ((0, 0), (1, 1), (1, 1)))
        fp = np.pad(f, 1)
        s = np.zeros_like(out)
        n = np.zeros_like(f)
        for dy in range(3):
            for dx in range(3):
                s += vp[:, dy : dy + h, dx : dx + w]
                n += fp[dy : dy + h, dx : dx + w]
        new = holes & (n > 0)
        if not new.any():
            break
        out[:, new] = s[:, new] / n[new]
        filled |= new
    if not filled.all():
        out[:, ~filled] = fallback.astype(np.float32)[:, None]
    return out


class Writer:
    """Converts and writes finished output rows of one run, following its :class:`Plan`."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def to_dn(self, x: np.ndarray) -> np.ndarray:
        """Model units -> output values, in place on the (released) strip rows: the plan's
        affine map per band, then rounding and the output dtype's range. Never clipped to the
        model's domain: values outside it keep their meaning."""
        p = self.plan
        x *= p.dn_scale
        x += p.dn_offset
        dt = np.dtype(p.out_dtype)
        if dt.kind in "ui":
            info = np.iinfo(dt)
            np.rint(x, out=x)
            np.clip(x, info.min, info.max, out=x)
        return x.astype(dt)

    def mask_nodata(self, out: np.ndarray, valid: np.ndarray | None) -> None:
        """Invalid pixels get nodata; valid ones equal to nodata move one step away."""
        nd = self.plan.nodata
        if nd is None:
            return
        if np.isnan(nd):
            if valid is not None:
                out[:, ~valid] = np.nan
            return
        clash = out == nd
        if valid is not None:
            clash &= valid[None]
        if clash.any():  # a valid pixel must not read as nodata: move it by one step
            if out.dtype.kind in "ui":
                nudged = nd - 1 if nd >= np.iinfo(out.dtype).max else nd + 1
            else:
                nudged = np.nextafter(out.dtype.type(nd), out.dtype.type(np.inf))
            out[clash] = nudged
        if valid is not None:
            out[:, ~valid] = nd

    def write(self, dst: Any, out: np.ndarray, valid: np.ndarray | None, hr_win: Any) -> None:
        """Write converted rows ``out`` at ``hr_win`` with the alpha band or mask they need."""
        p = self.plan
        self.mask_nodata(out, valid)
        _, hh, ww = out.shape
        if p.alpha:
            amax = np.iinfo(out.dtype).max if out.dtype.kind in "ui" else 255
            a = np.full((1, hh, ww), amax, dtype=out.dtype)
            if valid is not None:
                a[0, ~valid] = 0
            dst.write(np.concatenate([out, a]), window=hr_win)
        else:
            dst.write(out, window=hr_win)
        if p.mask_kind == "mask":
            m = np.full((hh, ww), 255, np.uint8) if valid is None else np.where(valid, 255, 0)
            dst.write_mask(m.astype(np.uint8), window=hr_win)
