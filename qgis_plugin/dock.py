"""Dock panel: pick a layer and a model, see what will happen, run, watch each tile, compare.

UI only. A run builds the parameters of ``slimdiffsr:superresolve`` and starts that same
algorithm through QgsProcessingAlgRunnerTask, so the panel, the toolbox, batch runs and scripts
share one code path and QGIS stays responsive. Backend facts (models, cards, the preflight plan)
come from background QgsTasks; all of them talk to the one warm worker.
"""

from __future__ import annotations

import html
from typing import Any

from qgis.core import (
    QgsApplication,
    QgsMapLayerProxyModel,
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
    QgsDoubleSpinBox,
    QgsFileWidget,
    QgsMapLayerComboBox,
    QgsRasterBandComboBox,
)
from qgis.PyQt.QtCore import Qt, QTimer, pyqtSignal
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

from . import backend, catalog, modelfiles, protocol, settings
from .algorithms.superresolve import VALUE_MAPPINGS, SuperResolveAlgorithm, duration_text
from .results import GROUP_NAME, copy_style, result_group, result_name
from .translation import tr

ALGORITHM_ID = "slimdiffsr:superresolve"
ERROR_COLOR = "#b00020"


class DockFeedback(QgsProcessingFeedback):
    """Feedback that re-emits messages as a signal, delivered on the main thread."""

    message = pyqtSignal(str, str)  # level, text
    progress_text = pyqtSignal(str)  # 3.22's feedback has no signal for setProgressText

    def setProgressText(self, text: str) -> None:  # noqa: N802
        super().setProgressText(text)
        self.progress_text.emit(text)

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
    planned = pyqtSignal(str)  # the "what will happen" line, each time it is recomputed

    def __init__(self, iface: Any, parent: QWidget | None = None) -> None:
        super().__init__(tr("SlimDiffSR"), parent)
        self.setObjectName("SlimDiffSRDock")
        self.iface = iface
        self.models: list[dict[str, Any]] = catalog.models(ask_backend=False)
        self.task: QgsProcessingAlgRunnerTask | None = None
        self.describe_task: QgsTask | None = None
        self.plan_task: QgsTask | None = None
        self.plan: dict[str, Any] | None = None
        self._plan_again = False
        self._run: dict[str, Any] = {}
        self._band_boxes: list[QgsRasterBandComboBox] = []
        self._last_logged = ""
        self.compare_layers: tuple[str, str] | None = None  # (model preview id, bicubic id)
        self._plan_timer = QTimer(self)
        self._plan_timer.setSingleShot(True)
        self._plan_timer.setInterval(400)
        self._plan_timer.timeout.connect(self.update_plan)
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
        form.addRow(tr("Layer"), self.layer_combo)

        self.model_combo = QComboBox(body)
        self.model_combo.currentIndexChanged.connect(self._model_changed)
        self.import_button = QPushButton(tr("Import..."), body)
        self.import_button.setToolTip(tr("Copy a .safetensors model file into the models folder"))
        self.import_button.clicked.connect(self._import_model)
        self.refresh_button = QPushButton(tr("Refresh"), body)
        self.refresh_button.setToolTip(tr("Ask the backend for its installed models"))
        self.refresh_button.clicked.connect(self.refresh_models)
        row = QHBoxLayout()
        row.addWidget(self.model_combo, 1)
        row.addWidget(self.import_button)
        row.addWidget(self.refresh_button)
        form.addRow(tr("Model"), row)
        lay.addLayout(form)

        self.card_label = QLabel(body)
        self.card_label.setWordWrap(True)
        self.card_label.setTextFormat(Qt.RichText)
        lay.addWidget(self.card_label)

        self.bands_box = QgsCollapsibleGroupBox(tr("Band mapping"), body)
        self.bands_form = QFormLayout(self.bands_box)
        lay.addWidget(self.bands_box)

        opts = QgsCollapsibleGroupBox(tr("Options"), body)
        opts.setCollapsed(True)
        of = QFormLayout(opts)
        self.mapping_combo = QComboBox(opts)
        self.mapping_combo.addItems(
            [tr("Automatic (model card)"), tr("Fixed range"), tr("Percentile stretch")]
        )
        self.mapping_combo.currentIndexChanged.connect(self._mapping_changed)
        of.addRow(tr("Value mapping"), self.mapping_combo)
        self.low_spin = QgsDoubleSpinBox(opts)
        self.high_spin = QgsDoubleSpinBox(opts)
        for spin in (self.low_spin, self.high_spin):
            spin.setRange(-1e12, 1e12)
            spin.setDecimals(3)
            spin.valueChanged.connect(self._schedule_plan)
        range_row = QHBoxLayout()
        range_row.addWidget(self.low_spin)
        range_row.addWidget(QLabel("..", opts))
        range_row.addWidget(self.high_spin)
        self.range_label = QLabel(tr("Range"), opts)
        of.addRow(self.range_label, range_row)
        self.tile_spin = QSpinBox(opts)
        self.tile_spin.setRange(0, 8192)
        self.tile_spin.setSingleStep(32)
        self.tile_spin.setSpecialValueText(tr("Automatic"))
        self.tile_spin.setValue(settings.DEFAULT_TILE)
        self.tile_spin.valueChanged.connect(self._schedule_plan)
        of.addRow(tr("Tile size (px)"), self.tile_spin)
        self.overlap_spin = QSpinBox(opts)
        self.overlap_spin.setRange(0, 1024)
        self.overlap_spin.setSpecialValueText(tr("Automatic"))
        self.overlap_spin.setValue(settings.DEFAULT_OVERLAP)
        self.overlap_spin.valueChanged.connect(self._schedule_plan)
        of.addRow(tr("Tile overlap (px)"), self.overlap_spin)
        self.device_combo = QComboBox(opts)
        self.device_combo.addItems(settings.DEVICES)
        of.addRow(tr("Device"), self.device_combo)
        self.precision_combo = QComboBox(opts)
        self.precision_combo.addItems(settings.PRECISIONS)
        of.addRow(tr("Precision"), self.precision_combo)
        self.detail_spin = QgsDoubleSpinBox(opts)
        self.detail_spin.setRange(0.0, 1.0)
        self.detail_spin.setSingleStep(0.1)
        self.detail_spin.setDecimals(2)
        self.detail_spin.setClearValue(0.0)
        self.detail_spin.setToolTip(
            tr(
                "0 = the fidelity default; 1 = the perceptual model (more texture); between "
                "blends their weights. Default model only"
            )
        )
        of.addRow(tr("Fidelity .. detail"), self.detail_spin)
        self.ensemble_combo = QComboBox(opts)
        for n in protocol.ENSEMBLES:
            self.ensemble_combo.addItem(tr("Off") if n == 1 else tr("{} copies").format(n), n)
        self.ensemble_combo.setToolTip(
            tr(
                "Average the model over flipped and rotated copies of each tile: that many "
                "times slower, slightly more faithful"
            )
        )
        of.addRow(tr("Self-ensemble"), self.ensemble_combo)
        self.qa_check = QCheckBox(tr("Also write the consistency (QA) layer"), opts)
        of.addRow(self.qa_check)
        self.output_widget = QgsFileWidget(opts)
        self.output_widget.setStorageMode(QgsFileWidget.SaveFile)
        self.output_widget.setFilter("GeoTIFF (*.tif *.tiff)")
        of.addRow(tr("Output file"), self.output_widget)
        self.folder_widget = QgsFileWidget(opts)
        self.folder_widget.setStorageMode(QgsFileWidget.GetDirectory)
        self.folder_widget.setFilePath(str(settings.output_dir()))
        self.folder_widget.fileChanged.connect(self._folder_changed)
        of.addRow(tr("Output folder"), self.folder_widget)
        self.temporary_check = QCheckBox(tr("Temporary files (gone when QGIS closes)"), opts)
        self.temporary_check.setChecked(settings.temporary_outputs())
        self.temporary_check.toggled.connect(self._temporary_changed)
        of.addRow(self.temporary_check)
        lay.addWidget(opts)
        self._mapping_changed()
        self._update_output_hint()

        self.plan_label = QLabel(body)
        self.plan_label.setWordWrap(True)
        self.plan_label.setTextFormat(Qt.RichText)
        self.plan_label.setObjectName("SlimDiffSRPlan")
        lay.addWidget(self.plan_label)

        buttons = QHBoxLayout()
        self.run_button = QPushButton(tr("Run"), body)
        self.run_button.clicked.connect(lambda: self.run())
        self.preview_button = QPushButton(tr("Preview current view"), body)
        self.preview_button.setToolTip(
            tr("Super-resolve only the map canvas extent, with a bicubic preview to compare")
        )
        self.preview_button.clicked.connect(lambda: self.run(preview=True))
        self.cancel_button = QPushButton(tr("Cancel"), body)
        self.cancel_button.clicked.connect(self.cancel)
        for b in (self.run_button, self.preview_button, self.cancel_button):
            buttons.addWidget(b)
        lay.addLayout(buttons)

        self.compare_check = QCheckBox(tr("Show the bicubic preview instead (compare)"), body)
        self.compare_check.setToolTip(
            tr("Flip between the model's preview and plain bicubic interpolation of the same view")
        )
        self.compare_check.setEnabled(False)
        self.compare_check.toggled.connect(self._compare_toggled)
        lay.addWidget(self.compare_check)

        self.progress = QProgressBar(body)
        self.progress.setRange(0, 100)
        self.progress.setFormat("%p%")
        lay.addWidget(self.progress)
        self.status_label = QLabel(body)
        self.status_label.setWordWrap(True)
        self.status_label.setTextFormat(Qt.RichText)
        self.status_label.setObjectName("SlimDiffSRStatus")
        lay.addWidget(self.status_label)
        self.log_view = QPlainTextEdit(body)
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(2000)
        self.log_view.setPlaceholderText(tr("Log"))
        lay.addWidget(self.log_view, 1)

        self.backend_button = QPushButton(tr("Backend settings and check..."), body)
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
                label += tr(" (default)")
            self.model_combo.addItem(label, m.get("name"))
        idx = self.model_combo.findData(current) if current else -1
        if idx < 0:
            idx = next((i for i, m in enumerate(self.models) if m.get("default")), 0)
        self.model_combo.setCurrentIndex(max(idx, 0))
        self.model_combo.blockSignals(False)
        self._model_changed()

    def current_model(self) -> dict[str, Any]:
        i = self.model_combo.currentIndex()
        return self.models[i] if 0 <= i < len(self.models) else {"name": "?", "scale": "?"}

    def refresh_models(self) -> None:
        """List the backend's models in the background; the combo updates when it answers."""
        if self.describe_task is not None:
            return
        self.set_status(tr("Asking the backend for its models..."))
        self.refresh_button.setEnabled(False)

        def work(task: QgsTask) -> dict[str, Any]:
            return backend.describe()

        def done(exception: BaseException | None, result: dict[str, Any] | None = None) -> None:
            self.describe_task = None
            self.refresh_button.setEnabled(True)
            if exception is not None or not result:
                self.set_status(tr("Backend not available: {}").format(exception), error=True)
                return
            models = result.get("models") or []
            catalog.remember(result)
            if models:
                self.models = models
                self._fill_models()
            self.set_status(
                tr("Backend {} at {}: {} model(s).").format(
                    result["hello"].get("version", "?"), result["location"].python, len(models)
                )
            )

        self.describe_task = QgsTask.fromFunction(
            tr("SlimDiffSR: list models"), work, on_finished=done
        )
        QgsApplication.taskManager().addTask(self.describe_task)

    def _model_changed(self, *_: object) -> None:
        m = self.current_model()
        self.card_label.setText(modelfiles.describe_card(m))
        self.detail_spin.setEnabled(bool(m.get("default")))  # the blend needs both shipped models
        self._rebuild_bands()
        self._update_output_hint()
        self._schedule_plan()

    def _import_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, tr("Import a SlimDiffSR model"), "", tr("SlimDiffSR models (*.safetensors)")
        )
        if path:
            self.import_model(path)

    def import_model(self, path: str) -> bool:
        """Check a model file's card and copy it into the models folder."""
        try:
            card = modelfiles.read_card(path)
            dest = modelfiles.import_model(path, settings.models_dir())
        except (modelfiles.ModelFileError, OSError) as e:
            self.log(tr("Import failed: {}").format(e), "error")
            return False
        entry = {**card, "path": str(dest)}
        self.models = [m for m in self.models if m.get("name") != card["name"]] + [entry]
        self._fill_models(str(card["name"]))
        self.log(tr("Imported model {} into {}").format(card["name"], dest.parent))
        return True

    # -- bands, value mapping, output ------------------------------------------------------------
    def _layer_changed(self, *_: object) -> None:
        for box in self._band_boxes:
            box.setLayer(self.layer_combo.currentLayer())
        self._rebuild_bands()
        self._update_output_hint()
        self._schedule_plan()

    def _rebuild_bands(self) -> None:
        while self.bands_form.rowCount():
            self.bands_form.removeRow(0)
        self._band_boxes = []
        names = list(self.current_model().get("bands") or [])
        layer = self.layer_combo.currentLayer()
        if not names:
            self.bands_form.addRow(QLabel(tr("All bands of the layer (this model takes any).")))
            return
        for i, name in enumerate(names):
            box = QgsRasterBandComboBox(self.bands_box)
            box.setLayer(layer)
            if layer is not None and i < layer.bandCount():
                box.setBand(i + 1)
            box.bandChanged.connect(self._schedule_plan)
            self.bands_form.addRow(str(name), box)
            self._band_boxes.append(box)

    def band_mapping(self) -> list[int] | None:
        """Layer bands in model order; None when the model takes the layer's bands as they are."""
        if not self._band_boxes:
            return None
        return [b.currentBand() for b in self._band_boxes]

    def _mapping_changed(self, *_: object) -> None:
        mode = VALUE_MAPPINGS[self.mapping_combo.currentIndex()]
        for w in (self.low_spin, self.high_spin, self.range_label):
            w.setEnabled(mode != "auto")
        if mode == "percentile":
            self.range_label.setText(tr("Percentiles"))
            if (self.low_spin.value(), self.high_spin.value()) == (0, 0):
                self.low_spin.setValue(2)
                self.high_spin.setValue(98)
        else:
            self.range_label.setText(tr("Values"))
        self._schedule_plan()

    def value_range(self) -> list[float] | None:
        if VALUE_MAPPINGS[self.mapping_combo.currentIndex()] == "auto":
            return None
        return [self.low_spin.value(), self.high_spin.value()]

    def _folder_changed(self, path: str) -> None:
        default = str(settings.default_output_dir())
        settings.set_output_dir(path if path and path != default else None)
        self._update_output_hint()

    def _temporary_changed(self, on: bool) -> None:
        settings.set_temporary_outputs(on)
        self.folder_widget.setEnabled(not on)
        self._update_output_hint()

    def auto_output(self) -> str:
        """Where a run without an output file writes: a new file in the output folder."""
        layer = self.layer_combo.currentLayer()
        m = self.current_model()
        stem = "{}_SR_x{}_{}".format(
            layer.name() if layer is not None else "result", m.get("scale", ""), m.get("name")
        )
        return str(settings.unique_output(stem))

    def _update_output_hint(self) -> None:
        if not hasattr(self, "temporary_check"):
            return
        if self.temporary_check.isChecked():
            hint = tr("[temporary file]")
        else:
            hint = tr("[new file in {}]").format(settings.output_dir())
        self.output_widget.lineEdit().setPlaceholderText(hint)

    # -- what will happen --------------------------------------------------------------------
    def _schedule_plan(self, *_: object) -> None:
        """Recompute the plan shortly after the last change, while the panel is on screen."""
        if hasattr(self, "plan_label") and self.isVisible():
            self._plan_timer.start()

    def update_plan(self) -> None:
        """Ask the backend (preflight) what a run of the current settings would do."""
        if self.task is not None:  # the running job's plan stays on show
            return
        layer = self.layer_combo.currentLayer()
        if layer is None:
            self.plan_label.setText("")
            return
        if self.plan_task is not None:
            self._plan_again = True
            return
        alg = SuperResolveAlgorithm().create()
        params = self.parameters()
        params["OUTPUT"] = "TEMPORARY_OUTPUT"
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        ok, msg = alg.checkParameterValues(params, context)
        if not ok:
            self.show_plan(None, msg)
            return
        try:
            job = alg._resolve(params, context, with_output=False)
        except Exception as e:  # noqa: BLE001 - shown as the plan line
            self.show_plan(None, str(e))
            return

        def work(task: QgsTask) -> dict[str, Any] | None:
            return backend.preflight(job)

        def done(exception: BaseException | None, result: dict[str, Any] | None = None) -> None:
            self.plan_task = None
            if exception is not None:
                self.show_plan(None, str(exception))
            else:
                self.show_plan(result)
            if self._plan_again:
                self._plan_again = False
                self._schedule_plan()

        self.plan_task = QgsTask.fromFunction(tr("SlimDiffSR: plan"), work, on_finished=done)
        QgsApplication.taskManager().addTask(self.plan_task)

    def show_plan(self, answer: dict[str, Any] | None, problem: str = "") -> None:
        self.plan = answer
        if problem:
            text = problem
            self.plan_label.setText(
                f'<span style="color:{ERROR_COLOR}">{html.escape(problem, quote=False)}</span>'
            )
        elif answer is None:
            text = ""
            self.plan_label.setText("")
        else:
            text = plan_sentence(answer, settings.tiles_per_second())
            self.plan_label.setText(html.escape(text, quote=False))
        self.planned.emit(text)

    # -- running -------------------------------------------------------------------------------
    def parameters(self, preview: bool = False, model: str | None = None) -> dict[str, Any]:
        """The algorithm's parameters for the current panel state."""
        layer = self.layer_combo.currentLayer()
        output = self.output_widget.filePath().strip()
        if preview or self.temporary_check.isChecked():
            output = output if output and not preview else "TEMPORARY_OUTPUT"
        elif not output:
            output = self.auto_output()
        mode = self.mapping_combo.currentIndex()
        params: dict[str, Any] = {
            "INPUT": layer.id() if layer is not None else None,
            "BANDS": self.band_mapping(),
            "MODEL": model or str(self.model_combo.currentData() or ""),
            "VALUE_MAPPING": mode,
            "VALUE_RANGE": self.value_range(),
            "TILE_SIZE": self.tile_spin.value(),
            "OVERLAP": self.overlap_spin.value(),
            "DEVICE": self.device_combo.currentIndex(),
            "PRECISION": self.precision_combo.currentIndex(),
            "QA": self.qa_check.isChecked() and not preview,
            "OUTPUT": output,
        }
        if self.detail_spin.isEnabled() and self.detail_spin.value() > 0:
            params["DETAIL"] = self.detail_spin.value()
        if int(self.ensemble_combo.currentData() or 1) > 1:
            params["ENSEMBLE"] = str(self.ensemble_combo.currentData())
        if preview:
            canvas = self.iface.mapCanvas()
            params["EXTENT"] = QgsReferencedRectangle(
                canvas.extent(), canvas.mapSettings().destinationCrs()
            )
        return params

    def run(self, preview: bool = False, model: str | None = None) -> bool:
        """Start the algorithm as a background task; False (with a log line) if it cannot."""
        if self.task is not None:
            return False
        layer = self.layer_combo.currentLayer()
        if layer is None:
            self.log(tr("Choose a raster layer first."), "error")
            return False
        bands = self.band_mapping()
        if bands and any(b < 1 for b in bands):
            self.log(tr("Pick a layer band for every band the model expects."), "error")
            return False
        registry = QgsApplication.processingRegistry()
        alg = registry.createAlgorithmById(ALGORITHM_ID) or SuperResolveAlgorithm().create()
        params = self.parameters(preview, model)
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        ok, msg = alg.checkParameterValues(params, context)
        if not ok:
            self.log(msg, "error")
            return False
        feedback = DockFeedback()
        feedback.progressChanged.connect(self._progress)
        feedback.progress_text.connect(self._progress_text)
        feedback.message.connect(self._feedback_message)
        model_name = params["MODEL"]
        entry = catalog.find(model_name, self.models) or {}
        self._run = {
            "alg": alg,
            "context": context,
            "feedback": feedback,
            "layer_id": layer.id(),
            "layer_name": layer.name(),
            "model": model_name,
            "scale": entry.get("scale"),
            "preview": preview,
            "compare_for": None,
            "bands": params["BANDS"],
            "extent": params.get("EXTENT"),
            "errors": [],
            "logged": set(),
        }
        if model is None:
            settings.set_last_model(str(model_name))
        self.progress.setValue(0)
        self.progress.setFormat("%p%")
        what = tr("the current view of ") if preview else ""
        self.log(tr("Running on {}'{}' with {}...").format(what, layer.name(), model_name))
        self.set_status(tr("Starting the backend..."))
        self.task = QgsProcessingAlgRunnerTask(alg, params, context, feedback)
        self.task.executed.connect(self._executed)
        self._set_running(True)
        QgsApplication.taskManager().addTask(self.task)
        return True

    def cancel(self) -> None:
        if self.task is not None:
            self.log(tr("Cancelling..."))
            self._run["compare_pending"] = False
            self.task.cancel()

    def is_running(self) -> bool:
        return self.task is not None

    def _progress(self, value: float) -> None:
        self.progress.setValue(int(value))

    def _progress_text(self, text: str) -> None:
        """'Tile 3 of 12, about 40 s left': on the bar and in the status line."""
        if text:
            self.progress.setFormat("%p%  " + text.replace("%", "%%"))
            self.set_status(text)

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
            self.set_status(tr("Done."))
        elif run.get("errors"):
            self.set_status(tr("Failed; see the log."), error=True)  # the reason is logged once
        else:
            if not self._logged_recently(tr("Cancelled; no output was written.")):
                self.log(tr("Cancelled; no output was written."))
            self.set_status(tr("Cancelled."))
            self.progress.setValue(0)
            self.progress.setFormat("%p%")
        del task
        if layer is not None and run.get("preview") and run.get("compare_for") is None:
            self._start_compare(run, layer)
        elif layer is not None and run.get("compare_for"):
            self.compare_layers = (run["compare_for"], layer.id())
            self.compare_check.setEnabled(True)
            self.compare_check.setChecked(False)
            self._compare_toggled(False)
            layer = QgsProject.instance().mapLayer(run["compare_for"]) or layer
        self._schedule_plan()
        self.finished.emit(layer is not None, layer)

    def _start_compare(self, run: dict[str, Any], preview_layer: QgsRasterLayer) -> None:
        """After a model preview: a bicubic preview of the same view, for the compare box."""
        scale = run.get("scale") or 4
        bicubic = f"bicubic-x{scale}"
        if catalog.find(bicubic, self.models) is None or run["model"] == bicubic:
            return
        if self.run(preview=True, model=bicubic):
            self._run["compare_for"] = preview_layer.id()

    def _compare_toggled(self, show_bicubic: bool) -> None:
        if not self.compare_layers:
            return
        root = QgsProject.instance().layerTreeRoot()
        model_id, bicubic_id = self.compare_layers
        for lid, visible in ((model_id, not show_bicubic), (bicubic_id, show_bicubic)):
            node = root.findLayer(lid)
            if node is not None:
                node.setItemVisibilityChecked(visible)

    def _add_result(self, run: dict[str, Any], results: dict[str, Any]) -> QgsRasterLayer | None:
        project = QgsProject.instance()
        suffix = tr("preview") if run["preview"] else ""
        layer = QgsRasterLayer(str(results["OUTPUT"]), "result", "gdal")
        if not layer.isValid():
            self.log(tr("The result {} could not be opened.").format(results["OUTPUT"]), "error")
            return None
        source = project.mapLayer(run["layer_id"])
        scale = run.get("scale")
        if isinstance(source, QgsRasterLayer) and layer.rasterUnitsPerPixelX() > 0:
            scale = round(source.rasterUnitsPerPixelX() / layer.rasterUnitsPerPixelX()) or scale
        name = result_name(run["layer_name"], scale, run["model"], suffix)
        layer.setName(name)
        if isinstance(source, QgsRasterLayer):
            copy_style(source, layer, run.get("bands"))
        group = result_group()
        project.addMapLayer(layer, False)
        group.insertLayer(0, layer)
        if results.get("QA_OUTPUT"):
            qa = QgsRasterLayer(str(results["QA_OUTPUT"]), tr("{} QA").format(name), "gdal")
            if qa.isValid():
                project.addMapLayer(qa, False)
                group.insertLayer(1, qa)
        self.log(tr("Added '{}' to the group {}: {}").format(name, GROUP_NAME, results["OUTPUT"]))
        return layer

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.preview_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def _logged_recently(self, text: str) -> bool:
        return text.strip() == self._last_logged

    def log(self, text: str, level: str = "info") -> None:
        """Append to the log, once (a repeat of the previous line is dropped), and scroll."""
        if not text.strip() or text.strip() == self._last_logged:
            return
        self._last_logged = text.strip()
        if level == "error":
            self.log_view.appendHtml(
                f'<span style="color:{ERROR_COLOR}">{html.escape(text, quote=False)}</span>'
            )
        else:
            self.log_view.appendPlainText(text)
        bar = self.log_view.verticalScrollBar()
        bar.setValue(bar.maximum())

    def set_status(self, text: str, error: bool = False) -> None:
        """The one-line state under the progress bar (replaced, never accumulated)."""
        if error:
            self.status_label.setText(
                f'<span style="color:{ERROR_COLOR}">{html.escape(text, quote=False)}</span>'
            )
        else:
            self.status_label.setText(html.escape(text, quote=False))

    def _show_backend_dialog(self) -> None:
        from .check_dialog import BackendDialog

        BackendDialog(self).exec_()
        self.refresh_models()  # no stale error or model list after the settings changed

    def showEvent(self, event: Any) -> None:  # noqa: N802
        """List the backend's models the first time the panel is shown."""
        super().showEvent(event)
        if not getattr(self, "_described", False):
            self._described = True
            self.refresh_models()
        self._schedule_plan()

    def shutdown(self) -> None:
        """Cancel a running task and wait for the background ones when the plugin unloads.

        A Python task still running when QGIS tears down would run into freed objects.
        """
        self._plan_timer.stop()
        if self.task is not None:
            self.task.cancel()
        for task in (self.task, self.plan_task, self.describe_task):
            if task is not None:
                try:
                    task.waitForFinished(15000)
                except RuntimeError:  # already deleted by the task manager
                    pass


def plugin_words(sentence: str) -> str:
    """The backend speaks CLI; in QGIS the same choice is the Value mapping option."""
    return sentence.replace("override with --value-contract", tr("see Value mapping"))


def plan_sentence(answer: dict[str, Any], tiles_per_s: float) -> str:
    """One line from the preflight: model, bands in and out, value mapping, tiles, time."""
    plan = answer.get("plan") or {}
    parts = []
    bands_in = plan.get("bands_in") or []
    if plan.get("model"):
        text = str(plan["model"])
        if bands_in:
            text += tr(": layer bands {} in").format(", ".join(map(str, bands_in)))
            sr, interp = plan.get("bands_sr") or [], plan.get("bands_interpolated") or []
            text += tr(", {} band(s) out").format(len(sr) + len(interp))
            if interp:
                text += tr(" (bands {} bicubic)").format(", ".join(map(str, interp)))
        parts.append(text)
    sentence = str(answer.get("sentence") or "").strip()
    if sentence:
        parts.append(plugin_words(sentence))
    tiles = plan.get("tiles")
    if isinstance(tiles, int | float) and tiles > 0:
        text = tr("{} tile(s)").format(int(tiles))
        if tiles_per_s > 0:
            text += tr(", about {} at the last run's speed").format(
                duration_text(tiles / tiles_per_s)
            )
        parts.append(text)
    parts += [str(w) for w in plan.get("warnings") or []]
    return "; ".join(parts) + ("." if parts else "")


__all__ = ["SlimDiffSRDock", "copy_style", "plan_sentence", "result_group"]
