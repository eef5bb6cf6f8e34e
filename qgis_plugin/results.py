"""Putting a result into the project: its name, the input's look, the SlimDiffSR group.

Shared by the dock and by Processing's own loading (the toolbox dialog, ``runAndLoadResults``),
where :class:`ResultPostProcessor` does it after Processing has added the layer.
"""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsContrastEnhancement,
    QgsLayerTreeGroup,
    QgsMapLayer,
    QgsMultiBandColorRenderer,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProject,
    QgsRasterLayer,
)

from .translation import tr

GROUP_NAME = "SlimDiffSR"


def result_name(layer_name: str, scale: Any, model: str, suffix: str = "") -> str:
    """``<input layer> SR x4 (<model>)``, the name every result gets."""
    name = tr("{} SR x{} ({})").format(layer_name, scale if scale else "?", model)
    return f"{name} {suffix}" if suffix else name


def result_group(project: QgsProject | None = None) -> QgsLayerTreeGroup:
    """The layer-tree group that collects results, created on top when missing."""
    root = (project or QgsProject.instance()).layerTreeRoot()
    group = root.findGroup(GROUP_NAME)
    if group is None:
        group = root.insertGroup(0, GROUP_NAME)
    return group


def move_to_group(layer: QgsMapLayer, project: QgsProject, position: int = 0) -> None:
    """Move a layer already in the project into the SlimDiffSR group (at ``position``)."""
    root = project.layerTreeRoot()
    group = result_group(project)
    node = root.findLayer(layer.id())
    if node is not None and node.parent() is group:
        return
    if node is None:
        group.insertLayer(position, layer)
        return
    parent = node.parent()
    group.insertChildNode(position, node.clone())
    parent.removeChildNode(node)


def copy_style(source: QgsRasterLayer, target: QgsRasterLayer, bands: list[int] | None) -> None:
    """Give the result the input's look where band numbers still mean the same thing."""
    renderer = source.renderer()
    if renderer is None:
        return
    n_in, n_out = source.bandCount(), target.bandCount()
    identity = bands is None or bands == list(range(1, n_out + 1))
    if identity and n_in == n_out:
        target.setRenderer(renderer.clone())
        target.triggerRepaint()
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
            target.triggerRepaint()


class ResultPostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Runs after Processing loaded a result: the input's style, the SlimDiffSR group."""

    def __init__(self, source_layer_id: str | None, bands: list[int] | None, position: int = 0):
        super().__init__()
        self.source_layer_id = source_layer_id
        self.bands = bands
        self.position = position

    def postProcessLayer(  # noqa: N802 (QGIS's name)
        self, layer: QgsMapLayer, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> None:
        project = context.project() or QgsProject.instance()
        if self.source_layer_id and isinstance(layer, QgsRasterLayer):
            source = project.mapLayer(self.source_layer_id)
            if isinstance(source, QgsRasterLayer) and self.position == 0:
                copy_style(source, layer, self.bands)
        move_to_group(layer, project, self.position)


# Processing keeps a raw pointer to the post-processor; keep the Python objects alive.
_KEEP: list[ResultPostProcessor] = []


def post_processor(
    source_layer_id: str | None, bands: list[int] | None, position: int = 0
) -> ResultPostProcessor:
    p = ResultPostProcessor(source_layer_id, bands, position)
    _KEEP.append(p)
    del _KEEP[:-32]
    return p
