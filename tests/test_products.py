"""Satellite products as inputs: Sentinel-2 L2A/L1C ``.SAFE`` (folder and zip), Landsat C2 L2.

The fixtures are tiny products with the real folder layout, file names and metadata files
(MTD_MSIL2A.xml / MTD_MSIL1C.xml with quantification and additive offsets, JPEG 2000 band files;
Landsat ``*_MTL.txt`` with the reflectance scale/offset and ``SR_B*.TIF`` band files).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from engine_util import texture

from slimdiffsr.cli import main
from slimdiffsr.engine.products import ProductError, detect
from slimdiffsr.engine.run import Upscaler

pytestmark = pytest.mark.usefixtures("one_thread")

S2_NAME = "S2B_MSIL2A_20240612T103629_N0510_R008_T32TQM_20240612T131200.SAFE"
S2_L1C = "S2B_MSIL1C_20240612T103629_N0510_R008_T32TQM_20240612T112600.SAFE"
TILE = "T32TQM_20240612T103629"
S2_TRANSFORM = Affine(10.0, 0.0, 699960.0, 0.0, -10.0, 5000040.0)
LANDSAT = "LC08_L2SP_224078_20200518_20200820_02_T1"
L8_TRANSFORM = Affine(30.0, 0.0, 399000.0, 0.0, -30.0, -2500000.0)
SIZE = 40

MTD_L2A = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_TYPE>S2MSI2A</PRODUCT_TYPE>
      <PROCESSING_LEVEL>Level-2A</PROCESSING_LEVEL>
      <PROCESSING_BASELINE>05.10</PROCESSING_BASELINE>
    </Product_Info>
    <Product_Image_Characteristics>
      <QUANTIFICATION_VALUES_LIST>
        <BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>
        <AOT_QUANTIFICATION_VALUE unit="none">1000.0</AOT_QUANTIFICATION_VALUE>
      </QUANTIFICATION_VALUES_LIST>
      <BOA_ADD_OFFSET_VALUES_LIST>
{offsets}
      </BOA_ADD_OFFSET_VALUES_LIST>
    </Product_Image_Characteristics>
  </n1:General_Info>
</n1:Level-2A_User_Product>
"""
MTD_L1C = (
    MTD_L2A.replace("Level-2A_User_Product", "Level-1C_User_Product")
    .replace("BOA_QUANTIFICATION_VALUE", "QUANTIFICATION_VALUE")
    .replace("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET")
)

MTL = """GROUP = LANDSAT_METADATA_FILE
  GROUP = PRODUCT_CONTENTS
    LANDSAT_PRODUCT_ID = "{name}"
    PROCESSING_LEVEL = "L2SP"
  END_GROUP = PRODUCT_CONTENTS
  GROUP = LEVEL2_SURFACE_REFLECTANCE_PARAMETERS
{params}
  END_GROUP = LEVEL2_SURFACE_REFLECTANCE_PARAMETERS
END_GROUP = LANDSAT_METADATA_FILE
END
"""


def reflectance(seed: int) -> np.ndarray:
    """(SIZE, SIZE) surface reflectance 0.02-0.4 with a 0 (nodata) collar on the left."""
    r = 0.02 + texture(1, SIZE, SIZE, seed=seed)[0].astype(np.float64) * 0.38
    return r


def write_band(path: Path, dn: np.ndarray, driver: str, crs: str, transform: Affine) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {"QUALITY": 100, "REVERSIBLE": "YES"} if driver == "JP2OpenJPEG" else {}
    with rasterio.open(
        path, "w", driver=driver, width=SIZE, height=SIZE, count=1, dtype="uint16",
        crs=crs, transform=transform, **extra,
    ) as d:  # fmt: skip
        d.write(dn[None])


def make_safe(root: Path, name: str = S2_NAME) -> tuple[Path, dict[str, np.ndarray]]:
    """A Sentinel-2 L2A (or L1C) product with the 10 m bands; DN = (reflectance + 0.1) * 10000."""
    safe = root / name
    l2a = "MSIL2A" in name
    offsets = "\n".join(
        f'        <{"BOA" if l2a else "RADIO"}_ADD_OFFSET band_id="{i}">-1000</'
        f"{'BOA' if l2a else 'RADIO'}_ADD_OFFSET>"
        for i in range(13)
    )
    safe.mkdir(parents=True)
    (safe / ("MTD_MSIL2A.xml" if l2a else "MTD_MSIL1C.xml")).write_text(
        (MTD_L2A if l2a else MTD_L1C).replace("{offsets}", offsets)
    )
    granule = safe / "GRANULE" / f"{'L2A' if l2a else 'L1C'}_T32TQM_A037845_20240612T103629"
    (granule / "MTD_TL.xml").parent.mkdir(parents=True)
    (granule / "MTD_TL.xml").write_text("<Level-2A_Tile_ID/>")
    refl = {}
    for i, band in enumerate(("B02", "B03", "B04", "B08")):
        r = reflectance(10 + i)
        dn = np.rint((r + 0.1) * 10000).astype(np.uint16)
        dn[:, :4] = 0  # outside the swath
        refl[band] = np.where(dn == 0, np.nan, r)
        if l2a:
            f = granule / "IMG_DATA" / "R10m" / f"{TILE}_{band}_10m.jp2"
        else:
            f = granule / "IMG_DATA" / f"{TILE}_{band}.jp2"
        write_band(f, dn, "JP2OpenJPEG", "EPSG:32632", S2_TRANSFORM)
    if l2a:  # other 10 m products of an L2A granule, which must not be taken for bands
        write_band(granule / "IMG_DATA" / "R10m" / f"{TILE}_AOT_10m.jp2",
                   np.full((SIZE, SIZE), 100, np.uint16), "JP2OpenJPEG", "EPSG:32632",
                   S2_TRANSFORM)  # fmt: skip
    return safe, refl


def make_landsat(root: Path) -> tuple[Path, dict[str, np.ndarray]]:
    folder = root / LANDSAT
    folder.mkdir(parents=True)
    params = []
    refl = {}
    for i, n in enumerate((2, 3, 4, 5)):
        params += [
            f"    REFLECTANCE_MULT_BAND_{n} = 2.75E-05",
            f"    REFLECTANCE_ADD_BAND_{n} = -0.200000",
        ]
        r = reflectance(20 + i)
        dn = np.rint((r + 0.2) / 2.75e-5).astype(np.uint16)
        dn[:, :4] = 0
        refl[f"SR_B{n}"] = np.where(dn == 0, np.nan, r)
        write_band(folder / f"{LANDSAT}_SR_B{n}.TIF", dn, "GTiff", "EPSG:32621", L8_TRANSFORM)
    write_band(folder / f"{LANDSAT}_QA_PIXEL.TIF", np.zeros((SIZE, SIZE), np.uint16), "GTiff",
               "EPSG:32621", L8_TRANSFORM)  # fmt: skip
    (folder / f"{LANDSAT}_MTL.txt").write_text(MTL.format(name=LANDSAT, params="\n".join(params)))
    return folder, refl


def physical(d: rasterio.DatasetReader) -> np.ndarray:
    """Output values through the output's own scale/offset, nodata as NaN."""
    dn = d.read().astype(np.float64)
    scales, offsets = np.array(d.scales), np.array(d.offsets)
    out = dn * scales[:, None, None] + offsets[:, None, None]
    out[dn == d.nodata] = np.nan
    return out


def check_scaled(out: np.ndarray, refl: np.ndarray, tol: float = 0.03) -> None:
    """down(SR) in reflectance agrees with the product's reflectance (within tol of its range)."""
    h, w = refl.shape
    down = out.reshape(h, 4, w, 4).mean(axis=(1, 3))
    valid = np.isfinite(refl)
    assert np.isnan(down[~valid]).all()  # the collar stays nodata
    rng = np.nanpercentile(refl, 99) - np.nanpercentile(refl, 1)
    assert np.abs(down[valid] - refl[valid]).mean() < tol * rng


def test_detect_and_read_products(tmp_path):
    safe, refl = make_safe(tmp_path)
    p = detect(safe)
    assert p is not None and p.kind == "Sentinel-2 L2A (baseline 05.10)"
    assert [b.name for b in p.bands] == ["B04", "B03", "B02", "B08"]
    assert p.bands[0].scale == pytest.approx(1e-4) and p.bands[0].offset == pytest.approx(-0.1)
    archive = shutil.make_archive(str(tmp_path / "zipped" / S2_NAME), "zip", tmp_path, S2_NAME)
    pz = detect(archive)
    assert pz is not None and pz.bands[2].path.startswith("/vsizip/")
    l8, _ = make_landsat(tmp_path / "l8")
    pl = detect(l8)
    assert pl is not None and [b.name for b in pl.bands] == ["SR_B4", "SR_B3", "SR_B2", "SR_B5"]
    assert detect(l8 / f"{LANDSAT}_MTL.txt").bands[0].offset == pytest.approx(-0.2)
    assert detect(l8 / f"{LANDSAT}_SR_B2.TIF") is None  # a plain raster
    # the zip reads the same as the folder
    up = Upscaler("bicubic", device="cpu")
    a, b = up.preflight(safe), up.preflight(archive)
    assert a.sentence == b.sentence and a.plan.bands == [1, 2, 3, 4]
    assert a.plan.meta.scales == b.plan.meta.scales == (1e-4,) * 4
    assert a.plan.meta.offsets == (-0.1,) * 4


def test_incomplete_products_are_clear_errors(tmp_path):
    safe, _ = make_safe(tmp_path)
    next(safe.rglob("*_B03_10m.jp2")).unlink()
    with pytest.raises(ProductError, match=f"{S2_NAME}: the 10 m band B03 is missing"):
        detect(safe)
    l8, _ = make_landsat(tmp_path / "l8")
    (l8 / f"{LANDSAT}_SR_B3.TIF").unlink()
    with pytest.raises(ProductError, match="SR_B3.TIF is missing"):
        detect(l8)


@pytest.mark.slow
def test_safe_through_the_cli(tmp_path, capsys):
    safe, refl = make_safe(tmp_path)
    out = tmp_path / "s2_x4.tif"
    assert main(["upscale", str(safe), str(out), "--device", "cpu", "--qa"]) == 0
    cap = capsys.readouterr()
    assert "read as reflectance = DN x 0.0001 - 0.1" in cap.err  # said before the run
    assert "read as reflectance = DN x 0.0001 - 0.1" in cap.out  # and in the summary line
    with rasterio.open(out) as d:
        values = physical(d)
        assert d.count == 4 and d.crs.to_epsg() == 32632 and d.nodata == 0
        assert d.transform == S2_TRANSFORM * Affine.scale(0.25)
        assert d.descriptions[:3] == ("B04 red", "B03 green", "B02 blue")
        assert d.tags()["SLIMDIFFSR_BANDS_INTERPOLATED"] == "4"
    for i, band in enumerate(("B04", "B03", "B02", "B08")):
        check_scaled(values[i], refl[band])


@pytest.mark.slow
def test_landsat_c2_through_the_cli(tmp_path, capsys):
    folder, refl = make_landsat(tmp_path)
    out = tmp_path / "l8_x4.tif"
    assert main(["upscale", str(folder / f"{LANDSAT}_MTL.txt"), str(out), "--device", "cpu"]) == 0
    assert "DN x 2.75e-05 - 0.2" in capsys.readouterr().err
    with rasterio.open(out) as d:
        values = physical(d)
        assert d.count == 4 and d.crs.to_epsg() == 32621
        assert d.transform == L8_TRANSFORM * Affine.scale(0.25)
        assert d.scales[0] == pytest.approx(2.75e-5) and d.offsets[0] == pytest.approx(-0.2)
    for i, band in enumerate(("SR_B4", "SR_B3", "SR_B2", "SR_B5")):
        check_scaled(values[i], refl[band])


def test_l1c_zip_with_the_bicubic_model(tmp_path):
    make_safe(tmp_path, S2_L1C)
    archive = shutil.make_archive(str(tmp_path / S2_L1C), "zip", tmp_path, S2_L1C)
    out = tmp_path / "l1c.tif"
    assert main(["upscale", archive, str(out), "--model", "bicubic", "--quiet"]) == 0
    with rasterio.open(out) as d:
        values = physical(d)
        assert d.count == 4 and d.tags()["SLIMDIFFSR_SOURCE"] == Path(archive).name
    assert np.nanmax(values) < 0.6 and np.nanmin(values) > -0.05  # reflectance, not DN
