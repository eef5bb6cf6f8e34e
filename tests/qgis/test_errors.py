"""Bad inputs end in QgsProcessingException with a sentence a user can act on, not a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from qgis import processing
from qgis.core import QgsProcessingException, QgsVectorLayer
from qgis_helpers import write_raster

pytestmark = pytest.mark.qgis

ALG = "slimdiffsr:superresolve"


@pytest.fixture
def rgb8(tmp_path: Path) -> Path:
    data = (np.arange(3 * 24 * 32).reshape(3, 24, 32) % 251).astype(np.uint8)
    return write_raster(tmp_path / "small.tif", data)


def run_error(params: dict) -> str:
    with pytest.raises(QgsProcessingException) as info:
        processing.run(ALG, params)
    text = str(info.value)
    assert "Traceback" not in text and 'File "' not in text
    return text


def test_vector_layer(plugin, tmp_path) -> None:
    roads = QgsVectorLayer("LineString?crs=EPSG:4326", "roads", "memory")
    text = run_error({"INPUT": roads, "OUTPUT": str(tmp_path / "o.tif")})
    assert "'roads' is a vector layer" in text and "raster layer" in text


def test_vector_file(plugin, tmp_path) -> None:
    gj = tmp_path / "points.geojson"
    gj.write_text('{"type": "FeatureCollection", "features": []}')
    text = run_error({"INPUT": str(gj), "OUTPUT": str(tmp_path / "o.tif")})
    assert "raster" in text


def test_too_few_bands_for_the_mapping(plugin, rgb8, tmp_path) -> None:
    text = run_error({"INPUT": str(rgb8), "BANDS": [1, 2, 5], "OUTPUT": str(tmp_path / "o.tif")})
    assert "Band 5 was requested" in text and "only 3 band" in text


def test_single_band_layer_for_an_rgb_model(plugin, backend_python, model_name, tmp_path) -> None:
    if model_name != "slimdiffsr-nano-x4":
        pytest.skip("needs the shipped RGB default model (bicubic takes any bands)")
    gray = write_raster(tmp_path / "gray.tif", np.full((1, 16, 16), 7, np.uint8))
    text = run_error({"INPUT": str(gray), "OUTPUT": str(tmp_path / "o.tif")})
    assert "band" in text.lower()
    assert not (tmp_path / "o.tif").exists()


def test_missing_backend(plugin, rgb8, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SLIMDIFFSR_PYTHON", str(tmp_path / "nowhere" / "python"))
    text = run_error({"INPUT": str(rgb8), "MODEL": "bicubic-x4", "OUTPUT": str(tmp_path / "o.tif")})
    assert "SLIMDIFFSR_PYTHON" in text and "does not exist" in text
    assert "setup_backend.sh" in text


def test_broken_backend(plugin, rgb8, tmp_path, monkeypatch) -> None:
    """A real Python without slimdiffsr installed: the worker cannot start, and we say so."""
    monkeypatch.setenv("SLIMDIFFSR_PYTHON", sys.executable)
    text = run_error({"INPUT": str(rgb8), "MODEL": "bicubic-x4", "OUTPUT": str(tmp_path / "o.tif")})
    assert f"The Python at {sys.executable}" in text
    assert "does not have SlimDiffSR installed" in text and "pip install slimdiffsr" in text
    assert not (tmp_path / "o.tif").exists()


def test_file_that_is_not_a_model(plugin, backend_python, rgb8, tmp_path) -> None:
    fake = tmp_path / "weights.safetensors"
    fake.write_text("this is not a model")
    text = run_error(
        {"INPUT": str(rgb8), "MODEL_FILE": str(fake), "OUTPUT": str(tmp_path / "o.tif")}
    )
    assert text.startswith("The model cannot be used")
    assert "weights.safetensors" in text
    assert not (tmp_path / "o.tif").exists()


def test_unknown_model_name(plugin, backend_python, rgb8, tmp_path) -> None:
    text = run_error(
        {"INPUT": str(rgb8), "MODEL": "no-such-model", "OUTPUT": str(tmp_path / "o.tif")}
    )
    assert "'no-such-model' is not installed" in text and "bicubic-x4" in text


def test_missing_model_file(plugin, rgb8, tmp_path) -> None:
    text = run_error(
        {
            "INPUT": str(rgb8),
            "MODEL_FILE": str(tmp_path / "gone.safetensors"),
            "OUTPUT": str(tmp_path / "o.tif"),
        }
    )
    assert "does not exist" in text


def test_extent_outside_the_layer(plugin, rgb8, tmp_path) -> None:
    text = run_error(
        {
            "INPUT": str(rgb8),
            "MODEL": "bicubic-x4",
            "EXTENT": "10,11,50,51 [EPSG:4326]",
            "OUTPUT": str(tmp_path / "o.tif"),
        }
    )
    assert "does not overlap" in text


def test_output_must_be_geotiff(plugin, rgb8, tmp_path) -> None:
    text = run_error({"INPUT": str(rgb8), "MODEL": "bicubic-x4", "OUTPUT": str(tmp_path / "o.png")})
    assert "GeoTIFF" in text


def test_output_must_not_replace_the_input(plugin, rgb8) -> None:
    text = run_error({"INPUT": str(rgb8), "MODEL": "bicubic-x4", "OUTPUT": str(rgb8)})
    assert "overwrite the input" in text
