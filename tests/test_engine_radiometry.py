"""Real imagery comes back right by default, with the shipped default model (issue 12).

Each raster goes through ``Upscaler("default")`` with no options: the value mapping is chosen
from the data, nothing is clipped, every band is kept. Checked on content: down(SR) against the
input (within 3 % of its p1-p99 range), the output's p99.9 (within 10 %) and mean (within 2 %),
not constant, nodata collars still nodata; the chosen mapping in tags, QA JSON and summary.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from engine_util import texture, write_raster

from slimdiffsr.engine.resample import bicubic_upsample_np
from slimdiffsr.engine.run import Upscaler

pytestmark = pytest.mark.usefixtures("one_thread")

S = 4


@pytest.fixture(scope="module")
def default_up():
    return Upscaler("default", device="cpu")


@pytest.fixture(scope="module")
def bicubic_up():
    return Upscaler("bicubic", device="cpu")


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of (bands, h, w), edges reflected."""
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    out = np.pad(img, ((0, 0), (r, r), (r, r)), mode="symmetric")
    out = sum(k[i] * out[:, i : i + out.shape[1] - 2 * r, :] for i in range(2 * r + 1))
    return sum(k[i] * out[:, :, i : i + out.shape[2] - 2 * r] for i in range(2 * r + 1))


def scene(bands: int = 3, size: int = 48, seed: int = 0) -> np.ndarray:
    """Texture in [0, 1] with a bright road and a dark roof (highlights and shadows), seen
    through a sensor's blur (Gaussian PSF, sigma 0.7 px) as real LR imagery is."""
    img = texture(bands, size, size, seed=seed).astype(np.float64)
    img[:, size // 2 - 1 : size // 2 + 2, 8:-8] = 1.6  # a bright road, 3 px wide
    img[:, 30:34, 30:34] = 0.0  # a dark roof
    return blur(img, 0.7)


def run(up: Upscaler, src: Path, out: Path, **kw):
    r = up.run(src, out, overwrite=True, **kw)
    with rasterio.open(r.output) as d:
        return d.read(), d.tags(), r


def check_radiometry(lr: np.ndarray, out: np.ndarray, nodata: float | None) -> dict[str, float]:
    """The acceptance numbers; asserts them and returns them for the failure message."""
    lr = lr.astype(np.float64)
    out = out.astype(np.float64)
    c, h, w = lr.shape
    if nodata is None:
        valid = np.ones((h, w), bool)
    elif np.isnan(nodata):
        valid = ~np.isnan(lr).any(axis=0)
    else:
        valid = ~(lr == nodata).all(axis=0)
    valid_hr = np.repeat(np.repeat(valid, S, 0), S, 1)
    if nodata is not None:  # nodata collars stay nodata, valid pixels never read as nodata
        if np.isnan(nodata):
            assert np.isnan(out[:, ~valid_hr]).all()
            assert not np.isnan(out[:, valid_hr]).any()
        else:
            assert (out[:, ~valid_hr] == nodata).all()
            assert (out[:, valid_hr] != nodata).all()
    down = out.reshape(c, h, S, w, S).mean(axis=(2, 4))
    v_lr, v_out = lr[:, valid], out[:, valid_hr]
    p1, p99 = np.percentile(v_lr, [1, 99])
    m = {
        "cons": float(np.abs(down[:, valid] - v_lr).mean() / (p99 - p1)),
        "p999_out": float(np.percentile(v_out, 99.9)),
        "p999_in": float(np.percentile(v_lr, 99.9)),
        "mean_out": float(v_out.mean()),
        "mean_in": float(v_lr.mean()),
        "std_ratio": float(v_out.std() / v_lr.std()),
    }
    assert m["cons"] < 0.03, m
    assert abs(m["p999_out"] - m["p999_in"]) <= 0.10 * abs(m["p999_in"]), m
    assert abs(m["mean_out"] - m["mean_in"]) <= 0.02 * abs(m["mean_in"]), m
    assert m["std_ratio"] > 0.5, m  # not constant, not flattened
    return m


CASES = {
    # name: (dtype, scale, offset, nodata, sentence fragment)
    "s2_uint16": ("uint16", 6200.0, 300.0, 0, "read as reflectance x 10,000"),
    "int16": ("int16", 5000.0, 200.0, -9999, "read as reflectance x 10,000"),
    "float32_reflectance": ("float32", 0.45, 0.02, float("nan"), "read as reflectance"),
    "uint8": ("uint8", 180.0, 30.0, None, "used as they are"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_default_model_keeps_radiometry(default_up, tmp_path, name):
    dtype, gain, offset, nodata, fragment = CASES[name]
    img = scene(seed=len(name))
    lr = img * gain + offset
    if dtype == "uint8":
        lr = np.clip(lr, 1, 255)  # a real uint8 raster: the bright road saturates at 255
    lr = lr.astype(dtype)
    if nodata is not None:
        lr[:, :, :6] = nodata  # a nodata collar down the left edge
    src = write_raster(tmp_path / f"{name}.tif", lr, nodata=nodata)
    out, tags, r = run(default_up, src, tmp_path / "sr.tif")
    assert out.dtype == lr.dtype and out.shape == (3, 48 * S, 48 * S)
    check_radiometry(lr, out, nodata)
    assert fragment in tags["SLIMDIFFSR_VALUE_MAPPING"]
    assert r.summary["value_mapping"].startswith(tags["SLIMDIFFSR_VALUE_MAPPING"])
    assert fragment in r.summary_line()


def test_highlights_keep_their_values(default_up, bicubic_up, tmp_path):
    """The road is far above the mapping's p99 (outside the model's 0..255): residual transfer
    gives it the bicubic value instead of a clipped one."""
    lr = (scene(seed=3) * 6200 + 300).astype(np.uint16)
    src = write_raster(tmp_path / "road.tif", lr)
    sr, tags, _ = run(default_up, src, tmp_path / "sr.tif")
    bic, _, _ = run(bicubic_up, src, tmp_path / "bic.tif")
    road = np.s_[:, 24 * S + 1 : 25 * S - 1, 12 * S : -12 * S]  # the road's middle row
    assert sr[road].mean() > 9000  # up to 1.6 x 6,200 + 300 = 10,220 in the input
    assert abs(sr[road].astype(float).mean() - bic[road].mean()) < 0.03 * bic[road].mean()
    assert json.loads(tags["SLIMDIFFSR_VALUE_CONTRACT"])["clip"] is False


@pytest.mark.slow
def test_landsat8_crop(default_up, shared_data, tmp_path):
    """A real uint16 Landsat-8 crop (blue, green, red as stored)."""
    with rasterio.open(
        shared_data / "landsat8" / "LC08_L1TP_224078_20200518_20200518_01_RT.TIF"
    ) as s:
        win = rasterio.windows.Window(900, 900, 48, 48)
        lr = s.read(window=win)
        src = write_raster(tmp_path / "l8.tif", lr, crs=s.crs, transform=s.window_transform(win))
    out, tags, _ = run(default_up, src, tmp_path / "sr.tif")
    check_radiometry(lr, out, None)
    assert "uint16" in tags["SLIMDIFFSR_VALUE_MAPPING"]


def test_rgbn_keeps_nir_as_bicubic(default_up, bicubic_up, tmp_path):
    lr = np.clip(scene(bands=4, seed=5) * 170 + 40, 1, 255).astype(np.uint8)
    src = write_raster(tmp_path / "rgbn.tif", lr, nodata=0, photometric="MINISBLACK")
    sr, tags, r = run(default_up, src, tmp_path / "sr.tif", qa=True)
    bic, _, _ = run(bicubic_up, src, tmp_path / "bic.tif")
    assert sr.shape == (4, 48 * S, 48 * S)
    assert r.summary["bands_sr"] == [1, 2, 3] and r.summary["bands_interpolated"] == [4]
    assert np.abs(sr[3].astype(int) - bic[3].astype(int)).max() <= 1
    assert np.abs(sr[:3].astype(float) - bic[:3]).mean() > 0.2  # RGB went through the model
    check_radiometry(lr[:3], sr[:3], None)
    assert tags["SLIMDIFFSR_BANDS_SR"] == "1,2,3" and tags["SLIMDIFFSR_BANDS_INTERPOLATED"] == "4"
    with rasterio.open(r.output) as d:
        assert d.tags(4)["SLIMDIFFSR_METHOD"] == "bicubic"
        assert d.tags(1)["SLIMDIFFSR_METHOD"] == "super-resolved"
        assert "bicubic" in d.descriptions[3]
    qa = json.loads(Path(r.qa_json).read_text())
    assert qa["value_mapping"]["sentence"] == tags["SLIMDIFFSR_VALUE_MAPPING"]
    assert qa["bands_interpolated"] == [4]


def test_bands_option_selects_and_orders(default_up, tmp_path):
    lr = np.clip(scene(bands=4, seed=6) * 170 + 40, 1, 255).astype(np.uint8)
    src = write_raster(tmp_path / "rgbn.tif", lr, photometric="MINISBLACK")
    sr, _, r = run(default_up, src, tmp_path / "sr.tif", bands=[3, 2, 1])
    assert sr.shape[0] == 3 and r.summary["bands"] == [3, 2, 1]
    assert r.summary["bands_interpolated"] == []
    down = sr.astype(float).reshape(3, 48, S, 48, S).mean(axis=(2, 4))
    assert np.abs(down[0] - lr[2]).mean() < np.abs(down[0] - lr[0]).mean()  # band 3 first


def test_override_is_used_and_recorded(default_up, tmp_path):
    lr = (scene(seed=7) * 6200 + 300).astype(np.uint16)
    src = write_raster(tmp_path / "s2.tif", lr)
    _, tags, r = run(default_up, src, tmp_path / "sr.tif", value_contract="fixed:0:10000")
    assert "as requested" in tags["SLIMDIFFSR_VALUE_MAPPING"]
    assert json.loads(tags["SLIMDIFFSR_VALUE_CONTRACT"])["high"] == [10000.0]


def test_numpy_bicubic_matches_torch():
    import torch

    from slimdiffsr.models.bicubic import bicubic_upsample

    x = np.random.default_rng(0).normal(size=(2, 3, 13, 19)).astype(np.float32)
    for s in (2, 3, 4, 8):
        ref = bicubic_upsample(torch.from_numpy(x), s).numpy()
        assert np.abs(bicubic_upsample_np(x, s) - ref).max() < 1e-4


def test_cog_overviews_average_continuous_imagery(bicubic_up, tmp_path):
    """Integer rasters without nodata used to get NEAREST overviews (aliased); now averaged."""
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (3, 160, 160)).astype(np.uint8)  # all detail, no smooth areas
    src = write_raster(tmp_path / "noise.tif", lr)
    r = bicubic_up.run(src, tmp_path / "cog.tif", cog=True, overwrite=True)
    with rasterio.open(r.output) as d:
        full = d.read().astype(np.float64)
        assert d.overviews(1), "a 640 px COG has overviews"
    with rasterio.open(r.output, overview_level=0) as ov:
        o = ov.read().astype(np.float64)
    c, h, w = o.shape
    block = full[:, : h * 2, : w * 2].reshape(c, h, 2, w, 2).mean(axis=(2, 4))
    assert np.abs(o - block).mean() < 1.0  # the 2x2 average, not one picked pixel
