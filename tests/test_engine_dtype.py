"""Values survive the trip: 16-bit reflectance, int16, float with NaN, value contracts, dtypes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
from engine_util import texture, write_raster

from slimdiffsr.engine.resample import bicubic_upsample_np
from slimdiffsr.engine.run import upscale
from slimdiffsr.errors import InputError, SlimDiffSRError
from slimdiffsr.models.bicubic import bicubic_upsample


def bicubic_ref(lr: np.ndarray, s: int = 4) -> np.ndarray:
    return bicubic_upsample(torch.from_numpy(lr.astype(np.float32))[None], s)[0].numpy()


@pytest.fixture
def reflectance(tmp_path):
    """3-band uint16 reflectance (DN = reflectance * 10000) with a nodata hole and corner."""
    data = (texture(3, 96, 80, seed=5) * 9000 + 500).astype(np.uint16)
    valid = np.ones((96, 80), bool)
    valid[40:52, 30:44] = False  # a hole
    valid[:, :6] = False  # a strip along the edge
    data[:, ~valid] = 0
    return write_raster(tmp_path / "refl.tif", data, nodata=0), data, valid


@pytest.mark.parametrize("contract", [None, "fixed:0:10000"])
def test_uint16_reflectance_round_trip_keeps_range_and_nodata(reflectance, tmp_path, contract):
    src, data, valid = reflectance
    r = upscale(
        src, tmp_path / "sr.tif", model="bicubic", value_contract=contract, tile=32, overlap=16
    )
    with rasterio.open(r.output) as dst:
        out = dst.read()
        assert dst.dtypes[0] == "uint16" and dst.nodata == 0
        assert json.loads(dst.tags()["SLIMDIFFSR_VALUE_CONTRACT"])["high"] == [10000.0]
    hr_valid = np.kron(valid, np.ones((4, 4), bool))
    assert (out[:, ~hr_valid] == 0).all()  # nodata stays nodata ...
    assert (out[:, hr_valid] > 0).all()  # ... and no valid pixel turns into nodata
    lo, hi = data[:, valid].min(), data[:, valid].max()
    v = out[:, hr_valid]
    # same radiometric range (bicubic overshoots by ~13 % of lo at the raster's bottom edge here,
    # exactly as a whole-image bicubic does: edge tiles get no mirrored halo)
    assert v.min() >= lo * 0.85 and v.max() <= min(hi * 1.1, 10000)
    # away from nodata the values are bicubic's, to the DN
    ref = np.clip(bicubic_ref(data), 0, 10000)
    inner = np.s_[:, 240:360, 60:300]  # far from the hole, the nodata strip and the edges
    assert np.abs(out[inner].astype(float) - ref[inner]).max() <= 1.0
    assert r.summary["mean_consistency"] < 0.01 * 10000


def test_percentile_contract_is_computed_once_per_raster(tmp_path):
    data = (texture(2, 64, 64, seed=6) * 2800 + 200).astype(np.uint16)
    src = write_raster(tmp_path / "dn.tif", data)
    r1 = upscale(src, tmp_path / "a.tif", model="bicubic", value_contract="percentile:2:98")
    r2 = upscale(
        src,
        tmp_path / "b.tif",
        model="bicubic",
        value_contract="percentile:2:98",
        roi_window=(0, 0, 16, 16),
    )
    with rasterio.open(r1.output) as a, rasterio.open(r2.output) as b:
        ca = json.loads(a.tags()["SLIMDIFFSR_VALUE_CONTRACT"])
        cb = json.loads(b.tags()["SLIMDIFFSR_VALUE_CONTRACT"])
        assert ca == cb and ca["kind"] == "percentile" and len(ca["low"]) == 2
        assert 200 <= ca["low"][0] < ca["high"][0] <= 3000
        # the ROI is the same pixels as the full run: limits did not follow the ROI
        np.testing.assert_array_equal(b.read()[:, :32, :32], a.read()[:, :32, :32])


def test_int16_with_negative_nodata(tmp_path):
    data = (texture(1, 48, 48, seed=7) * 8000).astype(np.int16)
    data[0, 20:30, 20:30] = -9999
    src = write_raster(tmp_path / "i16.tif", data, nodata=-9999)
    r = upscale(src, tmp_path / "sr.tif", model="bicubic", tile=32, overlap=16)
    with rasterio.open(r.output) as dst:
        out = dst.read(1)
        assert dst.dtypes[0] == "int16" and dst.nodata == -9999
    assert (out[80:120, 80:120] == -9999).all()
    # nothing clipped: away from the hole and the (mirrored) raster edge the output is the
    # bicubic upsampling, overshoot and all
    ref = np.rint(bicubic_upsample_np(data.astype(np.float32), 4))[0]
    assert np.abs(out[8:64, 8:-8].astype(np.float64) - ref[8:64, 8:-8]).max() <= 1


def test_float32_with_nan_nodata_and_float_output(tmp_path):
    data = texture(2, 40, 40, seed=8).astype(np.float32)
    data[:, 10:14, 10:14] = np.nan
    src = write_raster(tmp_path / "f.tif", data, nodata=float("nan"))
    r = upscale(src, tmp_path / "sr.tif", model="bicubic", tile=32, overlap=16)
    with rasterio.open(r.output) as dst:
        out = dst.read()
        assert dst.dtypes[0] == "float32" and np.isnan(dst.nodata)
    assert np.isnan(out[:, 40:56, 40:56]).all()
    assert np.isfinite(out[:, :36]).all()
    ref = bicubic_upsample_np(np.nan_to_num(data), 4)
    inner = np.s_[:, 8:28, 8:-8]  # away from the hole and the raster edge (mirrored)
    assert np.abs(out[inner] - ref[inner]).max() < 1e-5  # unclipped bicubic, float units


def test_uint8_to_float32_output_is_unrounded(tmp_path):
    data = (texture(3, 32, 32, seed=9) * 255).astype(np.uint8)
    src = write_raster(tmp_path / "u8.tif", data)
    r = upscale(src, tmp_path / "f.tif", model="bicubic", out_dtype="float32", tile=32, overlap=16)
    with rasterio.open(r.output) as dst:
        out = dst.read()
        assert dst.dtypes[0] == "float32"
    assert not np.allclose(out, np.round(out))
    ref = bicubic_upsample_np(data.astype(np.float32), 4)
    inner = np.s_[:, 8:-8, 8:-8]  # the engine mirrors at the raster edge, the reference clamps
    assert np.abs(out[inner] - ref[inner]).max() < 1e-3  # unrounded, unclipped (overshoot kept)


def test_unsupported_dtype_is_a_clear_error(tmp_path):
    src = write_raster(tmp_path / "u32.tif", np.ones((1, 16, 16), np.uint32))
    with pytest.raises(InputError, match="unsupported data type uint32"):
        upscale(src, tmp_path / "x.tif", model="bicubic")
    assert not (tmp_path / "x.tif").exists()
    assert issubclass(InputError, SlimDiffSRError)
