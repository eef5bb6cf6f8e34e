"""The blending buffer: a ring of output rows where weighted tile outputs are summed.

Tile weights are normalised in advance (see ``tiling``), so a pixel is finished as soon as the
last tile touching it has been added: there is no weight raster and no division. The strip spans
one column chunk and ``tile * scale + block`` rows (rounded up to whole blocks), so its size never
depends on the raster's height, and on its width only up to the chunk limit.

Rows live in a ring (row ``y`` at ``y % capacity``), so finishing rows never moves memory. The
capacity is a multiple of the output block height and finished rows start on block boundaries,
so one block row is always contiguous in the ring. Plain numpy, single-threaded: on busy machines
torch's threaded element-wise kernels were far slower for these memory-bound sums.
"""

from __future__ import annotations

import numpy as np

from slimdiffsr.engine.tiling import Window, intersection


class StripAccumulator:
    """Sum of weighted tile outputs for HR rows ``y0:y0+capacity``, columns ``x0:x1``."""

    def __init__(self, bands: int, x0: int, x1: int, y0: int, rows: int, block: int) -> None:
        if y0 % block:
            raise ValueError(f"the strip must start on a block boundary, got y0={y0}")
        self.x0, self.x1, self.y0, self.block = x0, x1, y0, block
        self.capacity = -(-rows // block) * block
        self.buf = np.zeros((bands, self.capacity, x1 - x0), dtype=np.float32)
        self._tmp = np.empty(0, dtype=np.float32)

    @property
    def window(self) -> Window:
        return Window(
            row_off=self.y0, col_off=self.x0, height=self.capacity, width=self.x1 - self.x0
        )

    def _segments(self, r0: int, r1: int) -> list[tuple[int, int, int]]:
        """Absolute rows ``r0:r1`` as (start, stop, ring start) pieces that do not wrap."""
        out = []
        while r0 < r1:
            ring = r0 % self.capacity
            n = min(r1 - r0, self.capacity - ring)
            out.append((r0, r0 + n, ring))
            r0 += n
        return out

    def add(self, hr_window: Window, data: np.ndarray, weight: np.ndarray | None = None) -> None:
        """Add ``data`` (bands, h, w) at ``hr_window`` (region HR), times ``weight`` (h, w) if given."""
        if tuple(data.shape[-2:]) != hr_window.shape:
            raise ValueError(f"data {tuple(data.shape)} does not match window {hr_window}")
        if hr_window.row_end > self.y0 + self.capacity:
            raise ValueError(f"tile {hr_window} reaches past the strip {self.window}")
        inter = intersection(hr_window, self.window)
        if inter is None:
            return
        c0, c1 = inter.col_off - hr_window.col_off, inter.col_end - hr_window.col_off
        d0, d1 = inter.col_off - self.x0, inter.col_end - self.x0
        for r0, r1, ring in self._segments(inter.row_off, inter.row_end):
            s0, s1 = r0 - hr_window.row_off, r1 - hr_window.row_off
            dst = self.buf[:, ring : ring + (r1 - r0), d0:d1]
            src = data[:, s0:s1, c0:c1]
            if weight is None:
                dst += src
            else:
                n = src.size
                if self._tmp.size < n:
                    self._tmp = np.empty(n, dtype=np.float32)
                tmp = self._tmp[:n].reshape(src.shape)
                np.multiply(src, weight[s0:s1, c0:c1], out=tmp)
                dst += tmp

    def rows(self, y: int, y_end: int) -> np.ndarray:
        """A view of finished rows ``y:y_end`` (within one block row of the ring)."""
        if y < self.y0 or y_end > self.y0 + self.capacity:
            raise ValueError(f"rows {y}:{y_end} are not in the strip {self.window}")
        ring = y % self.capacity
        if ring + (y_end - y) > self.capacity:
            raise ValueError(f"rows {y}:{y_end} wrap around the ring; read whole blocks")
        return self.buf[:, ring : ring + (y_end - y)]

    def release(self, y_end: int) -> None:
        """Rows before ``y_end`` are written: clear them for reuse and move the strip down."""
        for r0, r1, ring in self._segments(self.y0, y_end):
            self.buf[:, ring : ring + (r1 - r0)] = 0.0
        self.y0 = y_end
