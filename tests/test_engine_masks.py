"""Nothing lost, nothing invented: nodata, internal masks and alpha bands are carried through."""

from __future__ import annotations

import numpy as np
import rasterio
from engine_util import CountingModel, texture, write_raster
from rasterio.enums import ColorInterp, MaskFlags

from slimdiffsr.engine.run import fill_invalid, upscale
from slimdiffsr.models.bicubic import BicubicSR


def footprint(h: int, w: int) -> np.ndarray:
    """A rotated-square valid area inside a nodata collar, like a Landsat scene."""
    yy, xx = np.mgrid[0:h, 0:w]
    return (np.abs(yy - h / 2) + np.abs(xx - w / 2)) < min(h, w) * 0.45


def test_hidden_values_under_a_mask_never_bleed(tmp_path):
    """Same valid pixels, masked pixels 0 in one file and 255 in the other: same output."""
    base = (texture(3, 72, 72, seed=11) * 200 + 20).astype(np.uint8)
    valid = footprint(72, 72)
    outs = []
    for hidden in (0, 255):
        data = base.copy()
        data[:, ~valid] = hidden
        src = write_raster(tmp_path / f"m{hidden}.tif", data, mask=valid)
        r = upscale(src, tmp_path / f"o{hidden}.tif", model="bicubic", tile=32, overlap=16)
        with rasterio.open(r.output) as dst:
            assert dst.mask_flag_enums[0] == [MaskFlags.per_dataset]
            hr_mask = dst.dataset_mask() > 0
            outs.append(dst.read())
    np.testing.assert_array_equal(hr_mask, np.kron(valid, np.ones((4, 4), bool)))
    np.testing.assert_array_equal(outs[0][:, hr_mask], outs[1][:, hr_mask])


def test_nodata_collar_tiles_skipped_and_valid_pixels_kept(tmp_path):
    data = (texture(3, 96, 96, seed=12) * 200 + 30).astype(np.uint8)
    valid = footprint(96, 96)
    data[:, ~valid] = 0
    src = write_raster(tmp_path / "collar.tif", data, nodata=0)
    model = CountingModel(BicubicSR(4))
    r = upscale(src, tmp_path / "o.tif", model=model, tile=16, overlap=12, batch_size=8)
    s = r.summary
    assert s["tiles_skipped_nodata"] > 0  # corner tiles hold no valid pixel
    assert model.tiles == s["tiles_computed"] == s["tiles"] - s["tiles_skipped_nodata"]
    with rasterio.open(r.output) as dst:
        out = dst.read()
    hr_valid = np.kron(valid, np.ones((4, 4), bool))
    assert (out[:, ~hr_valid] == 0).all()
    assert (out.max(axis=0)[hr_valid] > 0).all()


def test_alpha_band_becomes_output_alpha(tmp_path):
    rgb = (texture(3, 48, 40, seed=13) * 255).astype(np.uint8)
    valid = footprint(48, 40)
    alpha = np.where(valid, 255, 0).astype(np.uint8)[None]
    ci = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    src = write_raster(
        tmp_path / "rgba.tif", np.concatenate([rgb, alpha]), photometric="RGB", alpha="YES"
    )
    with rasterio.open(src) as s:
        assert s.colorinterp == tuple(ci)
    r = upscale(src, tmp_path / "o.tif", model="bicubic", tile=32, overlap=16)
    assert r.summary["bands"] == [1, 2, 3]  # alpha is a mask, not a band to super-resolve
    with rasterio.open(r.output) as dst:
        assert dst.count == 4 and dst.colorinterp == tuple(ci)
        a = dst.read(4)
    hr_valid = np.kron(valid, np.ones((4, 4), bool))
    np.testing.assert_array_equal(a > 0, hr_valid)


def test_fill_invalid_uses_nearby_valid_values():
    data = np.zeros((1, 5, 5), np.float32)
    data[0, :, :2] = 10.0
    data[0, :, 2:] = 99.0  # invalid values that must not leak
    valid = np.zeros((5, 5), bool)
    valid[:, :2] = True
    out = fill_invalid(data, valid, fallback=np.array([50.0]), iterations=2)
    assert (out[0, :, :2] == 10).all() and (out[0, :, 2:4] == 10).all()
    assert (out[0, :, 4] == 50).all()  # beyond the fill distance: the raster-wide fallback
