"""The Processing provider: it only lists the algorithms (like dzetsaka's provider)."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import SuperResolveAlgorithm
from .algorithms.superresolve import plugin_icon
from .translation import tr


class SlimDiffSRProvider(QgsProcessingProvider):
    """Provider ``slimdiffsr``; its outputs are GeoTIFFs because the engine writes GeoTIFF."""

    def id(self) -> str:
        return "slimdiffsr"

    def name(self) -> str:
        return "SlimDiffSR"

    def longName(self) -> str:
        return tr("SlimDiffSR super-resolution")

    def icon(self) -> QIcon:
        return plugin_icon()

    def loadAlgorithms(self) -> None:
        self.addAlgorithm(SuperResolveAlgorithm())

    def supportedOutputRasterLayerExtensions(self) -> list[str]:
        return ["tif"]

    def defaultRasterFileExtension(self) -> str:
        return "tif"
