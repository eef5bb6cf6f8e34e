"""Processing algorithm ``slimdiffsr:superresolve``: super-resolve a raster layer into a GeoTIFF.

Shape of QGIS's ScriptTemplate, thin like dzetsaka's classify: ``prepareAlgorithm`` (which
Processing runs on the main thread, also for QgsProcessingAlgRunnerTask) turns the layer and the
extent into plain values; ``processAlgorithm`` (off the main thread) only hands them to
``backend.upscale`` and maps progress, log and cancellation onto the feedback. No project, layer
or canvas is touched there.
"""

from __future__ import annotations

import os
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
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingUtils,
    QgsProviderRegistry,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from .. import backend
from ..settings import DEFAULT_OVERLAP, DEFAULT_TILE, DEVICES, PRECISIONS

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


class SuperResolveAlgorithm(QgsProcessingAlgorithm):
    """Super-resolve a raster layer with a SlimDiffSR model through the backend worker."""

    INPUT = "INPUT"
    BANDS = "BANDS"
    MODEL = "MODEL"
    TILE_SIZE = "TILE_SIZE"
    OVERLAP = "OVERLAP"
    DEVICE = "DEVICE"
    PRECISION = "PRECISION"
    EXTENT = "EXTENT"
    QA = "QA"
    OUTPUT = "OUTPUT"
    QA_OUTPUT = "QA_OUTPUT"

    def __init__(self) -> None:
        super().__init__()
        self._job: dict[str, Any] = {}
        self._layer_name = ""

    def tr(self, text: str) -> str:
        return QCoreApplication.translate("SlimDiffSR", text)

    def createInstance(self) -> SuperResolveAlgorithm:
        return SuperResolveAlgorithm()

    def name(self) -> str:
        return "superresolve"

    def displayName(self) -> str:
        return self.tr("Super-resolve raster layer")

    def icon(self) -> QIcon:
        return plugin_icon()

    def tags(self) -> list[str]:
        return self.tr("super-resolution,upscale,upsample,sharpen,diffusion,deep learning").split(
            ","
        )

    def shortHelpString(self) -> str:
        return self.tr(
            "Writes a super-resolved copy of a raster layer as a GeoTIFF: same CRS and extent, "
            "pixel size divided by the model's scale (x4 or x8), same data type and nodata.\n\n"
            "Only Input and Output are needed; the defaults use the default model on all bands "
            "the model expects. Model is an installed model name ('default', 'bicubic', ...) or "
            "the path of a .safetensors model file; its card fixes the scale, the bands it "
            "expects and how values are scaled. Bands maps layer bands to the model's bands, in "
            "the model's order. Extent restricts the run to an area (any CRS; it is transformed "
            "to the layer's). QA also writes a consistency layer (how far the result, shrunk "
            "back, departs from the input).\n\n"
            "The work runs in the SlimDiffSR backend (a separate Python environment with PyTorch); "
            "see SlimDiffSR > Backend settings. Large rasters are processed tile by tile; lower "
            "the tile size if the GPU runs out of memory."
        )

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Input layer")))
        self.addParameter(
            QgsProcessingParameterBand(
                self.BANDS,
                self.tr("Bands, in the model's band order (empty: the model's default)"),
                None,
                self.INPUT,
                optional=True,
                allowMultiple=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.MODEL,
                self.tr(
                    "Model (installed name such as 'default' or 'bicubic', or a .safetensors file)"
                ),
                defaultValue="default",
            )
        )
        self.addParameter(
            QgsProcessingParameterExtent(
                self.EXTENT, self.tr("Extent (empty: the whole layer)"), optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.QA, self.tr("Also write the consistency (QA) layer"), defaultValue=False
            )
        )
        advanced = [
            QgsProcessingParameterNumber(
                self.TILE_SIZE,
                self.tr("Tile size (input pixels)"),
                QgsProcessingParameterNumber.Integer,
                DEFAULT_TILE,
                minValue=32,
                maxValue=8192,
            ),
            QgsProcessingParameterNumber(
                self.OVERLAP,
                self.tr("Tile overlap (input pixels)"),
                QgsProcessingParameterNumber.Integer,
                DEFAULT_OVERLAP,
                minValue=0,
                maxValue=1024,
            ),
            QgsProcessingParameterEnum(self.DEVICE, self.tr("Device"), DEVICES, defaultValue=0),
            QgsProcessingParameterEnum(
                self.PRECISION, self.tr("Precision"), PRECISIONS, defaultValue=0
            ),
        ]
        for p in advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        self.addParameter(
            QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Super-resolved"))
        )
        self.addOutput(QgsProcessingOutputRasterLayer(self.QA_OUTPUT, self.tr("Consistency (QA)")))

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
            return False, self.tr(
                "The input '{}' is a vector layer; super-resolution needs a raster layer."
            ).format(layer.name())
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
        """Resolve layers and extents into plain values (runs on the main thread)."""
        self._job = self._resolve(parameters, context)
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
                self.tr("The input could not be opened as a raster layer: {}").format(
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
                    self.tr(
                        "Band {} was requested, but the layer '{}' has only {} band(s); "
                        "choose bands between 1 and {}."
                    ).format(too_high[0], layer.name(), nbands, nbands)
                )

        model = (self.parameterAsString(parameters, self.MODEL, context) or "default").strip()
        self._check_model_path(model)

        roi = None
        if parameters.get(self.EXTENT) not in (None, ""):
            rect = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
            if not rect.isNull() and not rect.isEmpty():
                if not rect.intersects(layer.extent()):
                    raise QgsProcessingException(
                        self.tr(
                            "The extent does not overlap the layer '{}' (after transforming "
                            "it to the layer's CRS {})."
                        ).format(layer.name(), layer.crs().authid())
                    )
                rect = rect.intersect(layer.extent())
                roi = [rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()]

        if with_output:
            output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        else:
            raw = parameters.get(self.OUTPUT)
            if isinstance(raw, QgsProcessingOutputLayerDefinition):
                raw = raw.sink.staticValue()
            output = str(raw or "")
            if not output or output == QgsProcessing.TEMPORARY_OUTPUT:
                output = "temporary.tif"
        if Path(output).suffix.lower() not in (".tif", ".tiff"):
            raise QgsProcessingException(
                self.tr("The output must be a GeoTIFF (.tif) file, got {}.").format(output)
            )
        if os.path.abspath(output) == os.path.abspath(source):
            raise QgsProcessingException(
                self.tr("The output would overwrite the input {}; choose another file.").format(
                    source
                )
            )
        self._layer_name = layer.name()
        return {
            "input": source,
            "output": output,
            "model": model,
            "bands": bands,
            "tile": self.parameterAsInt(parameters, self.TILE_SIZE, context),
            "overlap": self.parameterAsInt(parameters, self.OVERLAP, context),
            "device": DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            "precision": PRECISIONS[self.parameterAsEnum(parameters, self.PRECISION, context)],
            "roi_bounds": roi,
            "qa": self.parameterAsBoolean(parameters, self.QA, context),
            "overwrite": True,  # the user chose this destination in QGIS's file dialog
            "value_contract": None,
            "out_dtype": None,
        }

    def _gdal_path(self, layer: QgsRasterLayer) -> str:
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                self.tr(
                    "The layer '{}' is not a file (provider '{}'); save it as a GeoTIFF first "
                    "(Export > Save As...) and super-resolve that file."
                ).format(layer.name(), layer.providerType())
            )
        parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
        path = parts.get("path") or layer.source()
        if parts.get("layerName") or parts.get("options"):
            raise QgsProcessingException(
                self.tr(
                    "The layer '{}' is a sub-dataset or uses open options; save it as a GeoTIFF "
                    "first and super-resolve that file."
                ).format(layer.name())
            )
        if not path.startswith("/vsi") and not os.path.isfile(path):
            raise QgsProcessingException(
                self.tr("The file behind the layer '{}' does not exist: {}").format(
                    layer.name(), path
                )
            )
        return path

    def _check_model_path(self, model: str) -> None:
        """A model given as a path must exist; the backend checks that it is a model."""
        looks_like_path = model.lower().endswith(".safetensors") or any(
            sep in model for sep in ("/", "\\")
        )
        if looks_like_path and not Path(model).expanduser().is_file():
            raise QgsProcessingException(
                self.tr("The model file does not exist: {}.").format(model)
            )

    # -- the work, off the main thread -------------------------------------------------------
    def processAlgorithm(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        job = dict(self._job)
        feedback.pushInfo(
            self.tr("Super-resolving '{}' with model '{}'").format(self._layer_name, job["model"])
        )
        last_text = [""]

        def progress(fraction: float, message: str) -> None:
            feedback.setProgress(max(0.0, min(100.0, 100.0 * fraction)))
            if message and message != last_text[0]:
                last_text[0] = message
                feedback.setProgressText(message)

        def started(worker: backend.Worker) -> None:
            hello = worker.hello
            feedback.pushInfo(
                self.tr("Backend {} (Python {}, pid {}) at {}, found via {}").format(
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
                on_progress=progress,
                log=feedback.pushConsoleInfo,
                is_canceled=feedback.isCanceled,
                on_started=started,
            )
        except backend.BackendCancelled:
            feedback.pushInfo(self.tr("Cancelled; no output was written."))
            return {}
        except backend.BackendError as e:
            if e.detail:
                feedback.pushDebugInfo(e.detail)
            raise QgsProcessingException(str(e)) from None
        except Exception as e:  # a plugin bug: still a sentence, the traceback goes to the log
            feedback.pushDebugInfo(traceback.format_exc())
            raise QgsProcessingException(
                self.tr("SlimDiffSR failed unexpectedly ({}: {}); see the log for details.").format(
                    type(e).__name__, e
                )
            ) from None

        feedback.pushInfo(summary_text(result.get("summary") or {}))
        out = {self.OUTPUT: result.get("output") or job["output"]}
        if result.get("qa_output"):
            out[self.QA_OUTPUT] = result["qa_output"]
        return out


def summary_text(summary: dict[str, Any]) -> str:
    """One line for the log from the worker's result summary (its keys may grow)."""
    if not summary:
        return "Done."
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
    return "Done: " + ", ".join(p for p in parts if p) + "."


__all__ = ["SuperResolveAlgorithm", "plugin_icon", "summary_text"]
