"""Dock panel: pick a layer and a model, run, watch progress, get the result in the project.

UI only. A run builds the parameters of ``slimdiffsr:superresolve`` and starts that same
algorithm through QgsProcessingAlgRunnerTask, so the panel, the toolbox, batch runs and scripts
share one code path and QGIS stays responsive. Backend facts (models, cards) come from a
background QgsTask calling ``backend.describe``.
"""

from __future__ import annotations

import html
from typing import Any

from qgis.core import (
    QgsApplication,
    QgsContrastEnhancement,
    QgsLayerTreeGroup,
    QgsMapLayerProxyModel,
    QgsMultiBandColorRenderer,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsReferencedRectangle,
    QgsTask,
)
from qgis.gui import (
    QgsCollapsibleGroupBox,
    QgsDockWidget,
    QgsFileWidget,
    QgsMapLayerComboBox,
    QgsRasterBandComboBox,
)
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from . import backend, modelfiles, settings
from .algorithms.superresolve import SuperResolveAlgorithm

ALGORITHM_ID = "slimdiffsr:superresolve"
GROUP_NAME = "SlimDiffSR"

# Shown until the backend has listed its models: both always resolve in the backend.
FALLBACK_MODELS: list[dict[str, Any]] = [
    {"name": "default", "path": None, "scale": "?", "bands": [], "value_contract": {}},
    {
        "name": "bicubic",
        "path": None,
        "scale": 4,
        "bands": [],
        "value_contract": {},
        "license": "MIT",
        "description": "Bicubic interpolation baseline (no learned weights).",
    },
]


class DockFeedback(QgsProcessingFeedback):
    """Feedback that re-emits messages as a signal, delivered on the main thread."""

    message = pyqtSignal(str, str)  # level, text

    def pushInfo(self, info: str) -> None:
        super().pushInfo(info)
        self.message.emit("info", info)

    def pushConsoleInfo(self, info: str) -> None:
        super().pushConsoleInfo(info)
        self.message.emit("console", info)

    def pushDebugInfo(self, info: str) -> None:
        super().pushDebugInfo(info)
        self.message.emit("debug", info)

    def pushWarning(self, warning: str) -> None:
        super().pushWarning(warning)
        self.message.emit("warning", warning)

    def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N803
        super().reportError(error, fatalError)
        self.message.emit("error", error)


class SlimDiffSRDock(QgsDockWidget):
    """The SlimDiffSR panel. ``finished`` carries (ok, result layer or None) for callers/tests."""

    finished = pyqtSignal(bool, object)

    def __init__(self, iface: Any, parent: QWidget | None = None) -> None:
        super().__init__("SlimDiffSR", parent)
        self.setObjectName("SlimDiffSRDock")
        self.iface = iface
        self.models: list[dict[str, Any]] = list(FALLBACK_MODELS)
        self.task: QgsProcessingAlgRunnerTask | None = None
        self.describe_task: QgsTask | None = None
        self._run: dict[str, Any] = {}
        self._band_boxes: list[QgsRasterBandComboBox] = []
        self._build()
        self._fill_models(settings.last_model())
        self._layer_changed()
        self._set_running(False)

    # -- layout --------------------------------------------------------------------------------
    def _build(self) -> None:
        body = QWidget(self)
        lay = QVBoxLayout(body)

        form = QFormLayout()
        self.layer_combo = QgsMapLayerComboBox(body)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.layer_combo.layerChanged.connect(self._layer_changed)
        form.addRow("Layer", self.layer_combo)

        self.model_combo = QComboBox(body)
        self.model_combo.currentIndexChanged.connect(self._model_changed)
        self.import_button = QPushButton("Import...", body)
        self.import_button.setToolTip("Copy a .safetensors model file into the models folder")
        self.import_button.clicked.connect(self._import_model)
        self.refresh_button = QPushButton("Refresh", body)
        self.refresh_button.setToolTip("Ask the backend for its installed models")
        self.refresh_button.clicked.connect(self.refresh_models)
        row = QHBoxLayout()
        row.addWidget(self.model_combo, 1)
        row.addWidget(self.import_button)
        row.addWidget(self.refresh_button)
        form.addRow("Model", row)
        lay.addLayout(form)

        self.card_label = QLabel(body)
        self.card_label.setWordWrap(True)
        self.card_label.setTextFormat(Qt.RichText)
        lay.addWidget(self.card_label)

        self.bands_box = QgsCollapsibleGroupBox("Band mapping", body)
        self.bands_form = QFormLayout(self.bands_box)
        lay.addWidget(self.bands_box)

        opts = QgsCollapsibleGroupBox("Options", body)
        opts.setCollapsed(True)
        of = QFormLayout(opts)
        self.tile_spin = QSpinBox(opts)
        self.tile_spin.setRange(32, 8192)
        self.tile_spin.setSingleStep(32)
        self.tile_spin.setValue(settings.DEFAULT_TILE)
        of.addRow("Tile size (px)", self.tile_spin)
        self.overlap_spin = QSpinBox(opts)
        self.overlap_spin.setRange(0, 1024)
        self.overlap_spin.setValue(settings.DEFAULT_OVERLAP)
        of.addRow("Tile overlap (px)", self.overlap_spin)
        self.device_combo = QComboBox(opts)
        self.device_combo.addItems(settings.DEVICES)
        of.addRow("Device", self.device_combo)
        self.precision_combo = QComboBox(opts)
        self.precision_combo.addItems(settings.PRECISIONS)
        of.addRow("Precision", self.precision_combo)
        self.qa_check = QCheckBox("Also write the consistency (QA) layer", opts)
        of.addRow(self.qa_check)
        self.output_widget = QgsFileWidget(opts)
        self.output_widget.setStorageMode(QgsFileWidget.SaveFile)
        self.output_widget.setFilter("GeoTIFF (*.tif *.tiff)")
        self.output_widget.lineEdit().setPlaceholderText("[temporary file]")
        of.addRow("Output", self.output_widget)
        lay.addWidget(opts)

        buttons = QHBoxLayout()
        self.run_button = QPushButton("Run", body)
        self.run_button.clicked.connect(lambda: self.run())
        self.preview_button = QPushButton("Preview current view", body)
        self.preview_button.setToolTip("Super-resolve only the map canvas extent, for a quick look")
        self.preview_button.clicked.connect(lambda: self.run(preview=True))
        self.cancel_button = QPushButton("Cancel", body)
        self.cancel_button.clicked.connect(self.cancel)
        for b in (self.run_button, self.preview_button, self.cancel_button):
            buttons.addWidget(b)
        lay.addLayout(buttons)

        self.progress = QProgressBar(body)
        self.progress.setRange(0, 100)
        lay.addWidget(self.progress)
        self.log_view = QPlainTextEdit(body)
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(2000)
        self.log_view.setPlaceholderText("Log")
        lay.addWidget(self.log_view, 1)

        self.backend_button = QPushButton("Backend settings and check...", body)
        self.backend_button.clicked.connect(self._show_backend_dialog)
        lay.addWidget(self.backend_button)
        self.setWidget(body)

    # -- models --------------------------------------------------------------------------------
    def _fill_models(self, select: str | None = None) -> None:
        current = select or self.model_combo.currentData()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for m in self.models:
            label = str(m.get("name"))
            if m.get("default"):
                label += " (default)"
            self.model_combo.addItem(label, m.get("path") or m.get("name"))
        idx = self.model_combo.findData(current) if current else -1
        if idx < 0 and current:
            idx = next((i for i, m in enumerate(self.models) if m.get("name") == current), -1)
        if idx < 0:
            idx = next((i for i, m in enumerate(self.models) if m.get("default")), 0)
        self.model_combo.setCurrentIndex(max(idx, 0))
        self.model_combo.blockSignals(False)
        self._model_changed()

    def current_model(self) -> dict[str, Any]:
        i = self.model_combo.currentIndex()
        return self.models[i] if 0 <= i < len(self.models) else FALLBACK_MODELS[0]

    def refresh_models(self) -> None:
        """List the backend's models in the background; the combo updates when it answers."""
        if self.describe_task is not None:
            return
        self.log("Asking the backend for its models...")
        self.refresh_button.setEnabled(False)

        def work(task: QgsTask) -> dict[str, Any]:
            return backend.describe()

        def done(exception: BaseException | None, result: dict[str, Any] | None = None) -> None:
            self.describe_task = None
            self.refresh_button.setEnabled(True)
            if exception is not None or not result:
                self.log(f"Backend not available: {exception}", "error")
                return
            models = result.get("models") or []
            if models:
                self.models = models
                self._fill_models()
            self.log(
                f"Backend {result['hello'].get('version', '?')} at {result['location'].python}: "
                f"{len(models)} model(s)."
            )

        self.describe_task = QgsTask.fromFunction("SlimDiffSR: list models", work, on_finished=done)
        QgsApplication.taskManager().addTask(self.describe_task)

    def _model_changed(self, *_: object) -> None:
        m = self.current_model()
        self.card_label.setText(modelfiles.describe_card(m))
        self._rebuild_bands()

    def _import_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import a SlimDiffSR model", "", "SlimDiffSR models (*.safetensors)"
        )
        if path:
            self.import_model(path)

    def import_model(self, path: str) -> bool:
        """Check a model file's card and copy it into the models folder."""
        try:
            card = modelfiles.read_card(path)
            dest = modelfiles.import_model(path, settings.models_dir())
        except (modelfiles.ModelFileError, OSError) as e:
            self.log(f"Import failed: {e}", "error")
            return False
        entry = {**card, "path": str(dest)}
        self.models = [m for m in self.models if m.get("name") != card["name"]] + [entry]
        self._fill_models(str(dest))
        self.log(f"Imported model {card['name']} into {dest.parent}")
        return True

    # -- bands ---------------------------------------------------------------------------------
    def _layer_changed(self, *_: object) -> None:
        for box in self._band_boxes:
            box.setLayer(self.layer_combo.currentLayer())
        self._rebuild_bands()

    def _rebuild_bands(self) -> None:
        while self.bands_form.rowCount():
            self.bands_form.removeRow(0)
        self._band_boxes = []
        names = list(self.current_model().get("bands") or [])
        layer = self.layer_combo.currentLayer()
        if not names:
            self.bands_form.addRow(QLabel("All bands of the layer (this model takes any bands)."))
            return
        for i, name in enumerate(names):
            box = QgsRasterBandComboBox(self.bands_box)
            box.setLayer(layer)
            if layer is not None and i < layer.bandCount():
                box.setBand(i + 1)
            self.bands_form.addRow(str(name), box)
            self._band_boxes.append(box)

    def band_mapping(self) -> list[int] | None:
        """Layer bands in model order; None when the model takes the layer's bands as they are."""
        if not self._band_boxes:
            return None
        return [b.currentBand() for b in self._band_boxes]

    # -- running -------------------------------------------------------------------------------
    def parameters(self, preview: bool = False) -> dict[str, Any]:
        """The algorithm's parameters for the current panel state."""
        layer = self.layer_combo.currentLayer()
        output = self.output_widget.filePath().strip()
        params: dict[str, Any] = {
            "INPUT": layer.id() if layer is not None else None,
            "BANDS": self.band_mapping(),
            "MODEL": str(self.model_combo.currentData() or "default"),
            "TILE_SIZE": self.tile_spin.value(),
            "OVERLAP": self.overlap_spin.value(),
            "DEVICE": self.device_combo.currentIndex(),
            "PRECISION": self.precision_combo.currentIndex(),
            "QA": self.qa_check.isChecked(),
            "OUTPUT": output if output and not preview else "TEMPORARY_OUTPUT",
        }
        if preview:
            canvas = self.iface.mapCanvas()
            params["EXTENT"] = QgsReferencedRectangle(
                canvas.extent(), canvas.mapSettings().destinationCrs()
            )
        return params

    def run(self, preview: bool = False) -> bool:
        """Start the algorithm as a background task; False (with a log line) if it cannot."""
        if self.task is not None:
            return False
        layer = self.layer_combo.currentLayer()
        if layer is None:
            self.log("Choose a raster layer first.", "error")
            return False
        bands = self.band_mapping()
        if bands and any(b < 1 for b in bands):
            self.log("Pick a layer band for every band the model expects.", "error")
            return False
        registry = QgsApplication.processingRegistry()
        alg = registry.createAlgorithmById(ALGORITHM_ID) or SuperResolveAlgorithm().create()
        params = self.parameters(preview)
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        ok, msg = alg.checkParameterValues(params, context)
        if not ok:
            self.log(msg, "error")
            return False
        feedback = DockFeedback()
        feedback.progressChanged.connect(self._progress)
        feedback.message.connect(self._feedback_message)
        self._run = {
            "alg": alg,
            "context": context,
            "feedback": feedback,
            "layer_id": layer.id(),
            "layer_name": layer.name(),
            "model": self.current_model().get("name"),
            "preview": preview,
            "bands": params["BANDS"],
            "errors": [],
        }
        settings.set_last_model(str(self.current_model().get("name")))
        self.progress.setValue(0)
        what = "the current view of " if preview else ""
        self.log(f"Running on {what}'{layer.name()}' with {self._run['model']}...")
        self.task = QgsProcessingAlgRunnerTask(alg, params, context, feedback)
        self.task.executed.connect(self._executed)
        self._set_running(True)
        QgsApplication.taskManager().addTask(self.task)
        return True

    def cancel(self) -> None:
        if self.task is not None:
            self.log("Cancelling...")
            self.task.cancel()

    def is_running(self) -> bool:
        return self.task is not None

    def _progress(self, value: float) -> None:
        self.progress.setValue(int(value))

    def _feedback_message(self, level: str, text: str) -> None:
        if level == "error":
            self._run.setdefault("errors", []).append(text)
        if level != "debug":
            self.log(text, level)

    def _executed(self, ok: bool, results: dict[str, Any]) -> None:
        run, self._run = self._run, {}
        task, self.task = self.task, None
        self._set_running(False)
        layer = None
        if ok and results.get("OUTPUT"):
            layer = self._add_result(run, results)
            self.progress.setValue(100)
        elif run.get("errors"):
            self.log("Failed: " + run["errors"][-1], "error")
        else:
            self.log("Cancelled; no output was written.")
            self.progress.setValue(0)
        del task
        self.finished.emit(layer is not None, layer)

    def _add_result(self, run: dict[str, Any], results: dict[str, Any]) -> QgsRasterLayer | None:
        project = QgsProject.instance()
        suffix = " preview" if run["preview"] else ""
        name = f"{run['layer_name']} SR ({run['model']}){suffix}"
        layer = QgsRasterLayer(str(results["OUTPUT"]), name, "gdal")
        if not layer.isValid():
            self.log(f"The result {results['OUTPUT']} could not be opened.", "error")
            return None
        source = project.mapLayer(run["layer_id"])
        if isinstance(source, QgsRasterLayer):
            copy_style(source, layer, run.get("bands"))
        group = result_group()
        project.addMapLayer(layer, False)
        group.insertLayer(0, layer)
        if results.get("QA_OUTPUT"):
            qa = QgsRasterLayer(str(results["QA_OUTPUT"]), f"{name} QA", "gdal")
            if qa.isValid():
                project.addMapLayer(qa, False)
                group.insertLayer(1, qa)
        self.log(f"Added '{name}' to the group {GROUP_NAME}: {results['OUTPUT']}")
        return layer

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.preview_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def log(self, text: str, level: str = "info") -> None:
        if level == "error":
            self.log_view.appendHtml(f'<span style="color:#b00020">{html.escape(text)}</span>')
        else:
            self.log_view.appendPlainText(text)

    def _show_backend_dialog(self) -> None:
        from .check_dialog import BackendDialog

        BackendDialog(self).exec_()

    def showEvent(self, event: Any) -> None:  # noqa: N802
        """List the backend's models the first time the panel is shown."""
        super().showEvent(event)
        if not getattr(self, "_described", False):
            self._described = True
            self.refresh_models()

    def shutdown(self) -> None:
        """Cancel a running task when the plugin unloads."""
        if self.task is not None:
            self.task.cancel()


def result_group() -> QgsLayerTreeGroup:
    """The layer-tree group that collects results, created on top when missing."""
    root = QgsProject.instance().layerTreeRoot()
    group = root.findGroup(GROUP_NAME)
    if group is None:
        group = root.insertGroup(0, GROUP_NAME)
    return group


def copy_style(source: QgsRasterLayer, target: QgsRasterLayer, bands: list[int] | None) -> None:
    """Give the result the input's look where band numbers still mean the same thing."""
    renderer = source.renderer()
    if renderer is None:
        return
    n_in, n_out = source.bandCount(), target.bandCount()
    identity = bands is None or bands == list(range(1, n_out + 1))
    if identity and n_in == n_out:
        target.setRenderer(renderer.clone())
        return
    if isinstance(renderer, QgsMultiBandColorRenderer) and bands:
        where = {b: i + 1 for i, b in enumerate(bands)}
        rgb = (renderer.redBand(), renderer.greenBand(), renderer.blueBand())
        if all(b in where for b in rgb):
            new = QgsMultiBandColorRenderer(target.dataProvider(), *(where[b] for b in rgb))
            for getter, setter in (
                (renderer.redContrastEnhancement, new.setRedContrastEnhancement),
                (renderer.greenContrastEnhancement, new.setGreenContrastEnhancement),
                (renderer.blueContrastEnhancement, new.setBlueContrastEnhancement),
            ):
                ce = getter()
                if ce is not None:
                    setter(QgsContrastEnhancement(ce))
            target.setRenderer(new)
