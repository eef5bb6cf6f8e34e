"""The toolbox dialog's path: the result reaches the map, named, styled, in the SlimDiffSR group.

QGIS 3.22's algorithm dialog runs the algorithm in a QgsProcessingAlgRunnerTask and then loads the
results with ``processing.gui.Postprocessing.handleAlgorithmResults``; the task's thread context
replaces the layers to load of the dialog's context. ``processing.run`` cannot see that, so these
tests drive that exact sequence, the real dialog, and ``processing.runAndLoadResults``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qgis import processing
from qgis.core import (
    QgsApplication,
    QgsContrastEnhancement,
    QgsMultiBandColorRenderer,
    QgsProcessingAlgRunnerTask,
    QgsProcessingOutputLayerDefinition,
    QgsProject,
    QgsRasterLayer,
)
from qgis_helpers import wait_until, write_raster

pytestmark = pytest.mark.qgis

ALG = "slimdiffsr:superresolve"
MODEL = "bicubic-x4"  # fast; the name pattern and loading do not depend on the model


@pytest.fixture
def styled_layer(tmp_path: Path, qgis_new_project) -> QgsRasterLayer:
    """A project layer with a hand-made style (bands 3-2-1, a stretch) the result must copy."""
    y, x = np.mgrid[0:20, 0:24]
    data = np.stack([(x * 9) % 256, (y * 11) % 256, ((x + y) * 5) % 256]).astype(np.uint8)
    src = write_raster(tmp_path / "fields.tif", data)
    layer = QgsRasterLayer(str(src), "fields", "gdal")
    assert layer.isValid()
    renderer = QgsMultiBandColorRenderer(layer.dataProvider(), 3, 2, 1)
    ce = QgsContrastEnhancement(layer.dataProvider().dataType(1))
    ce.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
    ce.setMinimumValue(17)
    ce.setMaximumValue(201)
    renderer.setRedContrastEnhancement(ce)
    layer.setRenderer(renderer)
    QgsProject.instance().addMapLayer(layer)
    return layer


def group_layers() -> list[QgsRasterLayer]:
    group = QgsProject.instance().layerTreeRoot().findGroup("SlimDiffSR")
    return [] if group is None else [n.layer() for n in group.findLayers()]


def assert_loaded_result(source: QgsRasterLayer, out_path: str) -> QgsRasterLayer:
    name = f"fields SR x4 ({MODEL})"
    hits = QgsProject.instance().mapLayersByName(name)
    assert len(hits) == 1, [lyr.name() for lyr in QgsProject.instance().mapLayers().values()]
    layer = hits[0]
    assert Path(layer.source()) == Path(out_path)
    assert layer.width() == source.width() * 4 and layer.crs() == source.crs()
    assert layer in group_layers()  # in the group, not at the root
    root_layers = [
        n.layer() for n in QgsProject.instance().layerTreeRoot().children() if hasattr(n, "layer")
    ]
    assert layer not in root_layers
    r = layer.renderer()
    assert isinstance(r, QgsMultiBandColorRenderer)
    assert (r.redBand(), r.greenBand(), r.blueBand()) == (3, 2, 1)  # the input's style
    assert r.redContrastEnhancement().minimumValue() == 17
    assert r.redContrastEnhancement().maximumValue() == 201
    return layer


def test_dialog_sequence_loads_named_styled_layer(plugin, backend_python, styled_layer, tmp_path):
    """QgsProcessingAlgRunnerTask + handleAlgorithmResults, as AlgorithmDialog.runAlgorithm does."""
    from processing.gui.Postprocessing import handleAlgorithmResults
    from processing.tools import dataobjects
    from qgis.core import QgsProcessingFeedback

    alg = QgsApplication.processingRegistry().createAlgorithmById(ALG)
    feedback = QgsProcessingFeedback()
    context = dataobjects.createContext(feedback)
    out = tmp_path / "dialog_out.tif"
    dest = QgsProcessingOutputLayerDefinition(str(out))
    dest.destinationProject = QgsProject.instance()  # "Open output file after running algorithm"
    params = {"INPUT": styled_layer.id(), "MODEL": MODEL, "OUTPUT": dest}
    ok, msg = alg.checkParameterValues(params, context)
    assert ok, msg
    done: list[tuple[bool, dict]] = []
    task = QgsProcessingAlgRunnerTask(alg, params, context, feedback)
    task.executed.connect(lambda ok_, res: done.append((ok_, res)))
    QgsApplication.taskManager().addTask(task)
    assert wait_until(lambda: bool(done), 120)
    ok, results = done[0]
    assert ok and Path(results["OUTPUT"]) == out
    assert handleAlgorithmResults(alg, context, feedback, True, results)
    assert_loaded_result(styled_layer, str(out))


def test_real_toolbox_dialog_loads_the_result(
    plugin, backend_python, styled_layer, tmp_path, qgis_iface, monkeypatch
):
    """The 3.22 AlgorithmDialog itself, with its default 'Open output file' ticked."""
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.gui import QgsBrowserGuiModel

    browser = QgsBrowserGuiModel()
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser, raising=False)

    alg = QgsApplication.processingRegistry().createAlgorithmById(ALG)
    dlg = AlgorithmDialog(alg, False, None)
    panel = dlg.mainWidget()
    panel.wrappers["INPUT"].setParameterValue(styled_layer.id(), panel.processing_context)
    panel.wrappers["MODEL"].setParameterValue(MODEL, panel.processing_context)
    out = tmp_path / "toolbox_out.tif"
    panel.wrappers["OUTPUT"].setParameterValue(str(out), panel.processing_context)
    finished: list[bool] = []
    dlg.algorithmFinished.connect(lambda ok, _res: finished.append(ok))
    dlg.runAlgorithm()
    assert wait_until(lambda: bool(finished), 120), dlg.textLog.toPlainText()
    assert finished == [True]
    assert_loaded_result(styled_layer, str(out))
    # delete the dialog now: left to Python's exit, it would outlive QGIS and crash
    from qgis.PyQt.QtCore import QCoreApplication, QEvent

    dlg.close()
    dlg.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    del dlg, panel


def test_run_and_load_results_names_the_layer(plugin, backend_python, styled_layer, tmp_path):
    out = tmp_path / "ral.tif"
    res = processing.runAndLoadResults(
        ALG, {"INPUT": styled_layer.id(), "MODEL": MODEL, "OUTPUT": str(out)}
    )
    assert Path(res["OUTPUT"]) == out
    assert_loaded_result(styled_layer, str(out))
    assert not QgsProject.instance().mapLayersByName("Super-resolved")


def test_not_loaded_when_open_output_is_unticked(plugin, backend_python, styled_layer, tmp_path):
    from processing.gui.Postprocessing import handleAlgorithmResults
    from processing.tools import dataobjects
    from qgis.core import QgsProcessingFeedback

    alg = QgsApplication.processingRegistry().createAlgorithmById(ALG)
    feedback = QgsProcessingFeedback()
    context = dataobjects.createContext(feedback)
    out = tmp_path / "quiet.tif"
    params = {
        "INPUT": styled_layer.id(),
        "MODEL": MODEL,
        "OUTPUT": QgsProcessingOutputLayerDefinition(str(out)),
    }
    done: list[bool] = []
    task = QgsProcessingAlgRunnerTask(alg, params, context, feedback)
    task.executed.connect(lambda ok_, _res: done.append(ok_))
    QgsApplication.taskManager().addTask(task)
    assert wait_until(lambda: bool(done), 120) and done[0]
    assert handleAlgorithmResults(alg, context, feedback, True, {})
    assert out.is_file()
    assert not group_layers()
