"""Processing algorithm ``slimdiffsr:superresolve``: super-resolve a raster layer into a GeoTIFF.

Shape of QGIS's ScriptTemplate, thin like dzetsaka's classify: ``prepareAlgorithm`` (which
Processing runs on the main thread, also for QgsProcessingAlgRunnerTask) turns the layer and the
extent into plain values; ``processAlgorithm`` (off the main thread) only hands them to
``backend.upscale``, maps progress, log and cancellation onto the feedback and registers the
result for loading (named, styled and grouped by ``results.ResultPostProcessor``). No project,
layer or canvas is touched there.
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsMapLayer,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingOutputRasterLayer,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRange,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
    QgsProviderRegistry,
    QgsRasterLayer,
)
from qgis.PyQt.QtGui import QIcon

from .. import backend, catalog, protocol, results, settings
from ..settings import DEFAULT_OVERLAP, DEFAULT_TILE, DEVICES, PRECISIONS
from ..translation import tr

ICON_DIRS = (
    Path(__file__).resolve().parents[1] / "icons",
    Path(__file__).resolve().parents[2] / "icons",
)


def plugin_icon() -> QIcon:
    """The plugin icon, inside the installed plugin or at the repository root."""
    for d in ICON_DIRS:
        if (d / "slimdiffsr.svg").is_file():
            return QIcon(str(d / "slimdiffsr.svg"))
    return QIcon()


VALUE_MAPPINGS = ("auto", "fixed", "percentile")
RUNTIMES = ("auto", "torch", "onnx")


def protocol_has(name: str) -> bool:
    """True when the worker protocol this plugin speaks knows the upscale parameter ``name``."""
    return name in protocol.UPSCALE_PARAMS or name in protocol.OPTIONAL_UPSCALE_PARAMS


def value_contract(mode: str, low_high: list[float] | None) -> str | None:
    """The worker's ``value_contract`` for a VALUE_MAPPING choice and its VALUE_RANGE."""
    if mode == "auto":
        return None
    if mode == "percentile":
        lo, hi = low_high if low_high else (2.0, 98.0)
        if not (0 <= lo < hi <= 100):
            raise QgsProcessingException(
                tr(
                    "A percentile stretch needs 0 <= low < high <= 100 in Value range, got {} and "
                    "{}."
                ).format(_g(lo), _g(hi))
            )
        return f"percentile:{_g(lo)}:{_g(hi)}"
    if not low_high:
        raise QgsProcessingException(
            tr(
                "Value mapping 'Fixed range' needs the Value range: the input values that map to "
                "the model's darkest and brightest (for example 0 and 10000 for Sentinel-2 "
                "reflectance)."
            )
        )
    lo, hi = low_high
    if not lo < hi:
        raise QgsProcessingException(
            tr("Value range: low ({}) must be below high ({}).").format(_g(lo), _g(hi))
        )
    return f"fixed:{_g(lo)}:{_g(hi)}"


def _g(v: float) -> str:
    return f"{float(v):g}"


class SuperResolveAlgorithm(QgsProcessingAlgorithm):
    """Super-resolve a raster layer with a SlimDiffSR model through the backend worker."""

    INPUT = "INPUT"
    BANDS = "BANDS"
    MODEL = "MODEL"
    MODEL_FILE = "MODEL_FILE"
    VALUE_MAPPING = "VALUE_MAPPING"
    VALUE_RANGE = "VALUE_RANGE"
    DETAIL = "DETAIL"
    TILE_SIZE = "TILE_SIZE"
    OVERLAP = "OVERLAP"
    DEVICE = "DEVICE"
    PRECISION = "PRECISION"
    RUNTIME = "RUNTIME"
    ENSEMBLE = "ENSEMBLE"
    EXTENT = "EXTENT"
    QA = "QA"
    OUTPUT = "OUTPUT"
    QA_OUTPUT = "QA_OUTPUT"

    def __init__(self) -> None:
        super().__init__()
        self._job: dict[str, Any] = {}
        self._layer_name = ""
        self._layer_id: str | None = None
        self._load_project: Any = None
        self._models: list[dict[str, Any]] = []
        self._default_output = ""

    def tr(self, text: str) -> str:  # QGIS's name; the plugin calls the module's tr()
        return tr(text)

    def createInstance(self) -> SuperResolveAlgorithm:
        return SuperResolveAlgorithm()

    def name(self) -> str:
        return "superresolve"

    def displayName(self) -> str:
        return tr("Super-resolve raster layer")

    def icon(self) -> QIcon:
        return plugin_icon()

    def tags(self) -> list[str]:
        return tr("super-resolution,upscale,upsample,sharpen,diffusion,deep learning").split(",")

    def shortHelpString(self) -> str:
        names = ", ".join(catalog.names(self._models or catalog.models(ask_backend=False)))
        return tr(
            "<p>Writes a super-resolved copy of a raster layer as a GeoTIFF: same CRS and extent, "
            "pixel size divided by the model's scale (x4 or x8), same data type and nodata. Only "
            "<b>Input layer</b> is needed; the result goes to the SlimDiffSR output folder unless "
            "you choose a file or a temporary file.</p>"
            "<p><b>Model</b>: the models installed in the backend ({}). The default, "
            "slimdiffsr-nano-x4, expects red, green and blue; bicubic-x4 and bicubic-x8 are plain "
            "interpolation to compare against. Advanced: <b>Model file</b> runs a .safetensors "
            "model file instead.</p>"
            "<p><b>Bands</b>: the layer bands to feed the model, in the model's band order (for "
            "Sentinel-2 RGB: 4, 3, 2). Empty: the first bands, as many as the model expects.</p>"
            "<p><b>Value mapping</b>: how pixel values are scaled for the model. Automatic uses the "
            "model card and the data type; <i>Fixed range</i> maps Value range low..high (for "
            "example 0..10000 for Sentinel-2 reflectance); <i>Percentile stretch</i> maps the "
            "raster's Value range percentiles (default 2..98), computed once per raster.</p>"
            "<p><b>Extent</b> restricts the run to an area (any CRS). <b>QA layer</b> also writes "
            "how far the result, shrunk back, departs from the input. <b>Self-ensemble</b> "
            "(Advanced) averages the model over 2, 4 or 8 flipped and rotated copies of each "
            "tile: that many times slower, slightly more faithful.</p>"
            "<p>The work runs in the SlimDiffSR backend, a separate Python environment; set it up "
            "and check it in <i>Raster &gt; SlimDiffSR &gt; Backend settings and check...</i>. "
            "The same tool with a preview and a progress bar per tile is in <i>Raster &gt; "
            "SlimDiffSR &gt; SlimDiffSR panel</i>. Lower the tile size (Advanced) if the GPU runs "
            "out of memory.</p>"
        ).format(names)

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self._models = catalog.models()
        model_names = catalog.names(self._models)
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, tr("Input layer")))
        self.addParameter(
            QgsProcessingParameterEnum(
                self.MODEL,
                tr("Model"),
                model_names,
                defaultValue=catalog.default_name(self._models),
                usesStaticStrings=True,
            )
        )
        bands = QgsProcessingParameterBand(
            self.BANDS, tr("Bands"), None, self.INPUT, optional=True, allowMultiple=True
        )
        bands.setHelp(tr("Layer bands in the model's band order; empty: the first bands."))
        self.addParameter(bands)
        self.addParameter(
            QgsProcessingParameterEnum(
                self.VALUE_MAPPING,
                tr("Value mapping"),
                [
                    tr("Automatic (model card)"),
                    tr("Fixed range"),
                    tr("Percentile stretch"),
                ],
                defaultValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterRange(
                self.VALUE_RANGE,
                tr("Value range (low, high)"),
                QgsProcessingParameterNumber.Double,
                optional=True,
            )
        )
        if protocol_has("detail"):
            self.addParameter(
                QgsProcessingParameterNumber(
                    self.DETAIL,
                    tr("Detail (0 fidelity .. 1 detail)"),
                    QgsProcessingParameterNumber.Double,
                    optional=True,
                    minValue=0.0,
                    maxValue=1.0,
                )
            )
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, tr("Extent"), optional=True))
        self.addParameter(
            QgsProcessingParameterBoolean(self.QA, tr("QA layer"), defaultValue=False)
        )
        advanced = [
            QgsProcessingParameterFile(
                self.MODEL_FILE,
                tr("Model file (replaces Model)"),
                extension="safetensors",
                optional=True,
            ),
            QgsProcessingParameterNumber(
                self.TILE_SIZE,
                tr("Tile size (px, 0 = automatic)"),
                QgsProcessingParameterNumber.Integer,
                DEFAULT_TILE,
                minValue=0,
                maxValue=8192,
            ),
            QgsProcessingParameterNumber(
                self.OVERLAP,
                tr("Tile overlap (px, 0 = automatic)"),
                QgsProcessingParameterNumber.Integer,
                DEFAULT_OVERLAP,
                minValue=0,
                maxValue=1024,
            ),
            QgsProcessingParameterEnum(self.DEVICE, tr("Device"), DEVICES, defaultValue=0),
            QgsProcessingParameterEnum(self.PRECISION, tr("Precision"), PRECISIONS, defaultValue=0),
        ]
        if protocol_has("runtime"):
            advanced.append(
                QgsProcessingParameterEnum(
                    self.RUNTIME,
                    tr("Runtime"),
                    list(RUNTIMES),
                    defaultValue="auto",
                    usesStaticStrings=True,
                )
            )
        if protocol_has("ensemble"):
            advanced.append(
                QgsProcessingParameterEnum(
                    self.ENSEMBLE,
                    tr("Self-ensemble (copies per tile, each one run more; 1 = off)"),
                    [str(n) for n in protocol.ENSEMBLES],
                    defaultValue="1",
                    usesStaticStrings=True,
                )
            )
        for p in advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        self._default_output = self._output_default()
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                self.OUTPUT, tr("Super-resolved"), defaultValue=self._default_output or None
            )
        )
        self.addOutput(QgsProcessingOutputRasterLayer(self.QA_OUTPUT, tr("Consistency (QA)")))

    def _output_default(self) -> str:
        """A new file in the output folder, so results survive a restart (or temporary)."""
        try:
            if settings.temporary_outputs():
                return ""
            return str(settings.unique_output("superresolved"))
        except Exception:  # no project/settings (e.g. listing algorithms headless): temporary
            return ""

    # -- checks on the calling thread ---------------------------------------------------------
    def checkParameterValues(
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> tuple[bool, str]:
        """Say in words what is wrong before anything runs.

        Processing reports only a generic "There were errors executing the algorithm" for an
        exception raised in prepareAlgorithm, but shows this method's message everywhere
        (toolbox, batch, processing.run, qgis_process), so all input checks live here.
        """
        value = parameters.get(self.INPUT)
        layer = value if isinstance(value, QgsMapLayer) else None
        if layer is None and isinstance(value, str) and value:
            layer = QgsProcessingUtils.mapLayerFromString(value, context)
        if layer is not None and not isinstance(layer, QgsRasterLayer):
            return False, tr(
                "The input '{}' is a vector layer; super-resolution needs a raster layer."
            ).format(layer.name())
        model = parameters.get(self.MODEL)
        options = catalog.names(self._models)
        if (
            isinstance(model, str)
            and model
            and model not in options
            and not parameters.get(self.MODEL_FILE)
        ):
            return False, tr(
                "The model '{}' is not installed in the backend; installed: {}. Choose one of "
                "them, or give a .safetensors file as Model file."
            ).format(model, ", ".join(options))
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        try:
            self._resolve(parameters, context, with_output=False)
        except QgsProcessingException as e:
            return False, str(e)
        return True, ""

    def prepareAlgorithm(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> bool:
        """Resolve layers and extents into plain values (runs on the main thread).

        The output layer is registered for loading in ``processAlgorithm`` instead: the toolbox
        dialog runs the algorithm in a QgsProcessingAlgRunnerTask, whose thread context replaces
        the layers to load of this (main thread) context when it finishes.
        """
        self._job = self._resolve(parameters, context)
        output = self._job["output"]
        self._load_project = None
        if context.willLoadLayerOnCompletion(output):
            self._load_project = context.layerToLoadOnCompletionDetails(output).project
            layers = context.layersToLoadOnCompletion()
            layers.pop(output, None)
            context.setLayersToLoadOnCompletion(layers)
        return True

    def _resolve(
        self, parameters: dict[str, Any], context: QgsProcessingContext, with_output: bool = True
    ) -> dict[str, Any]:
        """The worker's upscale parameters, or QgsProcessingException saying what is wrong.

        ``with_output=False`` checks the destination from its raw value: parameterAsOutputLayer
        registers the layer to load on completion (and invents a new temporary path each call),
        which a mere check must not do.
        """
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None or not layer.isValid():
            raise QgsProcessingException(
                tr("The input could not be opened as a raster layer: {}").format(
                    parameters.get(self.INPUT)
                )
            )
        source = self._gdal_path(layer)
        nbands = layer.bandCount()
        bands = self.parameterAsInts(parameters, self.BANDS, context) or None
        if bands:
            too_high = [b for b in bands if b > nbands or b < 1]
            if too_high:
                raise QgsProcessingException(
                    tr(
                        "Band {} was requested, but the layer '{}' has only {} band(s); "
                        "choose bands between 1 and {}."
                    ).format(too_high[0], layer.name(), nbands, nbands)
                )

        model_file = (self.parameterAsFile(parameters, self.MODEL_FILE, context) or "").strip()
        if model_file:
            if not Path(model_file).expanduser().is_file():
                raise QgsProcessingException(
                    tr("The model file does not exist: {}.").format(model_file)
                )
            model = model_file
        else:
            model = self.parameterAsEnumString(parameters, self.MODEL, context) or (
                catalog.default_name(self._models)
            )

        mode = VALUE_MAPPINGS[self.parameterAsEnum(parameters, self.VALUE_MAPPING, context)]
        low_high = None
        if parameters.get(self.VALUE_RANGE) not in (None, ""):
            low_high = self.parameterAsRange(parameters, self.VALUE_RANGE, context) or None
            if low_high is not None and len(low_high) != 2:
                low_high = None
        contract = value_contract(mode, low_high)

        roi = None
        if parameters.get(self.EXTENT) not in (None, ""):
            rect = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
            if not rect.isNull() and not rect.isEmpty():
                if not rect.intersects(layer.extent()):
                    raise QgsProcessingException(
                        tr(
                            "The extent does not overlap the layer '{}' (after transforming "
                            "it to the layer's CRS {})."
                        ).format(layer.name(), layer.crs().authid())
                    )
                rect = rect.intersect(layer.extent())
                roi = [rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()]

        if with_output:
            output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
            if output == self._default_output and Path(output).exists():
                # the dialog's default file, run a second time: a new name, never a replacement
                output = str(settings.unique_output("superresolved"))
        else:
            raw = parameters.get(self.OUTPUT)
            if isinstance(raw, QgsProcessingOutputLayerDefinition):
                raw = raw.sink.staticValue()
            output = str(raw or "")
            if not output or output == QgsProcessing.TEMPORARY_OUTPUT:
                output = "temporary.tif"
        if Path(output).suffix.lower() not in (".tif", ".tiff"):
            raise QgsProcessingException(
                tr("The output must be a GeoTIFF (.tif) file, got {}.").format(output)
            )
        if os.path.abspath(output) == os.path.abspath(source):
            raise QgsProcessingException(
                tr("The output would overwrite the input {}; choose another file.").format(source)
            )
        self._layer_name = layer.name()
        project = context.project()
        self._layer_id = (
            layer.id() if project is not None and project.mapLayer(layer.id()) is layer else None
        )
        device = DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)]
        job: dict[str, Any] = {
            "input": source,
            "output": output,
            "model": model,
            "bands": bands,
            "tile": self.parameterAsInt(parameters, self.TILE_SIZE, context),
            "overlap": self.parameterAsInt(parameters, self.OVERLAP, context),
            "device": device,
            "precision": PRECISIONS[self.parameterAsEnum(parameters, self.PRECISION, context)],
            "roi_bounds": roi,
            "qa": self.parameterAsBoolean(parameters, self.QA, context),
            "overwrite": True,  # the user chose this destination in QGIS's file dialog
            "value_contract": contract,
            "out_dtype": None,
        }
        if protocol_has("batch_size") and runs_on_cpu(device):
            job["batch_size"] = 1  # progress after every tile, and cancel between tiles
        if protocol_has("runtime") and self.parameterDefinition(self.RUNTIME) is not None:
            runtime = self.parameterAsEnumString(parameters, self.RUNTIME, context) or "auto"
            if runtime != "auto":
                job["runtime"] = runtime
        if protocol_has("ensemble") and self.parameterDefinition(self.ENSEMBLE) is not None:
            n = int(self.parameterAsEnumString(parameters, self.ENSEMBLE, context) or 1)
            if n > 1:
                job["ensemble"] = n
        if protocol_has("detail") and parameters.get(self.DETAIL) not in (None, ""):
            job["detail"] = self.parameterAsDouble(parameters, self.DETAIL, context)
        return job

    def _gdal_path(self, layer: QgsRasterLayer) -> str:
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                tr(
                    "The layer '{}' is not a file (provider '{}'); save it as a GeoTIFF first "
                    "(Export > Save As...) and super-resolve that file."
                ).format(layer.name(), layer.providerType())
            )
        parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
        path = parts.get("path") or layer.source()
        if parts.get("layerName") or parts.get("options"):
            raise QgsProcessingException(
                tr(
                    "The layer '{}' is a sub-dataset or uses open options; save it as a GeoTIFF "
                    "first and super-resolve that file."
                ).format(layer.name())
            )
        if not path.startswith("/vsi") and not os.path.isfile(path):
            raise QgsProcessingException(
                tr("The file behind the layer '{}' does not exist: {}").format(layer.name(), path)
            )
        return path

    # -- the work, off the main thread -------------------------------------------------------
    def processAlgorithm(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        job = dict(self._job)
        model_label = (
            Path(job["model"]).stem if job["model"].endswith(".safetensors") else job["model"]
        )
        feedback.pushInfo(
            tr("Super-resolving '{}' with model '{}'").format(self._layer_name, model_label)
        )
        try:
            plan = backend.preflight(job)
        except backend.BackendError:
            plan = None  # the run itself reports the problem, with the full message
        if plan and plan.get("sentence"):
            feedback.pushInfo(
                str(plan["sentence"]).replace(
                    "override with --value-contract", tr("see Value mapping")
                )
            )
            for w in (plan.get("plan") or {}).get("warnings") or []:
                feedback.pushWarning(str(w))
        progress = TileProgress(feedback)

        def started(worker: backend.Worker) -> None:
            hello = worker.hello
            feedback.pushInfo(
                tr("Backend {} (Python {}, pid {}) at {}, found via {}").format(
                    hello.get("version", "?"),
                    hello.get("python", "?"),
                    worker.pid,
                    worker.location.python,
                    worker.location.source,
                )
            )

        try:
            result = backend.upscale(
                job,
                on_event=progress.event,
                log=feedback.pushConsoleInfo,
                is_canceled=feedback.isCanceled,
                on_started=started,
            )
        except backend.BackendCancelled as e:
            feedback.pushInfo(str(e))
            return {}
        except backend.BackendError as e:
            if e.detail:
                feedback.pushDebugInfo(e.detail)
            raise QgsProcessingException(str(e)) from None
        except Exception as e:  # a plugin bug: still a sentence, the traceback goes to the log
            feedback.pushDebugInfo(traceback.format_exc())
            raise QgsProcessingException(
                tr("SlimDiffSR failed unexpectedly ({}: {}); see the log for details.").format(
                    type(e).__name__, e
                )
            ) from None

        summary = result.get("summary") or {}
        feedback.pushInfo(summary_text(summary))
        if progress.rate() > 0:
            settings.set_tiles_per_second(progress.rate())
        output = result.get("output") or job["output"]
        out = {self.OUTPUT: output}
        scale = summary.get("scale") or (catalog.find(job["model"], self._models) or {}).get(
            "scale"
        )
        name = results.result_name(self._layer_name, scale, model_label)
        if self._load_project is not None:
            self._load_on_completion(context, output, name, self.OUTPUT, 0)
        if result.get("qa_output"):
            out[self.QA_OUTPUT] = result["qa_output"]
            if self._load_project is not None:
                qa_name = tr("{} QA").format(name)
                self._load_on_completion(context, result["qa_output"], qa_name, self.QA_OUTPUT, 1)
        return out

    def _load_on_completion(
        self, context: QgsProcessingContext, path: str, name: str, output: str, position: int
    ) -> None:
        """Register a result to load, named, styled and grouped, in the running context.

        This context is the one Processing loads from afterwards: the caller's own for
        ``processing.runAndLoadResults``, and for the toolbox dialog the thread context whose
        layers QgsProcessingAlgRunnerTask hands back to the dialog (``takeResultsFrom``).
        """
        details = QgsProcessingContext.LayerDetails(
            name, self._load_project, output, QgsProcessingUtils.LayerHint.Raster
        )
        details.setPostProcessor(
            results.post_processor(self._layer_id, self._job.get("bands"), position)
        )
        context.addLayerToLoadOnCompletion(path, details)


def runs_on_cpu(device: str) -> bool:
    """True for 'cpu', and for 'auto' unless the backend last reported a GPU."""
    return device == "cpu" or (device == "auto" and not settings.backend_has_gpu())


class TileProgress:
    """Maps the worker's progress events onto a feedback: percent, tiles done/total, time left."""

    def __init__(self, feedback: QgsProcessingFeedback) -> None:
        self.feedback = feedback
        self.start = time.monotonic()
        self.first: tuple[float, int] | None = None  # (time, done) at the first tile
        self.last_done = 0
        self.total = 0
        self.last_text = ""

    def rate(self) -> float:
        """Tiles per second after the first tile (model loading excluded)."""
        if self.first is None or self.last_done <= self.first[1]:
            return 0.0
        dt = time.monotonic() - self.first[0]
        return (self.last_done - self.first[1]) / dt if dt > 0 else 0.0

    def event(self, msg: dict[str, Any]) -> None:
        done, total = int(msg.get("done") or 0), int(msg.get("total") or 0)
        frac = msg.get("fraction")
        if frac is None and total:
            frac = done / total
        self.feedback.setProgress(max(0.0, min(100.0, 100.0 * float(frac or 0.0))))
        if total <= 0:
            return
        if done > 0 and self.first is None:
            self.first = (time.monotonic(), done)
        self.last_done, self.total = done, total
        text = progress_text(done, total, self.rate())
        if text != self.last_text:
            self.last_text = text
            self.feedback.setProgressText(text)


def progress_text(done: int, total: int, tiles_per_s: float) -> str:
    """'Tile 3 of 12, about 40 s left' (no estimate before the second tile)."""
    if total <= 0:
        return ""
    text = tr("Tile {} of {}").format(done, total)
    if 0 < done < total and tiles_per_s > 0:
        text += tr(", about {} left").format(duration_text((total - done) / tiles_per_s))
    return text


def duration_text(seconds: float) -> str:
    """Seconds as people say them: '40 s', '3 min', '1 h 5 min'."""
    s = max(0, round(seconds))
    if s < 90:
        return tr("{} s").format(s)
    if s < 3600:
        return tr("{} min").format(round(s / 60))
    return tr("{} h {} min").format(s // 3600, round((s % 3600) / 60))


def summary_text(summary: dict[str, Any]) -> str:
    """One line for the log from the worker's result summary (its keys may grow)."""
    if not summary:
        return tr("Done.")
    size = summary.get("output_size")
    parts = [f"x{summary['scale']}" if "scale" in summary else ""]
    if isinstance(size, list | tuple) and len(size) == 2:
        parts.append(f"{size[0]} x {size[1]} px")
    if "tiles" in summary:
        parts.append(f"{summary['tiles']} tiles")
    if isinstance(summary.get("time_s"), int | float):
        parts.append(f"in {summary['time_s']:.1f} s")
    if summary.get("device"):
        parts.append(f"on {summary['device']} ({summary.get('precision', '')})")
    if isinstance(summary.get("mean_consistency"), int | float):
        parts.append(f"mean consistency {summary['mean_consistency']:.3f}")
    return tr("Done: {}.").format(", ".join(p for p in parts if p))


__all__ = ["SuperResolveAlgorithm", "plugin_icon", "summary_text"]
