"""Robustness: clear errors, no clobbering, band selection, COG, devices, model contract checks."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from engine_util import texture, write_raster
from rasterio.enums import ColorInterp

from slimdiffsr.engine.raster_io import check_free_space
from slimdiffsr.engine.run import Upscaler, resolve_device, upscale
from slimdiffsr.engine.tiling import TilingError
from slimdiffsr.errors import (
    DeviceError,
    DiskSpaceError,
    GeographicCRSWarning,
    InputError,
    ModelError,
    OutputExistsError,
    SlimDiffSRError,
)
from slimdiffsr.models.bicubic import BicubicSR


@pytest.fixture
def src(tmp_path):
    data = (texture(3, 40, 48, seed=41) * 255).astype(np.uint8)
    ci = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    return write_raster(tmp_path / "in.tif", data, colorinterp=ci, descriptions=["R", "G", "B"])


def test_never_overwrites_input_or_existing_output(src, tmp_path):
    with pytest.raises(OutputExistsError, match="input"):
        upscale(src, src, model="bicubic", overwrite=True)
    out = tmp_path / "out.tif"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        upscale(src, out, model="bicubic")
    assert out.read_bytes() == b"keep me"
    with pytest.raises(OutputExistsError, match="not a raster"):  # overwrite replaces rasters only
        upscale(src, out, model="bicubic", overwrite=True)
    assert out.read_bytes() == b"keep me"
    out.unlink()
    upscale(src, out, model="bicubic", roi_window=(0, 0, 16, 16))  # a raster: replaceable
    r = upscale(src, out, model="bicubic", overwrite=True)
    with rasterio.open(r.output) as d:
        assert d.count == 3 and d.descriptions == ("R", "G", "B")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "out.tif"]  # no temp files


def test_band_selection_and_order(src, tmp_path):
    a = upscale(src, tmp_path / "a.tif", model="bicubic")
    b = upscale(src, tmp_path / "b.tif", model="bicubic", bands=[3, 2, 1])
    with rasterio.open(a.output) as da, rasterio.open(b.output) as db:
        np.testing.assert_array_equal(da.read(1), db.read(3))
        assert db.colorinterp == (ColorInterp.blue, ColorInterp.green, ColorInterp.red)
        assert db.descriptions == ("B", "G", "R")
    with pytest.raises(InputError, match="has 3 bands"):
        upscale(src, tmp_path / "c.tif", model="bicubic", bands=[4])


def test_model_and_scale_checks(src, tmp_path):
    with pytest.raises(ModelError, match="x4"):
        Upscaler(BicubicSR(4), scale=8)
    r = upscale(src, tmp_path / "x8.tif", model="bicubic", scale=8, tile=32, overlap=16)
    with rasterio.open(r.output) as d:
        assert (d.width, d.height) == (48 * 8, 40 * 8)

    class NoScale(torch.nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ModelError, match="scale"):
        Upscaler(NoScale())

    class Wrong(BicubicSR):
        def forward(self, x):
            return super().forward(x)[:, :1]

    with pytest.raises(ModelError, match="returned"):
        upscale(src, tmp_path / "w.tif", model=Wrong(4))
    assert not (tmp_path / "w.tif").exists()


def test_settings_errors_are_slimdiffsr_errors(src, tmp_path):
    with pytest.raises(TilingError, match="multiple of 16"):
        upscale(src, tmp_path / "t.tif", model="bicubic", tile=30)
    with pytest.raises(InputError, match="precision"):
        Upscaler("bicubic", precision="fp8")
    bad = tmp_path / "not_a_raster.tif"
    bad.write_text("hello")
    with pytest.raises(InputError, match="cannot read"):
        upscale(bad, tmp_path / "o.tif", model="bicubic")
    with pytest.raises(InputError, match="not found"):
        upscale(tmp_path / "missing.tif", tmp_path / "o.tif", model="bicubic")
    with pytest.raises(InputError, match="not inside"):
        upscale(src, tmp_path / "o.tif", model="bicubic", roi_window=(40, 0, 20, 10))
    for exc in (TilingError, InputError, ModelError, DeviceError, DiskSpaceError):
        assert issubclass(exc, SlimDiffSRError)


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    with pytest.raises(DeviceError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA"):
            resolve_device("cuda")
    with pytest.warns(UserWarning, match="fp16 runs only on a GPU"):
        up = Upscaler("bicubic", device="cpu", precision="fp16")
    assert up.precision == "fp32"


def test_geographic_crs_warns(tmp_path):
    data = (texture(1, 32, 32, seed=42) * 255).astype(np.uint8)
    src = write_raster(
        tmp_path / "geo.tif", data, crs="EPSG:4326", transform=Affine(0.001, 0, 10, 0, -0.001, 50)
    )
    with pytest.warns(GeographicCRSWarning, match="geographic"):
        r = upscale(src, tmp_path / "o.tif", model="bicubic", tile=32, overlap=16)
    with rasterio.open(r.output) as d:
        assert d.crs.to_epsg() == 4326


def test_cog_output(src, tmp_path):
    r = upscale(src, tmp_path / "cog.tif", model="bicubic", scale=8, cog=True, tile=32, overlap=16)
    with rasterio.open(r.output) as d:
        assert d.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert d.overviews(1) and d.tags()["SLIMDIFFSR_MODEL"] == "bicubic"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cog.tif", "in.tif"]


def test_free_space_check(tmp_path):
    with pytest.raises(DiskSpaceError, match="not enough disk space"):
        check_free_space(tmp_path, 10**18, compressed=True, cog=False)
    check_free_space(tmp_path, 1000, compressed=False, cog=True)


def test_summary_line(src, tmp_path):
    r = upscale(src, tmp_path / "s.tif", model="bicubic", tile=32, overlap=16)
    line = r.summary_line()
    assert "48x40 -> 192x160 px" in line and "EPSG:32618" in line and "tiles/s" in line


def test_deterministic_and_matches_the_contract_inverse(src, tmp_path):
    a = upscale(src, tmp_path / "a.tif", model="bicubic", tile=32, overlap=16, out_dtype="float32")
    b = upscale(src, tmp_path / "b.tif", model="bicubic", tile=32, overlap=16, out_dtype="float32")
    c = upscale(src, tmp_path / "c.tif", model="bicubic", tile=32, overlap=16)
    with (
        rasterio.open(a.output) as da,
        rasterio.open(b.output) as db,
        rasterio.open(c.output) as dc,
    ):
        fa = da.read()
        np.testing.assert_array_equal(fa, db.read())  # same inputs and settings: same bits
        u8 = dc.read()
    # the engine's fused conversion equals ValueContract.from_model (uint8 0..255)
    from slimdiffsr.contract import ValueContract

    ref = ValueContract.for_dtype("uint8").from_model(fa / 127.5 - 1.0, "uint8")
    assert np.abs(u8.astype(int) - ref.astype(int)).max() <= 1
    assert (u8 == ref).mean() > 0.999


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_output_gets_the_users_file_mode(src, tmp_path, umask):
    """The temporary file is created owner-only; the output gets 0666 less the umask, like any
    file the user creates (a shared project folder must be able to read it)."""
    import os
    import stat

    old = os.umask(umask)
    try:
        for cog in (False, True):
            r = upscale(src, tmp_path / f"m{umask}{cog}.tif", model="bicubic", cog=cog)
            assert stat.S_IMODE(os.stat(r.output).st_mode) == 0o666 & ~umask
    finally:
        os.umask(old)


def test_gdal_block_cache_is_megabytes_during_a_run(src, tmp_path):
    """rasterio takes an integer GDAL_CACHEMAX as bytes: the engine's 128 must be 128 MB, or
    every compressed block is decoded again for each read (a 30 s preflight on a 2k scene)."""
    from rasterio.env import getenv

    from slimdiffsr.engine.run import GDAL_CACHE_MB

    seen = {}
    upscale(src, tmp_path / "c.tif", model="bicubic",
            on_preflight=lambda pf: seen.update(cache=getenv()["GDAL_CACHEMAX"]))  # fmt: skip
    assert seen["cache"] == GDAL_CACHE_MB * 2**20 >= 2**20
