"""Faults and hostile input give one line, never a traceback; outputs have one writer (issue 14).

Bad model files and rasters go through the real CLI entry point (``cli.main``); signals, crashes and
concurrent runs through real ``slimdiffsr`` processes.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from engine_util import texture, write_raster
from safetensors.torch import save_file

from slimdiffsr import cli
from slimdiffsr.models.card import CARD_KEY, ModelCard, ModelFileError, read_card
from slimdiffsr.models.registry import ZOO_DIR, load_model

DEFAULT_FILE = ZOO_DIR / "slimdiffsr-nano-x4.safetensors"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("slimdiffsr: error: ")
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture
def small(tmp_path):
    data = (texture(3, 40, 40, seed=70) * 255).astype(np.uint8)
    return write_raster(tmp_path / "in.tif", data)


# -- degenerate model cards are refused at load, with one line ---------------------------------
def _good_card() -> dict:
    return json.loads(read_card(DEFAULT_FILE).to_json())


def _card_file(path, card_text: str):
    save_file({"x": torch.zeros(1)}, str(path), metadata={CARD_KEY: card_text})
    return path


BAD_CARDS = {
    "card is a number": ("5", "must be a JSON object"),
    "scale is a string": ({"scale": "4"}, "scale must be one of"),
    "scale 3": ({"scale": 3}, "scale must be one of"),
    "one band for three channels": ({"bands": ["red"]}, "1 band name(s)"),
    "config null": ({"config": None}, "config must be a JSON object"),
    "low equals high": (
        {"value_contract": {"kind": "fixed", "low": [100.0], "high": [100.0]}},
        "high > low",
    ),
    "low nan": ({"value_contract": {"kind": "fixed", "low": "nan", "high": 1}}, "finite"),
    "halo negative": ({"halo": -3}, "halo"),
}


@pytest.mark.parametrize("case", list(BAD_CARDS), ids=list(BAD_CARDS))
def test_degenerate_card_is_one_model_error_line(case, small, tmp_path, capsys):
    change, needle = BAD_CARDS[case]
    text = change if isinstance(change, str) else json.dumps({**_good_card(), **change})
    bad = _card_file(tmp_path / "bad.safetensors", text)
    with pytest.raises(ModelFileError, match=re.escape(needle)):
        ModelCard.from_json(text, bad)
    with pytest.raises(ModelFileError, match="bad.safetensors"):
        load_model(str(bad))
    code, _, err = run_cli(capsys, "upscale", small, tmp_path / "o.tif", "--model", bad)
    assert code == 2
    assert_one_line(err, "bad.safetensors", needle)
    assert not (tmp_path / "o.tif").exists()


def test_weights_that_do_not_match_the_card_are_a_model_error(tmp_path):
    card = ModelCard(**{**_good_card(), "config": {**_good_card()["config"], "in_channels": 4}})
    card.bands = ["red", "green", "blue", "nir"]
    bad = _card_file(tmp_path / "mismatch.safetensors", card.to_json())
    with pytest.raises(ModelFileError, match="mismatch.safetensors"):
        load_model(str(bad))


def test_the_shipped_card_passes():
    assert read_card(DEFAULT_FILE).scale == 4
