"""Property tests of the pure window algebra: coverage, overlaps, weights that sum to one."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slimdiffsr.engine.tiling import (
    MAX_TILE,
    TileGrid,
    TilingError,
    Window,
    aligned_end,
    axis_starts,
    axis_weights,
    blend_overlap,
    check_tiling,
    clip_with_padding,
    column_chunks,
    halo_sides,
    intersection,
    largest_tile,
    output_block_size,
    plan_geometry,
    raised_cosine_ramp,
    read_window,
    tile_unit,
)

SCALES = st.sampled_from([2, 4, 8])


@st.composite
def axis_setup(draw):
    """A valid (length, tile, overlap, scale, margin) along one axis."""
    scale = draw(SCALES)
    unit = 16 // np.gcd(16, scale)
    margin = draw(st.integers(0, 6))
    overlap = draw(st.integers(2 * margin + 1, 2 * margin + 40))
    tile = unit * draw(st.integers(overlap // unit + 1, overlap // unit + 12))
    length = draw(st.integers(1, 700))
    return length, tile, overlap, scale, margin


@given(axis_setup())
@settings(max_examples=300, deadline=None)
def test_axis_tiles_cover_with_overlap(setup):
    length, tile, overlap, _, _ = setup
    starts = axis_starts(length, tile, overlap)
    size = min(length, tile)
    assert starts[0] == 0
    assert starts[-1] + size == length  # the last tile snaps to the edge
    assert starts == sorted(set(starts))
    for a, b in zip(starts, starts[1:]):
        assert b - a <= tile - overlap  # consecutive tiles overlap by at least `overlap`
        assert b > a


@given(axis_setup())
@settings(max_examples=300, deadline=None)
def test_axis_weights_partition_of_unity(setup):
    length, tile, overlap, scale, margin = setup
    starts, weights = axis_weights(length, tile, overlap, scale, margin)
    total = np.zeros(length * scale)
    for s0, w in zip(starts, weights):
        assert w.shape == (min(length, tile) * scale,)
        assert (w >= 0).all() and (w <= 1 + 1e-6).all()
        total[s0 * scale : s0 * scale + w.size] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-5)


@given(axis_setup())
@settings(max_examples=200, deadline=None)
def test_interior_margins_have_zero_weight_and_edges_full(setup):
    length, tile, overlap, scale, margin = setup
    starts, weights = axis_weights(length, tile, overlap, scale, margin)
    m = margin * scale
    for i, w in enumerate(weights):
        if i > 0:
            assert (w[:m] == 0).all()
        if i < len(weights) - 1 and m:
            assert (w[-m:] == 0).all()
    # at the raster's own edges no other tile competes: full weight
    assert weights[0][0] == pytest.approx(1.0)
    assert weights[-1][-1] == pytest.approx(1.0)


def test_ramps_are_complementary_at_nominal_overlap():
    r = raised_cosine_ramp(24)
    np.testing.assert_allclose(r + r[::-1], 1.0, atol=1e-12)
    # with the nominal overlap the raw weights already add to one (no renormalisation)
    starts, w = axis_weights(length=128 + 96 * 3, tile=128, overlap=32, scale=4, margin=4)
    assert np.diff(starts).tolist() == [96, 96, 96]
    assert w[1].max() == pytest.approx(1.0)


@given(
    st.integers(-50, 50),
    st.integers(-50, 50),
    st.integers(1, 80),
    st.integers(1, 80),
    st.integers(1, 60),
    st.integers(1, 60),
)
def test_clip_with_padding_rebuilds_shape(r, c, h, w, H, W):
    win, bounds = (
        Window(row_off=r, col_off=c, height=h, width=w),
        Window(row_off=0, col_off=0, height=H, width=W),
    )
    if intersection(win, bounds) is None:
        with pytest.raises(TilingError):
            clip_with_padding(win, bounds)
        return
    inside, (top, bottom, left, right) = clip_with_padding(win, bounds)
    assert inside.height + top + bottom == h and inside.width + left + right == w
    assert min(top, bottom, left, right) >= 0
    assert intersection(inside, bounds) == inside


@given(st.integers(1, 400), st.integers(1, 400), SCALES)
@settings(max_examples=100, deadline=None)
def test_grid_tiles_cover_region_and_chunks_cover_width(h, w, scale):
    region = Window(row_off=7, col_off=11, height=h, width=w)
    grid = TileGrid(region, tile=64, overlap=24, scale=scale, margin=4)
    cover = np.zeros((h, w), dtype=int)
    for t in grid:
        rel = t.window.relative_to(region)
        cover[rel.slices()] += 1
        assert t.window.shape == (grid.tile_height, grid.tile_width)
    assert (cover >= 1).all()
    block = output_block_size(scale)
    chunks = column_chunks(grid, max_cols=block * 2, block=block)
    edges = [c.x0 for c in chunks] + [chunks[-1].x1]
    assert edges[0] == 0 and edges[-1] == w * scale
    assert all(e % block == 0 for e in edges[:-1])
    for ch in chunks:  # every column with weight in the chunk has its tile in the chunk
        covered = np.zeros(ch.x1 - ch.x0)
        for c in ch.cols:
            a = grid.col_starts[c] * scale
            wc = grid.col_weight(c)
            lo, hi = max(a, ch.x0), min(a + wc.size, ch.x1)
            covered[lo - ch.x0 : hi - ch.x0] += wc[lo - a : hi - a]
        np.testing.assert_allclose(covered, 1.0, atol=1e-5)


@given(st.integers(0, 2000), st.integers(0, 10), st.integers(1, 3000))
def test_aligned_end_is_block_aligned_and_not_past_final(final, start_blocks, total):
    block = 64
    start = start_blocks * block
    if start > total:
        return
    end = aligned_end(final, start, block, total)
    if final >= total:
        assert end == total
    else:
        assert end <= max(final, start)
        assert (end - start) % block == 0


def test_check_tiling_names_the_problem():
    with pytest.raises(TilingError, match="multiple of 16"):
        check_tiling(tile=30, overlap=12, scale=4)
    with pytest.raises(TilingError, match="overlap"):
        check_tiling(tile=64, overlap=8, scale=4, margin=4)
    with pytest.raises(TilingError, match="overlap"):
        check_tiling(tile=64, overlap=64, scale=4)
    check_tiling(tile=128, overlap=32, scale=4)
    assert output_block_size(4) % 64 == 0 and output_block_size(3) % 48 == 0


def test_tile_borders_are_inside():
    grid = TileGrid(
        Window(row_off=0, col_off=0, height=300, width=200), tile=128, overlap=32, scale=4
    )
    rows, cols = grid.tile_borders()
    assert all(0 < r < 1200 for r in rows) and all(0 < c < 800 for c in cols)
    assert 96 * 4 in rows and 128 * 4 in rows


# -- tile geometry from a memory budget ----------------------------------------------------------
@given(
    st.integers(1, 3000),
    st.integers(1, 3000),
    SCALES,
    st.sampled_from([0, 4, 16, 32]),
    st.floats(50, 5000),
    st.floats(2**26, 2**33),
)
@settings(max_examples=300, deadline=None)
def test_plan_geometry_fits_the_budget_with_few_tiles(h, w, scale, halo, bpp, budget):
    unit = tile_unit(scale)
    tmax = min(largest_tile(budget, bpp, scale, halo), MAX_TILE)
    if tmax < blend_overlap() + unit:
        with pytest.raises(TilingError, match="memory budget"):
            plan_geometry(h, w, scale=scale, halo=halo, bytes_per_pixel=bpp, budget_bytes=budget)
        return
    g = plan_geometry(h, w, scale=scale, halo=halo, bytes_per_pixel=bpp, budget_bytes=budget)
    assert g.batch_bytes <= budget  # one batch through the model fits
    assert g.tile % unit == 0 and g.tile <= tmax and g.overlap == blend_overlap()
    grid = TileGrid(Window(row_off=0, col_off=0, height=h, width=w), g.tile, g.overlap, scale)
    assert len(grid) == g.tiles
    if h <= tmax and w <= tmax:
        assert g.tiles == 1  # a region that fits runs whole
    for length, n in ((h, grid.shape[0]), (w, grid.shape[1])):
        fewest = 1 if length <= tmax else -(-(length - g.overlap) // (tmax - g.overlap))
        assert n <= fewest + 1  # no more tiles than needed (+1: the other axis set the size)


def test_default_model_geometry_small_raster_is_one_tile():
    g = plan_geometry(256, 256, scale=4, halo=32, bytes_per_pixel=1300, budget_bytes=4 * 2**30)
    assert g.tiles == 1 and g.tile == 256
    g = plan_geometry(384, 320, scale=4, halo=32, bytes_per_pixel=1300, budget_bytes=2**30)
    assert g.tiles > 1 and g.batch_bytes <= 2**30
    # far bigger tiles than the old fixed 128 px: less halo recomputed per delivered pixel
    assert g.tile > 128


@given(
    st.integers(0, 200),
    st.integers(0, 200),
    st.integers(1, 120),
    st.integers(1, 120),
    st.integers(0, 40),
)
@settings(max_examples=300, deadline=None)
def test_halo_stops_at_the_raster_edges(r, c, h, w, halo):
    bounds = Window(row_off=0, col_off=0, height=320, width=320)
    win = Window(row_off=r, col_off=c, height=h, width=w)
    top, bottom, left, right = halo_sides(win, halo, bounds)
    assert top == min(halo, r) and left == min(halo, c)
    assert bottom == max(0, min(halo, 320 - r - h)) and right == max(0, min(halo, 320 - c - w))
    rw = read_window(win, (top, bottom, left, right))
    if win.row_end <= 320 and win.col_end <= 320:
        assert intersection(rw, bounds) == rw  # nothing is read (mirrored) beyond the raster
    assert halo_sides(win, halo, None) == (halo,) * 4
