"""The plugin loads in real QGIS through classFactory and registers its Processing provider."""

from __future__ import annotations

import configparser
import sys
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsProcessingParameterDefinition

pytestmark = pytest.mark.qgis

ROOT = Path(__file__).resolve().parents[2]


def test_class_factory_registers_provider_and_algorithm(plugin) -> None:
    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("slimdiffsr")
    assert provider is not None and provider.name() == "SlimDiffSR"
    alg = registry.algorithmById("slimdiffsr:superresolve")
    assert alg is not None
    assert alg.displayName() == "Super-resolve raster layer"
    optional = ("DETAIL", "RUNTIME")  # present once the backend protocol has them
    names = [p.name() for p in alg.parameterDefinitions() if p.name() not in optional]
    assert names[:7] == ["INPUT", "MODEL", "BANDS", "VALUE_MAPPING", "VALUE_RANGE", "EXTENT", "QA"]
    assert names[-1] == "OUTPUT"
    advanced = [
        p.name()
        for p in alg.parameterDefinitions()
        if p.flags() & QgsProcessingParameterDefinition.FlagAdvanced and p.name() not in optional
    ]
    assert advanced[:5] == ["MODEL_FILE", "TILE_SIZE", "OVERLAP", "DEVICE", "PRECISION"]
    required = [
        p.name()
        for p in alg.parameterDefinitions()
        if not p.flags() & QgsProcessingParameterDefinition.FlagOptional
        and p.defaultValue() is None
    ]
    assert required == ["INPUT"]  # OUTPUT defaults to a new file in the output folder
    assert "tif" in provider.supportedOutputRasterLayerExtensions()


def test_plugin_does_not_pull_torch_into_qgis(plugin) -> None:
    assert "torch" not in sys.modules
    assert "slimdiffsr" not in sys.modules  # the backend package stays in its own Python


def test_dock_and_actions_exist(plugin, qgis_iface) -> None:
    assert [a.text() for a in plugin.actions] == [
        "SlimDiffSR panel",
        "Backend settings and check...",
    ]
    dock = plugin.ensure_dock()
    assert dock.layer_combo is not None and dock.model_combo.count() >= 2


def test_metadata_is_complete() -> None:
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read(ROOT / "metadata.txt", encoding="utf-8")
    g = cp["general"]
    for key in (
        "name",
        "qgisMinimumVersion",
        "description",
        "about",
        "version",
        "author",
        "email",
        "tracker",
        "repository",
        "homepage",
        "tags",
        "icon",
        "license",
    ):
        assert g.get(key, "").strip(), key
    assert g["qgisMinimumVersion"] == "3.22"
    assert g["hasProcessingProvider"] == "yes"
    assert (ROOT / g["icon"]).is_file()


def test_model_options_are_the_backends_models(plugin, backend_python) -> None:
    """MODEL lists exactly the installed models, by name, and accepts them as strings."""
    from qgis_plugin import backend, catalog

    listed = [m["name"] for m in backend.list_models()]
    catalog.update(backend.list_models())
    alg = QgsApplication.processingRegistry().algorithmById("slimdiffsr:superresolve")
    param = alg.parameterDefinition("MODEL")
    assert param.usesStaticStrings()
    assert param.options() == listed
    assert "slimdiffsr-nano-x4" in listed and "bicubic-x4" in listed
    assert param.defaultValue() == "slimdiffsr-nano-x4"
    assert param.checkValueIsAcceptable("bicubic-x8")
    assert not param.checkValueIsAcceptable("no-such-model")


def test_new_model_appears_after_refresh(plugin, backend_python, tmp_path) -> None:
    """A model imported into the models folder shows up in MODEL once the list is refreshed."""
    import json
    import struct

    from qgis_plugin import backend, catalog, modelfiles, settings

    zoo = ROOT / "core" / "slimdiffsr" / "zoo" / "slimdiffsr-nano-x4.safetensors"
    if not zoo.is_file():
        pytest.skip("needs the shipped default model file")
    card = {**modelfiles.read_card(zoo), "name": "my-rgb-x4"}
    header = {
        "__metadata__": {"slimdiffsr.card": json.dumps(card), "slimdiffsr.format": "1"},
        "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
    }
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    models = tmp_path / "models"
    models.mkdir()
    (models / "my-rgb-x4.safetensors").write_bytes(
        struct.pack("<Q", len(raw)) + raw + b"\x00\x00\x80\x3f"
    )
    old = settings.models_dir()
    settings.set_models_dir(str(models))
    try:
        listed = backend.list_models()  # the warm worker restarts for the new folder
        assert "my-rgb-x4" in [m["name"] for m in listed]
        assert catalog.update(listed)  # changed: the provider reloads its algorithms
        alg = QgsApplication.processingRegistry().algorithmById("slimdiffsr:superresolve")
        assert "my-rgb-x4" in alg.parameterDefinition("MODEL").options()
    finally:
        settings.set_models_dir(str(old))
        catalog.update(backend.list_models())
    alg = QgsApplication.processingRegistry().algorithmById("slimdiffsr:superresolve")
    assert "my-rgb-x4" not in alg.parameterDefinition("MODEL").options()
