"""Window algebra for tiled super-resolution: where tiles go and how much each one counts.

The idea, in low-resolution (LR) pixels along one axis of length ``L``: tiles of ``tile`` pixels
start every ``tile - overlap`` pixels from 0, and the last one snaps to the far edge, so every
pixel is covered, every tile has the same shape and neighbours overlap by at least ``overlap``.
Each tile is read with a ``halo`` of context on every side and only its centre is kept.

Overlapping outputs are blended with raised-cosine weights. At an *interior* edge (one shared with
a neighbour) the outer ``margin`` pixels get weight 0, where the tile saw the least context, then
a cosine ramp rises to 1 over ``overlap - 2 * margin`` pixels; at the raster's own edges the weight
stays 1. A neighbour's ramp is the mirror image, so with the nominal overlap the two weights add
to exactly 1; :func:`axis_weights` still divides by the summed weights, so the snapped last tile
and any triple overlap are exact too. Weights are separable (row weight x column weight) and are
known before any tile runs, so each tile's contribution is final the moment it is added: no
weight raster is accumulated.

Everything here is pure (numpy only, no I/O, no torch), property-tested in tests/test_tiling.py.
Windows are frozen values; operations return new ones, as in ``rasterio.windows``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from slimdiffsr.errors import InputError

DEFAULT_TILE = 128
DEFAULT_OVERLAP = 32
DEFAULT_MARGIN = 4
HR_MULTIPLE = 16  # tile * scale must be a multiple of this (the networks' stride)
BLEND_RAMP = 8  # LR px of raised-cosine ramp between neighbours (hides the seam; 32 HR px at x4)
MAX_TILE = 2048  # LR px: beyond this a tile buys nothing (halo share < 4 %) but latency


class TilingError(InputError):
    """Tile size, overlap, margin or scale are inconsistent."""


@dataclass(frozen=True, order=True, kw_only=True)
class Window:
    """A rectangle of pixels: ``row_off``/``col_off`` may be negative (beyond the raster).

    Keyword-only: rasterio's ``Window`` takes (col_off, row_off, width, height) positionally, the
    other order; ``engine.raster_io.to_rio`` converts.
    """

    row_off: int
    col_off: int
    height: int
    width: int

    def __post_init__(self) -> None:
        for name in ("row_off", "col_off", "height", "width"):
            if not isinstance(getattr(self, name), int | np.integer):
                raise TypeError(f"Window.{name} must be an int, got {getattr(self, name)!r}")
        if self.height < 0 or self.width < 0:
            raise ValueError(f"negative window size: {self}")

    @property
    def row_end(self) -> int:
        return self.row_off + self.height

    @property
    def col_end(self) -> int:
        return self.col_off + self.width

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    def scaled(self, s: int) -> Window:
        """The same ground area at ``s`` times the resolution."""
        return Window(
            row_off=self.row_off * s,
            col_off=self.col_off * s,
            height=self.height * s,
            width=self.width * s,
        )

    def shifted(self, drow: int, dcol: int) -> Window:
        return Window(
            row_off=self.row_off + drow,
            col_off=self.col_off + dcol,
            height=self.height,
            width=self.width,
        )

    def padded(self, n: int) -> Window:
        """Grown by ``n`` pixels on every side."""
        return Window(
            row_off=self.row_off - n,
            col_off=self.col_off - n,
            height=self.height + 2 * n,
            width=self.width + 2 * n,
        )

    def relative_to(self, other: Window) -> Window:
        """This window in the coordinates of ``other``'s top-left corner."""
        return self.shifted(-other.row_off, -other.col_off)

    def slices(self) -> tuple[slice, slice]:
        """Row and column slices for indexing an array (offsets must be >= 0)."""
        return slice(self.row_off, self.row_end), slice(self.col_off, self.col_end)

    def key(self) -> str:
        """A stable text key (manifest entries)."""
        return f"r{self.row_off}c{self.col_off}h{self.height}w{self.width}"


def intersection(a: Window, b: Window) -> Window | None:
    """The overlap of two windows, or None when they do not overlap."""
    r0, c0 = max(a.row_off, b.row_off), max(a.col_off, b.col_off)
    r1, c1 = min(a.row_end, b.row_end), min(a.col_end, b.col_end)
    if r1 <= r0 or c1 <= c0:
        return None
    return Window(row_off=r0, col_off=c0, height=r1 - r0, width=c1 - c0)


def clip_with_padding(window: Window, bounds: Window) -> tuple[Window, tuple[int, int, int, int]]:
    """Split a window reaching beyond ``bounds`` into the readable part and the padding needed.

    Returns ``(inside, (top, bottom, left, right))``: read ``inside``, then pad by these amounts
    (reflecting the data) to get an array of ``window``'s shape.
    """
    inside = intersection(window, bounds)
    if inside is None:
        raise TilingError(f"window {window} lies outside {bounds}")
    pads = (
        inside.row_off - window.row_off,
        window.row_end - inside.row_end,
        inside.col_off - window.col_off,
        window.col_end - inside.col_end,
    )
    return inside, pads


# -- one axis ----------------------------------------------------------------------------------
def axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile starts along an axis: every ``tile - overlap`` px, the last one snapped to the edge.

    An axis shorter than a tile gets one tile of the axis length (see :func:`axis_tile_size`).
    """
    if length <= 0:
        raise TilingError(f"axis length must be positive, got {length}")
    if not 0 <= overlap < tile:
        raise TilingError(f"overlap must be in [0, tile), got overlap={overlap}, tile={tile}")
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def axis_tile_size(length: int, tile: int) -> int:
    return min(length, tile)


def raised_cosine_ramp(n: int) -> np.ndarray:
    """``n`` samples rising from ~0 to ~1; ramp(i) + ramp(n - 1 - i) == 1 exactly."""
    t = (np.arange(n, dtype=np.float64) + 0.5) / n
    return 0.5 - 0.5 * np.cos(np.pi * t)


def tile_weight(
    size: int, scale: int, margin: int, ramp: int, interior_before: bool, interior_after: bool
) -> np.ndarray:
    """Un-normalised weight of one tile along one axis, in HR pixels (``size * scale`` values).

    ``margin`` and ``ramp`` are in LR pixels; they apply only on interior sides.
    """
    n = size * scale
    w = np.ones(n, dtype=np.float64)
    m, r = margin * scale, ramp * scale
    up = raised_cosine_ramp(r)
    if interior_before:
        w[:m] = 0.0
        w[m : m + r] *= up[: max(0, min(r, n - m))]
    if interior_after:
        w[n - m :] = 0.0
        lo = max(0, n - m - r)
        w[lo : n - m] *= up[::-1][r - (n - m - lo) :]
    return w


def axis_weights(
    length: int, tile: int, overlap: int, scale: int, margin: int = DEFAULT_MARGIN
) -> tuple[list[int], list[np.ndarray]]:
    """Tile starts (LR) and each tile's *normalised* HR weight along one axis.

    The weights of all tiles add up to 1 at every HR pixel of the axis.
    """
    starts = axis_starts(length, tile, overlap)
    size = axis_tile_size(length, tile)
    ramp = overlap - 2 * margin
    if len(starts) > 1 and ramp < 1:
        raise TilingError(f"overlap ({overlap}) must exceed twice the margin ({margin})")
    raw = [
        tile_weight(size, scale, margin, ramp, i > 0, i < len(starts) - 1)
        for i in range(len(starts))
    ]
    total = np.zeros(length * scale, dtype=np.float64)
    for s0, w in zip(starts, raw):
        total[s0 * scale : s0 * scale + w.size] += w
    if np.any(total <= 0):  # cannot happen for valid arguments: property-tested
        raise TilingError("tile weights leave pixels uncovered")
    norm = [
        (w / total[s0 * scale : s0 * scale + w.size]).astype(np.float32)
        for s0, w in zip(starts, raw)
    ]
    return starts, norm


# -- two axes ----------------------------------------------------------------------------------
def check_tiling(tile: int, overlap: int, scale: int, margin: int = DEFAULT_MARGIN) -> None:
    """Raise :class:`TilingError` naming the argument that is wrong."""
    if scale < 1:
        raise TilingError(f"scale must be >= 1, got {scale}")
    if tile < 1:
        raise TilingError(f"tile must be positive, got {tile}")
    if (tile * scale) % HR_MULTIPLE:
        ok = HR_MULTIPLE // math.gcd(HR_MULTIPLE, scale)
        raise TilingError(
            f"tile * scale must be a multiple of {HR_MULTIPLE}: tile {tile} x{scale} = "
            f"{tile * scale}; use a tile that is a multiple of {ok}"
        )
    if not 0 <= overlap < tile:
        raise TilingError(f"overlap must be in [0, tile), got overlap={overlap}, tile={tile}")
    if margin < 0:
        raise TilingError(f"margin must be >= 0, got {margin}")
    if overlap <= 2 * margin:
        raise TilingError(
            f"overlap ({overlap}) must exceed twice the zero-weight margin ({2 * margin} px)"
        )


# -- tile geometry from a memory budget ----------------------------------------------------------
def tile_unit(scale: int) -> int:
    """LR tile sizes must be multiples of this so that ``tile * scale`` is a stride multiple."""
    return HR_MULTIPLE // math.gcd(HR_MULTIPLE, scale)


def blend_overlap(margin: int = DEFAULT_MARGIN, ramp: int = BLEND_RAMP) -> int:
    """The smallest overlap blending needs: the zero-weight margins plus the ramp.

    Context is the halo's job (it is cropped off), so the overlap only has to hide the seam.
    """
    return 2 * margin + ramp


def largest_tile(
    budget_bytes: float, bytes_per_pixel: float, scale: int, halo: int, batch_size: int = 1
) -> int:
    """The largest LR tile (a multiple of :func:`tile_unit`) whose batch fits ``budget_bytes``.

    ``bytes_per_pixel`` is the model's activation memory per *output* pixel at the chosen
    precision; a tile computes ``((tile + 2 * halo) * scale) ** 2`` output pixels.
    Returns 0 when not even the smallest tile fits.
    """
    if budget_bytes <= 0 or bytes_per_pixel <= 0:
        raise TilingError("the memory budget and bytes per pixel must be positive")
    side_hr = math.sqrt(budget_bytes / (bytes_per_pixel * batch_size))
    unit = tile_unit(scale)
    tile = (int(side_hr // scale) - 2 * halo) // unit * unit
    return max(0, min(tile, MAX_TILE))


@dataclass(frozen=True)
class Geometry:
    """Tile size and overlap chosen for one region, and the memory one batch will take."""

    tile: int
    overlap: int
    batch_size: int
    tiles: int
    batch_bytes: float

    def describe(self) -> str:
        n = self.tiles
        return (
            f"{n} tile{'' if n == 1 else 's'} of {self.tile} px (overlap {self.overlap}), "
            f"~{self.batch_bytes / 2**20:.0f} MB per batch of {self.batch_size}"
        )


def _axis_tiles(length: int, tmax: int, overlap: int, unit: int) -> tuple[int, int]:
    """(count, tile) covering ``length`` with the fewest tiles of at most ``tmax``, as even as
    possible, so the snapped last tile repeats little work."""
    if length <= tmax:
        return 1, length
    n = math.ceil((length - overlap) / (tmax - overlap))
    t = math.ceil((length + (n - 1) * overlap) / n)
    return n, min(tmax, -(-t // unit) * unit)


def plan_geometry(
    height: int,
    width: int,
    *,
    scale: int,
    halo: int,
    bytes_per_pixel: float,
    budget_bytes: float,
    batch_size: int = 1,
    margin: int = DEFAULT_MARGIN,
    max_tile: int = MAX_TILE,
) -> Geometry:
    """Tile size and overlap for a ``height`` x ``width`` LR region from a memory budget.

    The largest tile that fits (:func:`largest_tile`), then shrunk to split each axis into
    near-equal tiles; a region that fits whole is one tile. The overlap is the blending minimum
    (:func:`blend_overlap`). Raises :class:`TilingError` when the budget cannot hold a tile.
    """
    if height < 1 or width < 1:
        raise TilingError(f"empty region {height}x{width}")
    unit = tile_unit(scale)
    overlap = blend_overlap(margin)
    tmax = min(largest_tile(budget_bytes, bytes_per_pixel, scale, halo, batch_size), max_tile)
    if tmax < overlap + unit:
        need = ((overlap + unit + 2 * halo) * scale) ** 2 * bytes_per_pixel * batch_size
        raise TilingError(
            f"a memory budget of {budget_bytes / 2**20:.0f} MB holds no tile for this model "
            f"(the smallest needs ~{need / 2**20:.0f} MB); raise --memory-mb or lower --batch-size"
        )
    (nr, tr), (nc, tc) = (
        _axis_tiles(height, tmax, overlap, unit),
        _axis_tiles(width, tmax, overlap, unit),
    )
    tile = max(tr if nr > 1 else 0, tc if nc > 1 else 0)
    if tile == 0:  # the whole region is one tile
        tile = max(-(-max(height, width) // unit) * unit, overlap + unit)
    tile = max(tile, overlap + unit)
    grid_rows = len(axis_starts(height, tile, overlap))
    grid_cols = len(axis_starts(width, tile, overlap))
    th, tw = min(height, tile), min(width, tile)
    batch_bytes = (th + 2 * halo) * (tw + 2 * halo) * scale**2 * bytes_per_pixel * batch_size
    return Geometry(tile, overlap, batch_size, grid_rows * grid_cols, batch_bytes)


def halo_sides(window: Window, halo: int, bounds: Window | None) -> tuple[int, int, int, int]:
    """Context (top, bottom, left, right) a tile gets: ``halo`` where the raster has pixels,
    clipped at its edges (``bounds``), where mirrored pixels would add work but no information.

    ``bounds`` None keeps the full halo on every side (mirrored at the edges).
    """
    if bounds is None:
        return halo, halo, halo, halo
    return (
        max(0, min(halo, window.row_off - bounds.row_off)),
        max(0, min(halo, bounds.row_end - window.row_end)),
        max(0, min(halo, window.col_off - bounds.col_off)),
        max(0, min(halo, bounds.col_end - window.col_end)),
    )


def read_window(window: Window, sides: tuple[int, int, int, int]) -> Window:
    """``window`` grown by (top, bottom, left, right) pixels."""
    t, b, left, r = sides
    return Window(
        row_off=window.row_off - t,
        col_off=window.col_off - left,
        height=window.height + t + b,
        width=window.width + left + r,
    )


@dataclass(frozen=True)
class Tile:
    """One tile: its grid position and its LR window in raster coordinates."""

    row: int  # index in the grid
    col: int
    window: Window  # LR, raster coordinates

    def read_window(self, halo: int) -> Window:
        return self.window.padded(halo)


@dataclass(frozen=True)
class TileGrid:
    """Tiles over ``region`` (LR, raster coordinates) with their separable blending weights."""

    region: Window
    tile: int = DEFAULT_TILE
    overlap: int = DEFAULT_OVERLAP
    scale: int = 4
    margin: int = DEFAULT_MARGIN
    bounds: Window | None = None  # the raster's extent: halos stop at its edges (None: mirror)

    def __post_init__(self) -> None:
        check_tiling(self.tile, self.overlap, self.scale, self.margin)
        if self.region.height < 1 or self.region.width < 1:
            raise TilingError(f"empty region {self.region}")

    @cached_property
    def _rows(self) -> tuple[list[int], list[np.ndarray]]:
        return axis_weights(self.region.height, self.tile, self.overlap, self.scale, self.margin)

    @cached_property
    def _cols(self) -> tuple[list[int], list[np.ndarray]]:
        return axis_weights(self.region.width, self.tile, self.overlap, self.scale, self.margin)

    @property
    def row_starts(self) -> list[int]:
        """Tile row starts relative to the region."""
        return self._rows[0]

    @property
    def col_starts(self) -> list[int]:
        return self._cols[0]

    @property
    def tile_height(self) -> int:
        return axis_tile_size(self.region.height, self.tile)

    @property
    def tile_width(self) -> int:
        return axis_tile_size(self.region.width, self.tile)

    @property
    def shape(self) -> tuple[int, int]:
        """Number of tile rows and columns."""
        return len(self.row_starts), len(self.col_starts)

    def __len__(self) -> int:
        return self.shape[0] * self.shape[1]

    def tile_at(self, row: int, col: int) -> Tile:
        w = Window(
            row_off=self.region.row_off + self.row_starts[row],
            col_off=self.region.col_off + self.col_starts[col],
            height=self.tile_height,
            width=self.tile_width,
        )
        return Tile(row, col, w)

    def __iter__(self) -> Iterator[Tile]:
        for r in range(len(self.row_starts)):
            for c in range(len(self.col_starts)):
                yield self.tile_at(r, c)

    def row_weight(self, row: int) -> np.ndarray:
        """Normalised HR weights along the rows of tile row ``row`` (float32)."""
        return self._rows[1][row]

    def col_weight(self, col: int) -> np.ndarray:
        return self._cols[1][col]

    def halo_sides(self, tile: Tile, halo: int) -> tuple[int, int, int, int]:
        """Context (top, bottom, left, right) of ``tile``; see :func:`halo_sides`."""
        return halo_sides(tile.window, halo, self.bounds)

    def read_window(self, tile: Tile, halo: int) -> Window:
        """The LR window read for ``tile``: its window plus its context."""
        return read_window(tile.window, self.halo_sides(tile, halo))

    def hr_window(self, tile: Tile) -> Window:
        """The tile's HR window relative to the region's HR origin."""
        return tile.window.relative_to(self.region).scaled(self.scale)

    def hr_shape(self) -> tuple[int, int]:
        return self.region.height * self.scale, self.region.width * self.scale

    def row_final_after(self, row: int) -> int:
        """HR rows (relative) that no later tile row touches once tile row ``row`` is done."""
        if row + 1 < len(self.row_starts):
            return self.row_starts[row + 1] * self.scale
        return self.region.height * self.scale

    def tile_borders(self) -> tuple[list[int], list[int]]:
        """HR row and column positions (relative) of tile edges inside the region (seam checks)."""
        s = self.scale
        rows = {e * s for r in self.row_starts for e in (r, r + self.tile_height)}
        cols = {e * s for c in self.col_starts for e in (c, c + self.tile_width)}
        h, w = self.hr_shape()
        return sorted(r for r in rows if 0 < r < h), sorted(c for c in cols if 0 < c < w)


# -- output blocks and column chunks -----------------------------------------------------------
def output_block_size(scale: int, target: int = 256) -> int:
    """A GeoTIFF block size (HR px) that is a multiple of 16 * scale, close to ``target``.

    Then every block maps to whole LR pixels and the LR QA layer's blocks are multiples of 16.
    """
    unit = HR_MULTIPLE * scale
    return unit * max(1, round(target / unit))


@dataclass(frozen=True)
class Chunk:
    """A vertical band of the output (HR columns ``x0:x1``, relative) and the tile columns in it.

    Wide rasters are processed chunk by chunk so that the blending buffer is bounded by the chunk
    width, not the raster width; tiles straddling a chunk edge are computed for both chunks.
    """

    index: int
    x0: int
    x1: int
    cols: tuple[int, ...]


def column_chunks(grid: TileGrid, max_cols: int, block: int) -> list[Chunk]:
    """Split the region's HR width into block-aligned chunks of at most ``max_cols`` columns."""
    h_width = grid.region.width * grid.scale
    step = max(block, (max_cols // block) * block)
    edges = list(range(0, h_width, step)) + [h_width]
    chunks = []
    for i, (x0, x1) in enumerate(zip(edges[:-1], edges[1:])):
        cols = []
        for c, start in enumerate(grid.col_starts):
            w = grid.col_weight(c)
            nz = np.flatnonzero(w)
            a, b = start * grid.scale + nz[0], start * grid.scale + nz[-1] + 1
            if a < x1 and b > x0:
                cols.append(c)
        chunks.append(Chunk(i, x0, x1, tuple(cols)))
    return chunks


def aligned_end(final: int, start: int, block: int, total: int) -> int:
    """Largest row ``<= final`` that ends whole blocks after ``start`` (or ``total`` at the end)."""
    if final >= total:
        return total
    return start + ((final - start) // block) * block
