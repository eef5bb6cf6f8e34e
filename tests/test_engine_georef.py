"""The output lines up with the input on the map: CRS, transform, bounds, for full rasters and ROIs.

Real files from ../shared/data: RGB.byte.tif (rotated footprint inside a nodata collar) and a
4-band NAIP tile. The bicubic model keeps these fast; the nano student runs on a small ROI.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from engine_util import NAIP, RGB_BYTE, nano_model
from rasterio.enums import ColorInterp
from rasterio.warp import transform_bounds

from slimdiffsr.engine.run import upscale


def need(path):
    if not path.exists():
        pytest.skip(f"shared test imagery not found: {path} (see ../shared/data/README.md)")
    return path


def assert_aligned(src, dst, scale, window=None):
    """CRS equal (full WKT), transform = window transform x 1/scale, bounds equal."""
    assert dst.crs == src.crs
    assert dst.crs.to_wkt() == src.crs.to_wkt()
    win_t = src.transform if window is None else src.window_transform(window)
    expected = win_t @ Affine.scale(1 / scale)
    assert dst.transform.almost_equals(expected, precision=1e-9)
    sb = src.bounds if window is None else rasterio.windows.bounds(window, src.transform)
    np.testing.assert_allclose(tuple(dst.bounds), tuple(sb), rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def rgb_full(tmp_path_factory):
    src = need(RGB_BYTE)
    out = tmp_path_factory.mktemp("georef") / "rgb_x4.tif"
    # small tiles, so some lie in the nodata collar only (default tiles are sized from memory)
    return upscale(src, out, model="bicubic", tile=128, overlap=32)


def test_rgb_byte_full_georeferencing_and_profile(rgb_full):
    with rasterio.open(RGB_BYTE) as src, rasterio.open(rgb_full.output) as dst:
        assert_aligned(src, dst, 4)
        assert (dst.width, dst.height) == (src.width * 4, src.height * 4)
        assert dst.dtypes == src.dtypes and dst.nodata == src.nodata == 0
        assert dst.colorinterp == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
        assert dst.profile["tiled"] and dst.compression.name == "deflate"
        tags = dst.tags()
        assert tags["SLIMDIFFSR_MODEL"] == "bicubic" and tags["SLIMDIFFSR_SCALE"] == "4"
        assert tags["SLIMDIFFSR_MODEL_HASH"] == "bicubic-x4"
        assert "fixed" in tags["SLIMDIFFSR_VALUE_CONTRACT"] and tags["SLIMDIFFSR_VERSION"]
        assert tags["AREA_OR_POINT"] == "Area"
        # the nodata collar stays nodata, exactly on the upsampled footprint; nothing valid is lost
        lr_valid = src.dataset_mask() > 0
        hr_valid = dst.dataset_mask() > 0
        np.testing.assert_array_equal(hr_valid, np.kron(lr_valid, np.ones((4, 4), bool)))
    s = rgb_full.summary
    assert s["tiles_skipped_nodata"] > 0  # collar-only tiles never reach the model
    assert s["output_size"] == [791 * 4, 718 * 4] and s["crs"] == "EPSG:32618"


def test_rgb_byte_roi_window_and_bounds(rgb_full, tmp_path):
    with rasterio.open(RGB_BYTE) as src, rasterio.open(rgb_full.output) as full:
        win = rasterio.windows.Window(300, 200, 150, 120)
        r = upscale(
            RGB_BYTE, tmp_path / "roi.tif", model="bicubic", roi_window=(300, 200, 150, 120)
        )
        with rasterio.open(r.output) as dst:
            assert_aligned(src, dst, 4, win)
            roi = dst.read().astype(int)
        crop = full.read(window=rasterio.windows.Window(1200, 800, 600, 480)).astype(int)
        # context outside the ROI is read, so the ROI equals the crop of the full result
        assert np.abs(roi - crop).max() <= 1
        # map bounds (snapped outward to whole input pixels) give the same window
        b = rasterio.windows.bounds(win, src.transform)
        nudged = (b[0] + 10, b[1] + 10, b[2] - 10, b[3] - 10)
        r2 = upscale(RGB_BYTE, tmp_path / "roi_b.tif", model="bicubic", roi_bounds=nudged)
        with rasterio.open(r2.output) as dst:
            assert_aligned(src, dst, 4, win)
            np.testing.assert_array_equal(dst.read().astype(int), roi)


@pytest.mark.slow
def test_naip_four_bands_full(tmp_path):
    need(NAIP)
    r = upscale(NAIP, tmp_path / "naip.tif", model="bicubic")
    with rasterio.open(NAIP) as src, rasterio.open(r.output) as dst:
        assert_aligned(src, dst, 4)
        assert dst.count == 4 and dst.dtypes[0] == "uint8" and dst.nodata == 0
        assert dst.colorinterp == src.colorinterp


def test_naip_four_bands_roi_in_another_crs(tmp_path):
    need(NAIP)
    with rasterio.open(NAIP) as src:
        wgs = transform_bounds(src.crs, "EPSG:4326", 486500, 5207000, 487500, 5208000)
    r = upscale(NAIP, tmp_path / "roi.tif", model="bicubic", roi_bounds=wgs, roi_crs="EPSG:4326")
    with rasterio.open(NAIP) as src, rasterio.open(r.output) as dst:
        win = rasterio.windows.Window(*r.summary["roi"])
        assert_aligned(src, dst, 4, win)
        assert dst.count == 4 and dst.nodata == 0
        # the requested area (reprojected, so a little larger) lies inside the result
        b = dst.bounds
        assert b.left <= 486500 + 1 and b.right >= 487500 - 1
        assert b.bottom <= 5207000 + 1 and b.top >= 5208000 - 1


@pytest.mark.slow
def test_nano_student_on_naip_roi(tmp_path):
    """The engine runs the student exactly as it runs bicubic: the first three bands through the
    model, near-infrared kept (bicubic), all four in the output."""
    need(NAIP)
    r = upscale(NAIP, tmp_path / "nano.tif", model=nano_model(), roi_window=(400, 300, 24, 24))
    with rasterio.open(NAIP) as src, rasterio.open(r.output) as dst:
        assert_aligned(src, dst, 4, rasterio.windows.Window(400, 300, 24, 24))
        assert dst.count == 4 and (dst.width, dst.height) == (96, 96)
        assert dst.tags()["SLIMDIFFSR_BANDS"] == "1,2,3,4"
        assert dst.tags()["SLIMDIFFSR_BANDS_SR"] == "1,2,3"
        assert dst.tags(4)["SLIMDIFFSR_METHOD"] == "bicubic"
    assert r.summary["tiles_computed"] == 1 and r.summary["halo"] == 32
