"""Preflight: the one sentence, the plan, warnings and refusals, before the first tile (issue 12)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from affine import Affine
from engine_util import texture, write_raster

from slimdiffsr import protocol as P
from slimdiffsr.contract import ContractError, Domain, choose_mapping
from slimdiffsr.engine.preflight import GSDWarning
from slimdiffsr.engine.run import Upscaler
from slimdiffsr.errors import GeographicCRSWarning, InputError, ModelError
from slimdiffsr.models.bicubic import BicubicSR

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def default_up():
    return Upscaler("default", device="cpu")


def s2_like(tmp_path, name="s2.tif", **kw):
    data = (300 + texture(3, 32, 32, seed=2) * 6200).astype(np.uint16)
    return write_raster(tmp_path / name, data, nodata=0, **kw)


def test_sentence_and_plan_for_uint16_reflectance(default_up, tmp_path):
    pf = default_up.preflight(s2_like(tmp_path))
    assert pf.sentence.startswith("uint16 values ")
    assert "read as reflectance x 10,000" in pf.sentence
    assert "8-bit display range" in pf.sentence
    assert pf.sentence.endswith("override with --value-contract")
    d = pf.to_dict()
    assert set(d) == {
        "model", "bands_in", "bands_sr", "bands_interpolated", "mapping", "tiles", "warnings"
    }  # fmt: skip
    assert d["model"] == default_up.model_name and d["bands_sr"] == [1, 2, 3]
    assert d["mapping"]["kind"] == "reflectance" and d["tiles"] == 1
    assert d["mapping"]["contract"]["clip"] is False
    json.dumps(d)  # goes over the worker protocol as is


def test_uint8_is_used_as_is(default_up, tmp_path):
    data = (20 + texture(3, 32, 32, seed=3) * 200).astype(np.uint8)
    pf = default_up.preflight(write_raster(tmp_path / "u8.tif", data))
    assert "used as they are" in pf.sentence and pf.plan.mapping.kind == "as-is"
    assert pf.plan.contract.low == (0.0,) and pf.plan.contract.high == (255.0,)


def test_other_range_gets_a_percentile_stretch(default_up, tmp_path):
    data = (20000 + texture(3, 32, 32, seed=4) * 40000).astype(np.uint16)  # not reflectance
    pf = default_up.preflight(write_raster(tmp_path / "dn.tif", data))
    assert pf.plan.mapping.kind == "percentile" and "stretched raster-wide" in pf.sentence


def test_too_few_bands_is_refused(default_up, tmp_path):
    data = (texture(2, 32, 32, seed=5) * 200).astype(np.uint8)
    src = write_raster(tmp_path / "two.tif", data)
    with pytest.raises(InputError, match=r"two.tif has 2 usable band\(s\) but the model .* 3"):
        default_up.preflight(src)
    with pytest.raises(ModelError, match="only 2 were selected"):
        default_up.preflight(src, bands=[1, 2])
    assert default_up.preflight(src, bands=[1, 2, 2]).plan.sr_bands == [1, 2, 2]


def test_a_range_that_fits_no_mapping_is_refused(default_up, tmp_path):
    flat = write_raster(tmp_path / "flat.tif", np.full((3, 32, 32), 1234, np.uint16))
    with pytest.raises(ContractError, match=r"flat.tif: every valid pixel is 1,234"):
        default_up.preflight(flat)
    empty = write_raster(tmp_path / "empty.tif", np.zeros((3, 32, 32), np.uint16), nodata=0)
    with pytest.raises(ContractError, match="no valid pixel"):
        default_up.preflight(empty)
    # an explicit contract is the way out, and is used as given
    pf = default_up.preflight(flat, value_contract="fixed:0:10000")
    assert pf.plan.mapping.kind == "override" and pf.plan.contract.high == (10000.0,)


def test_geographic_crs_warns(default_up, tmp_path):
    src = s2_like(tmp_path, crs="EPSG:4326", transform=Affine(1e-4, 0, 10.0, 0, -1e-4, 50.0))
    pf = default_up.preflight(src)
    assert [c for c, _ in pf.warnings] == [GeographicCRSWarning]
    assert "geographic CRS" in pf.messages[0]


def test_gsd_far_outside_the_card_range_warns(tmp_path):
    model = BicubicSR(4)
    model.card.domain = {"kind": "display8", "gsd_m": [0.1, 1.0]}
    up = Upscaler(model, device="cpu")
    far = s2_like(tmp_path, "far.tif", transform=Affine(30.0, 0, 5e5, 0, -30.0, 4.5e6))
    pf = up.preflight(far)
    assert [c for c, _ in pf.warnings] == [GSDWarning]
    assert "30 m pixels, far outside the 0.1-1 m" in pf.messages[0]
    near = s2_like(tmp_path, "near.tif", transform=Affine(0.6, 0, 5e5, 0, -0.6, 4.5e6))
    assert up.preflight(near).warnings == ()
    with pytest.warns(GSDWarning):  # a run says it too
        up.run(far, tmp_path / "sr.tif")


def test_domain_from_older_cards_and_reflectance_domain():
    assert Domain.of_card(BicubicSR(4).card).kind == "any"

    class Card:
        bands = ["red", "green", "blue"]
        value_contract = {"kind": "fixed", "low": [0.0], "high": [255.0]}
        domain: dict = {}

    assert Domain.of_card(Card()).kind == "display8"
    refl = Domain("reflectance", range=(0.0, 1.0))
    sample = (300 + texture(3, 16, 16, seed=1) * 6000).astype(np.uint16)
    m = choose_mapping("uint16", sample, None, refl)
    assert m.kind == "reflectance" and m.contract.low == (0.0,) and m.contract.high == (10000.0,)
    landsat = (8000 + texture(3, 16, 16, seed=1) * 12000).astype(np.uint16)  # C2 L2 SR DN
    m = choose_mapping("uint16", landsat, None, refl, scale=2.75e-5, offset=-0.2)
    assert m.contract.low[0] == pytest.approx(0.2 / 2.75e-5)
    assert "DN x 2.75e-05 - 0.2" in m.sentence


def test_worker_answers_preflight(tmp_path):
    src = s2_like(tmp_path)
    lines = [
        {"type": "preflight", "id": 7, "params": {"input": str(src), "model": "bicubic"}},
        {"type": "preflight", "id": 8, "params": {"input": str(tmp_path / "missing.tif")}},
        {"type": "shutdown"},
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "slimdiffsr.worker"],
        input="".join(json.dumps(m) + "\n" for m in lines),
        capture_output=True,
        text=True,
        timeout=300,
    )
    msgs = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]
    pre = next(m for m in msgs if m.get("id") == 7)
    assert pre["type"] == P.PREFLIGHT and "uint16 values" in pre["sentence"]
    assert set(pre["plan"]) == {
        "model", "bands_in", "bands_sr", "bands_interpolated", "mapping", "tiles", "warnings"
    }  # fmt: skip
    err = next(m for m in msgs if m.get("id") == 8)
    assert (
        err["type"] == P.ERROR and err["kind"] == P.ERROR_INPUT and "missing.tif" in err["message"]
    )
    assert P.PREFLIGHT in P.REQUEST_TYPES and P.PREFLIGHT in P.EVENT_TYPES
