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
    names = [p.name() for p in alg.parameterDefinitions()]
    assert names == [
        "INPUT",
        "BANDS",
        "MODEL",
        "EXTENT",
        "QA",
        "TILE_SIZE",
        "OVERLAP",
        "DEVICE",
        "PRECISION",
        "OUTPUT",
    ]
    required = [
        p.name()
        for p in alg.parameterDefinitions()
        if not p.flags() & QgsProcessingParameterDefinition.FlagOptional
        and p.defaultValue() is None
    ]
    assert required == ["INPUT", "OUTPUT"]  # usable with only INPUT and OUTPUT
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
