"""The trust layer: a consistency GeoTIFF aligned with the output, a JSON summary, enforcement."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from engine_util import texture, write_raster

from slimdiffsr.engine.qa import ConsistencyStats, consistency_map, seam_metric, window_sums
from slimdiffsr.engine.run import upscale


@pytest.fixture
def src(tmp_path):
    data = (texture(3, 64, 56, seed=31) * 200 + 20).astype(np.uint8)
    data[:, :8, :8] = 0
    return write_raster(tmp_path / "in.tif", data, nodata=0)


def test_qa_layer_and_json(src, tmp_path):
    r = upscale(src, tmp_path / "sr.tif", model="bicubic", qa=True, tile=32, overlap=16)
    assert r.qa_output == tmp_path / "sr_qa.tif" and r.qa_json == tmp_path / "sr_qa.json"
    with rasterio.open(src) as lr, rasterio.open(r.output) as sr, rasterio.open(r.qa_output) as qa:
        assert qa.crs == sr.crs and qa.bounds == sr.bounds  # aligned with the output ...
        assert (qa.width, qa.height) == (lr.width, lr.height)  # ... on the input's pixel grid
        assert qa.transform == lr.transform and qa.count == 3 and qa.dtypes[0] == "float32"
        m = qa.read()
        # recompute from the files: |block mean of SR - LR| in DN
        expect = consistency_map(sr.read(), lr.read(), 4, lr.dataset_mask() > 0)
    np.testing.assert_allclose(m, expect, rtol=1e-5, atol=1e-4, equal_nan=True)
    assert np.isnan(m[:, :8, :8]).all() and np.isfinite(m[:, 8:, 8:]).all()
    report = json.loads(r.qa_json.read_text())
    assert report["consistency"]["mean"] == pytest.approx(float(np.nanmean(m)), rel=1e-6)
    assert report["consistency"]["mean"] == pytest.approx(r.summary["mean_consistency"])
    band = report["consistency"]["per_band"][0]
    assert (
        band["p50"]
        <= band["p95"]
        <= band["p99"]
        <= band["max"] + report["consistency"]["bin_width"][0]
    )
    assert report["tiles"]["total"] == r.summary["tiles_computed"] == 9
    assert 0 <= report["tiles"]["fraction_flagged"] <= 1
    assert report["seams"]["ratio"] == pytest.approx(r.summary["seam_ratio"])
    assert report["model"] == "bicubic" and report["scale"] == 4


def test_lr_consistency_enforcement_pulls_down_sr_to_lr(src, tmp_path):
    plain = upscale(
        src, tmp_path / "a.tif", model="bicubic", out_dtype="float32", tile=32, overlap=16
    )
    forced = upscale(
        src,
        tmp_path / "b.tif",
        model="bicubic",
        out_dtype="float32",
        consistency=True,
        tile=32,
        overlap=16,
    )
    assert forced.summary["mean_consistency"] < 0.3 * plain.summary["mean_consistency"]
    with rasterio.open(forced.output) as d:
        assert d.tags()["SLIMDIFFSR_LR_CONSISTENCY"] == "enforced"


def test_statistics_helpers():
    rng = np.random.default_rng(0)
    diff = rng.uniform(0, 10, (2, 50, 40)).astype(np.float32)
    diff[:, :5] = np.nan
    st = ConsistencyStats([100.0, 100.0])
    st.update(diff[:, :25])
    st.update(diff[:, 25:])
    assert st.mean() == pytest.approx(float(np.nanmean(diff)), rel=1e-6)
    assert st.percentile(0, 50) == pytest.approx(float(np.nanpercentile(diff[0], 50)), abs=0.05)
    sums = window_sums(diff, [(5, 50, 0, 40), (10, 20, 3, 9)])
    assert sums[0][1] == 45 * 40 and sums[1][1] == 60
    np.testing.assert_allclose(sums[1][0], np.nansum(diff[:, 10:20, 3:9], axis=(1, 2)), rtol=1e-5)


def test_seam_metric_detects_a_step():
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    smooth = 0.1 * xx + 0.05 * yy + 0.01 * np.sin(xx + yy)
    assert seam_metric(smooth, [32], [32])["ratio"] == pytest.approx(1.0, abs=0.3)
    stepped = smooth.copy()
    stepped[:, 32:] += 2.0
    assert seam_metric(stepped, [32], [32])["ratio"] > 5
