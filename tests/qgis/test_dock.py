"""The dock panel: pick a layer, run, the result lands in the "SlimDiffSR" group; cancel works."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qgis.core import QgsProject, QgsRasterLayer, QgsRectangle
from qgis_helpers import wait_until, write_raster

pytestmark = pytest.mark.qgis


@pytest.fixture
def dock(plugin, backend_python, qgis_new_project):
    """The plugin's dock, with the backend's model list loaded."""
    d = plugin.ensure_dock()
    if not any(m.get("path") or str(m.get("name")).startswith("bicubic-") for m in d.models):
        d.refresh_models()  # once per session: it costs a backend start
    assert wait_until(lambda: d.describe_task is None, 120)
    assert any(str(m.get("name", "")).startswith("bicubic") for m in d.models), d.models
    yield d
    if d.is_running():
        d.cancel()
        wait_until(lambda: not d.is_running(), 60)


@pytest.fixture
def panel(plugin):
    """The plugin's dock as it opens, before the backend has listed its models."""
    return plugin.ensure_dock()


def choose_model(dock, model_name: str) -> None:
    for i, m in enumerate(dock.models):
        if m.get("name") == model_name:
            dock.model_combo.setCurrentIndex(i)
            return
    raise AssertionError(f"model {model_name} not offered: {dock.models}")


def add_layer(path: Path, name: str) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), name, "gdal")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    return layer


def run_and_wait(dock, preview: bool = False) -> tuple[bool, object]:
    results: list[tuple[bool, object]] = []
    dock.finished.connect(lambda ok, layer: results.append((ok, layer)))
    assert dock.run(preview=preview), dock.log_view.toPlainText()
    assert wait_until(lambda: bool(results), 180), dock.log_view.toPlainText()
    return results[0]


def group_layers() -> list[str]:
    group = QgsProject.instance().layerTreeRoot().findGroup("SlimDiffSR")
    return [] if group is None else [n.layer().name() for n in group.findLayers()]


def test_dock_runs_into_group(dock, model_name, tmp_path) -> None:
    data = (np.indices((32, 40)).sum(0) * 5 % 256).astype(np.uint8)
    src = write_raster(tmp_path / "scene.tif", np.stack([data, data[::-1], 255 - data]))
    layer = add_layer(src, "scene")
    dock.layer_combo.setLayer(layer)
    choose_model(dock, model_name)
    assert dock.parameters()["INPUT"] == layer.id()
    ok, result = run_and_wait(dock)
    assert ok, dock.log_view.toPlainText()
    assert isinstance(result, QgsRasterLayer) and result.isValid()
    assert result.crs() == layer.crs()
    assert result.width() == layer.width() * 4
    assert result.name() in group_layers()
    assert QgsProject.instance().mapLayer(result.id()) is result
    assert dock.progress.value() == 100
    assert dock.run_button.isEnabled() and not dock.cancel_button.isEnabled()


def test_dock_preview_current_view(dock, model_name, qgis_iface, tmp_path) -> None:
    data = (np.indices((48, 48)).sum(0) * 3 % 256).astype(np.uint8)
    src = write_raster(tmp_path / "view.tif", np.stack([data] * 3))
    layer = add_layer(src, "view")
    dock.layer_combo.setLayer(layer)
    choose_model(dock, model_name)
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(layer.crs())
    e = layer.extent()
    canvas.setExtent(QgsRectangle(e.xMinimum(), e.yMinimum(), e.center().x(), e.center().y()))
    ok, result = run_and_wait(dock, preview=True)
    assert ok, dock.log_view.toPlainText()
    assert result.name().endswith("preview")
    view = canvas.extent().intersect(e)  # the canvas keeps its aspect ratio
    got = result.extent()
    assert got.height() < e.height() * 0.75  # only the view, not the whole layer
    px = layer.rasterUnitsPerPixelX()
    for a, b in (
        (got.xMinimum(), view.xMinimum()),
        (got.yMinimum(), view.yMinimum()),
        (got.xMaximum(), view.xMaximum()),
        (got.yMaximum(), view.yMaximum()),
    ):
        assert a == pytest.approx(b, abs=px)
    assert result.rasterUnitsPerPixelX() == pytest.approx(layer.rasterUnitsPerPixelX() / 4)


def test_dock_cancel(dock, tmp_path) -> None:
    data = (np.indices((768, 768)).sum(0) % 256).astype(np.uint8)
    src = write_raster(tmp_path / "large.tif", np.stack([data] * 3))
    layer = add_layer(src, "large")
    dock.layer_combo.setLayer(layer)
    choose_model(dock, "bicubic-x4")
    dock.tile_spin.setValue(32)
    dock.overlap_spin.setValue(16)
    out = tmp_path / "large_sr.tif"
    dock.output_widget.setFilePath(str(out))
    before = group_layers()
    results: list[tuple[bool, object]] = []
    dock.finished.connect(lambda ok, lyr: results.append((ok, lyr)))
    assert dock.run()
    assert dock.cancel_button.isEnabled() and not dock.run_button.isEnabled()
    assert wait_until(lambda: dock.progress.value() > 0 or bool(results), 120)
    assert not results, dock.log_view.toPlainText()
    dock.cancel()
    assert wait_until(lambda: bool(results), 60)
    assert results[0] == (False, None)
    assert "Cancelled" in dock.log_view.toPlainText()
    assert not out.exists()
    assert group_layers() == before
    assert dock.run_button.isEnabled()


def test_dock_detail_and_self_ensemble_reach_the_output(dock, tmp_path) -> None:
    """The Options' fidelity..detail blend and self-ensemble travel to the engine: the output's
    tags name the blended model and the ensemble size; detail is offered for the default only."""
    from osgeo import gdal

    names = [m.get("name") for m in dock.models]
    if "slimdiffsr-nano-x4" not in names:
        pytest.skip("the shipped default model is not installed in this backend")
    data = (np.indices((24, 28)).sum(0) * 7 % 256).astype(np.uint8)
    src = write_raster(tmp_path / "blend.tif", np.stack([data, 255 - data, data[::-1]]))
    dock.layer_combo.setLayer(add_layer(src, "blend"))
    choose_model(dock, "bicubic-x4" if "bicubic-x4" in names else "bicubic")
    assert not dock.detail_spin.isEnabled()
    choose_model(dock, "slimdiffsr-nano-x4")
    assert dock.detail_spin.isEnabled()
    dock.detail_spin.setValue(0.5)
    dock.ensemble_combo.setCurrentIndex(dock.ensemble_combo.findData(2))
    params = dock.parameters()
    assert params["DETAIL"] == 0.5 and params["ENSEMBLE"] == "2"
    try:
        ok, result = run_and_wait(dock)
        assert ok, dock.log_view.toPlainText()
        ds = gdal.Open(result.source())
        assert ds.GetMetadataItem("SLIMDIFFSR_ENSEMBLE") == "2"
        assert "detail 0.5" in ds.GetMetadataItem("SLIMDIFFSR_MODEL")
        assert ds.GetRasterBand(1).ReadAsArray().std() > 10
        ds = None
    finally:
        dock.detail_spin.setValue(0.0)
        dock.ensemble_combo.setCurrentIndex(0)
    assert "DETAIL" not in dock.parameters() and "ENSEMBLE" not in dock.parameters()


def test_dock_shows_model_card(panel) -> None:
    names = [m.get("name") for m in panel.models]
    panel.model_combo.setCurrentIndex(
        names.index("bicubic-x4" if "bicubic-x4" in names else "bicubic")
    )
    text = panel.card_label.text()
    assert "x4" in text and "license" in text
    assert "any" in text  # bicubic takes any bands


def test_dock_import_rejects_a_non_model(panel, tmp_path, monkeypatch) -> None:
    from qgis_plugin import settings

    monkeypatch.setattr(settings, "models_dir", lambda: tmp_path / "models")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    assert not panel.import_model(str(junk))
    assert "not a safetensors model file" in panel.log_view.toPlainText()
    assert not (tmp_path / "models" / "junk.safetensors").exists()


def write_model_file(path: Path, card: dict) -> Path:
    """A minimal valid safetensors file carrying a SlimDiffSR card (one 1-element tensor)."""
    import json
    import struct

    header = {
        "__metadata__": {"slimdiffsr.card": json.dumps(card), "slimdiffsr.format": "1"},
        "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
    }
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\x00\x00\x80\x3f")
    return path


def test_dock_import_model_shows_its_card(panel, tmp_path, monkeypatch) -> None:
    from qgis_plugin import settings

    monkeypatch.setattr(settings, "models_dir", lambda: tmp_path / "models")
    card = {
        "name": "my-s2-x8",
        "architecture": "student",
        "scale": 8,
        "bands": ["red", "green", "blue", "nir"],
        "value_contract": {"kind": "fixed", "low": [0], "high": [10000]},
        "license": "CC-BY-4.0",
    }
    src = write_model_file(tmp_path / "my-s2-x8.safetensors", card)
    assert panel.import_model(str(src))
    assert (tmp_path / "models" / "my-s2-x8.safetensors").is_file()
    assert panel.current_model()["name"] == "my-s2-x8"
    text = panel.card_label.text()
    assert "x8" in text and "nir" in text and "CC-BY-4.0" in text and "10000" in text
    assert len(panel._band_boxes) == 4  # one band picker per model band
    assert panel.parameters()["MODEL"] == "my-s2-x8"  # by name: the backend lists the folder


def test_render_script_writes_pngs(backend_python, tmp_path) -> None:
    """scripts/render_dock.py (the README screenshots) still works, offscreen."""
    import os
    import subprocess
    import sys

    from qgis.PyQt.QtGui import QImage

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", SLIMDIFFSR_PYTHON=backend_python)
    r = subprocess.run(
        [sys.executable, str(root / "scripts" / "render_dock.py"), "--out-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for name in ("qgis_dock.png", "qgis_compare.png"):
        img = QImage(str(tmp_path / name))
        assert not img.isNull() and img.width() > 400, name


def test_dock_progress_per_tile_and_plan(dock, tmp_path) -> None:
    """Before Run: one line from the backend's preflight; during: a step per tile with its count."""
    data = (np.indices((96, 96)).sum(0) * 2 % 256).astype(np.uint8)
    src = write_raster(tmp_path / "tiles.tif", np.stack([data, data.T, 255 - data]))
    layer = add_layer(src, "tiles")
    plans: list[str] = []
    dock.planned.connect(plans.append)
    dock.layer_combo.setLayer(layer)
    choose_model(dock, "bicubic-x4")
    dock.tile_spin.setValue(32)
    dock.overlap_spin.setValue(16)
    dock.device_combo.setCurrentIndex(2)  # cpu: the plugin asks for one tile per batch
    dock.update_plan()
    assert wait_until(lambda: bool(plans) and dock.plan_task is None, 120)
    assert dock.plan is not None, plans
    tiles = dock.plan["plan"]["tiles"]
    assert tiles > 4
    line = plans[-1]
    assert line.startswith("bicubic") and "layer bands 1, 2, 3 in" in line, line
    assert "uint8" in line and f"{tiles} tile(s)" in line, line
    values: list[int] = []
    texts: list[str] = []
    dock.progress.valueChanged.connect(values.append)
    results: list[tuple[bool, object]] = []
    dock.finished.connect(lambda ok, lyr: results.append((ok, lyr)))
    dock.output_widget.setFilePath(str(tmp_path / "tiles_sr.tif"))
    assert dock.run()
    dock._run["feedback"].progress_text.connect(texts.append)
    assert wait_until(lambda: bool(results), 180), dock.log_view.toPlainText()
    assert results[0][0], dock.log_view.toPlainText()
    steps = sorted({v for v in values if 0 < v < 100})
    assert len(steps) >= tiles - 2, (tiles, values)  # one step per tile, not per batch of 4
    assert any(t.startswith(f"Tile 1 of {tiles}") for t in texts), texts
    assert f"Tile {tiles} of {tiles}" in texts[-1]
    assert any("left" in t for t in texts), texts  # remaining time once the speed is known
    from qgis_plugin import settings

    assert settings.tiles_per_second() > 0  # the next plan line can estimate the time


def test_dock_log_scrolls_and_says_things_once(dock, tmp_path) -> None:
    data = (np.indices((24, 24)).sum(0) % 256).astype(np.uint8)
    src = write_raster(tmp_path / "tiny.tif", np.stack([data] * 3))
    layer = add_layer(src, "tiny")
    dock.layer_combo.setLayer(layer)
    choose_model(dock, "bicubic-x4")
    for i in range(60):  # fill the log past the fold
        dock.log(f"filler line {i}")
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the output folder should be")
    dock.output_widget.setFilePath(str(blocked / "out.tif"))
    ok, _ = run_and_wait(dock)
    assert not ok
    text = dock.log_view.toPlainText()
    failure = [ln for ln in text.splitlines() if "could not be written" in ln or "cannot" in ln]
    assert len(failure) == 1, text[-2000:]
    bar = dock.log_view.verticalScrollBar()
    assert bar.maximum() > 0 and bar.value() == bar.maximum()  # the end of the log is shown
    assert "Failed" in dock.status_label.text()


def test_dock_status_is_fresh_after_backend_change(dock, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SLIMDIFFSR_PYTHON", str(tmp_path / "nowhere" / "python"))
    dock.refresh_models()
    assert wait_until(lambda: dock.describe_task is None, 60)
    assert "does not exist" in dock.status_label.text()
    monkeypatch.undo()  # what saving a good backend in the settings dialog amounts to
    dock.refresh_models()
    assert wait_until(lambda: dock.describe_task is None, 120)
    status = dock.status_label.text()
    assert "does not exist" not in status and "model(s)" in status
    assert dock.model_combo.count() == len(dock.models) >= 3


def test_dock_compare_preview_with_bicubic(dock, model_name, qgis_iface, tmp_path) -> None:
    """After a preview, the compare box flips between the model's and a bicubic preview."""
    y, x = np.mgrid[0:40, 0:40]
    data = np.stack([(x * 7) % 256, (y * 5) % 256, ((x * y) % 256)]).astype(np.uint8)
    src = write_raster(tmp_path / "cmp.tif", data)
    layer = add_layer(src, "cmp")
    dock.layer_combo.setLayer(layer)
    choose_model(dock, model_name if model_name != "bicubic-x4" else "bicubic-x8")
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(layer.crs())
    e = layer.extent()
    canvas.setExtent(QgsRectangle(e.xMinimum(), e.yMinimum(), e.center().x(), e.center().y()))
    ok, result = run_and_wait(dock, preview=True)
    assert ok, dock.log_view.toPlainText()
    assert wait_until(lambda: not dock.is_running() and dock.compare_check.isEnabled(), 180)
    model_id, bicubic_id = dock.compare_layers
    project = QgsProject.instance()
    bicubic = project.mapLayer(bicubic_id)
    assert bicubic is not None and "bicubic" in bicubic.name() and "preview" in bicubic.name()
    assert bicubic.extent() == project.mapLayer(model_id).extent()  # the same view
    root = project.layerTreeRoot()
    dock.compare_check.setChecked(True)
    assert root.findLayer(bicubic_id).isVisible() and not root.findLayer(model_id).isVisible()
    dock.compare_check.setChecked(False)
    assert root.findLayer(model_id).isVisible() and not root.findLayer(bicubic_id).isVisible()


def test_results_go_to_the_output_folder(dock, tmp_path) -> None:
    """No output file chosen: a new file in the output folder (kept after QGIS exits)."""
    from qgis.core import QgsApplication

    from qgis_plugin import settings

    project_file = tmp_path / "proj" / "survey.qgz"
    project_file.parent.mkdir()
    QgsProject.instance().setFileName(str(project_file))
    try:
        assert settings.default_output_dir() == project_file.parent / "SlimDiffSR"
    finally:
        QgsProject.instance().setFileName("")
    folder = tmp_path / "results"
    dock.folder_widget.setFilePath(str(folder))
    dock.temporary_check.setChecked(False)
    assert settings.output_dir() == folder
    alg = QgsApplication.processingRegistry().createAlgorithmById("slimdiffsr:superresolve")
    default = Path(alg.parameterDefinition("OUTPUT").defaultValue())
    assert default.parent == folder and default.suffix == ".tif"  # the toolbox offers it too
    data = (np.indices((20, 20)).sum(0) * 6 % 256).astype(np.uint8)
    layer = add_layer(write_raster(tmp_path / "keep.tif", np.stack([data] * 3)), "keep")
    dock.layer_combo.setLayer(layer)
    choose_model(dock, "bicubic-x4")
    dock.output_widget.setFilePath("")
    ok, result = run_and_wait(dock)
    assert ok, dock.log_view.toPlainText()
    assert Path(result.source()).parent == folder
    assert Path(result.source()).name == "keep_SR_x4_bicubic-x4.tif"
    ok, again = run_and_wait(dock)  # never replaces an earlier result
    assert Path(again.source()).name == "keep_SR_x4_bicubic-x4_2.tif"
    settings.set_output_dir(None)


@pytest.mark.slow
def test_screens_script_writes_pngs(backend_python, tmp_path) -> None:
    """scripts/render_qgis_screens.py (dock mid-run, toolbox dialog) still works, offscreen."""
    import os
    import subprocess
    import sys

    from qgis.PyQt.QtGui import QImage

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", SLIMDIFFSR_PYTHON=backend_python)
    env.pop("DISPLAY", None)
    r = subprocess.run(
        [
            sys.executable,
            str(root / "scripts" / "render_qgis_screens.py"),
            "--out-dir",
            str(tmp_path),
            "--tiles-before-shot",
            "1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "progress when shot: Tile" in r.stdout
    for name in ("qgis_dock_running.png", "qgis_toolbox_dialog.png"):
        img = QImage(str(tmp_path / name))
        assert not img.isNull() and img.width() > 400, name
