"""Render the SlimDiffSR dock and a super-resolved result in the map canvas to PNG, offscreen.

For the README: it starts QGIS without a display, loads the plugin through ``classFactory`` like
QGIS does, opens a raster, zooms into a small area, presses the dock's "Preview current view"
(which runs the real algorithm through the real backend worker), then saves

- ``docs/img/qgis_dock.png``: the main window, canvas with the result and the dock beside it;
- ``docs/img/qgis_compare.png``: the same view before (input) and after (result), side by side.

Run it with Debian's QGIS Python and a backend::

    QT_QPA_PLATFORM=offscreen SLIMDIFFSR_PYTHON=.venv/bin/python \\
        .venv-qgis/bin/python scripts/render_dock.py    # the demo raster, the default model
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INPUTS = [
    *sorted((ROOT / "core" / "slimdiffsr" / "demo").glob("*.tif")),  # shipped in the repo
    ROOT.parent / "shared" / "data" / "neon" / "TEAK" / "TEAK_047.tif",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", type=Path, help="raster to show (default: the demo raster)")
    ap.add_argument("--model", default="auto", help="'auto' = the default model, else bicubic")
    ap.add_argument("--zoom", type=float, default=0.5, help="view size as a fraction of the layer")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--size", default="1280x760", help="window size WxH")
    args = ap.parse_args(argv)
    if args.input is None:
        args.input = next((p for p in DEFAULT_INPUTS if p.is_file()), None)
        if args.input is None:
            ap.error("no input raster found; pass --input")
    if not args.input.is_file():
        ap.error(f"input not found: {args.input}")
    return args


def spin(cond: Any, timeout: float) -> bool:
    from qgis.PyQt.QtCore import QCoreApplication

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def render_view(layers: list[Any], extent: Any, crs: Any, size: tuple[int, int]) -> Any:
    """Render layers in extent to a QImage (no widget involved)."""
    from qgis.core import QgsMapRendererParallelJob, QgsMapSettings
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    ms = QgsMapSettings()
    ms.setLayers(layers)
    ms.setDestinationCrs(crs)
    ms.setExtent(extent)
    ms.setOutputSize(QSize(*size))
    ms.setBackgroundColor(QColor("white"))
    job = QgsMapRendererParallelJob(ms)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(ROOT))
    from qgis.core import QgsApplication, QgsProject, QgsRasterLayer, QgsRectangle

    app = QgsApplication([], True)
    app.initQgis()
    sys.path.append(str(Path(QgsApplication.pkgDataPath()) / "python" / "plugins"))
    from processing.core.Processing import Processing
    from qgis.gui import QgsLayerTreeMapCanvasBridge, QgsMapCanvas
    from qgis.PyQt.QtCore import QCoreApplication, QEvent, QPoint, Qt
    from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter
    from qgis.PyQt.QtWidgets import QMainWindow

    Processing.initialize()

    class Iface:
        """The few QgisInterface calls the plugin makes; everything else is a no-op."""

        def __init__(self) -> None:
            self.win = QMainWindow()
            self.win.setWindowTitle("QGIS - SlimDiffSR")
            self.canvas = QgsMapCanvas(self.win)
            self.canvas.setCanvasColor(QColor("white"))
            self.win.setCentralWidget(self.canvas)

        def mainWindow(self) -> QMainWindow:
            return self.win

        def mapCanvas(self) -> QgsMapCanvas:
            return self.canvas

        def addDockWidget(self, area: Any, dock: Any) -> None:
            self.win.addDockWidget(area, dock)

        def __getattr__(self, name: str) -> Any:
            return lambda *a, **k: None

    import qgis_plugin

    iface = Iface()
    w, h = (int(v) for v in args.size.split("x"))
    iface.win.resize(w, h)
    plugin = qgis_plugin.classFactory(iface)
    plugin.initGui()
    project = QgsProject.instance()
    bridge = QgsLayerTreeMapCanvasBridge(project.layerTreeRoot(), iface.canvas)
    layer = QgsRasterLayer(str(args.input), args.input.stem, "gdal")
    if not layer.isValid():
        print(f"error: cannot open {args.input}", file=sys.stderr)
        return 2
    project.addMapLayer(layer)
    dock = plugin.ensure_dock()
    dock.setMinimumWidth(380)
    iface.win.resizeDocks([dock], [400], Qt.Horizontal)
    iface.win.show()
    dock.show()
    dock.layer_combo.setLayer(layer)
    if not spin(lambda: dock.describe_task is None, 180):
        print("warning: the backend did not list its models", file=sys.stderr)
    names = [m.get("name") for m in dock.models]
    if args.model == "auto":
        want = next((m["name"] for m in dock.models if m.get("default")), "bicubic-x4")
    else:
        want = args.model
    if want in names:
        dock.model_combo.setCurrentIndex(names.index(want))
    print(f"model: {dock.current_model().get('name')}")

    e = layer.extent()
    c = e.center()
    half_w, half_h = e.width() * args.zoom / 2, e.height() * args.zoom / 2
    view = QgsRectangle(c.x() - half_w, c.y() - half_h, c.x() + half_w, c.y() + half_h)
    iface.canvas.setDestinationCrs(layer.crs())
    iface.canvas.setExtent(view)
    iface.canvas.refresh()
    spin(lambda: False, 0.5)

    done: list[tuple[bool, Any]] = []
    dock.finished.connect(lambda ok, lyr: done.append((ok, lyr)))
    if not dock.run(preview=True):
        print(dock.log_view.toPlainText(), file=sys.stderr)
        return 1
    if not spin(lambda: bool(done), 600) or not done[0][0]:
        print(dock.log_view.toPlainText(), file=sys.stderr)
        return 1
    result = done[0][1]
    iface.canvas.setExtent(view)
    iface.canvas.refreshAllLayers()
    refreshed: list[bool] = []
    iface.canvas.mapCanvasRefreshed.connect(lambda: refreshed.append(True))
    spin(lambda: bool(refreshed), 30)
    spin(lambda: False, 0.5)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    shot = args.out_dir / "qgis_dock.png"
    iface.win.grab().save(str(shot))

    side = 480
    ratio = view.height() / view.width()
    size = (side, max(1, round(side * ratio)))
    before = render_view([layer], view, layer.crs(), size)
    after = render_view([result], view, layer.crs(), size)
    pad, label_h = 8, 28
    compare = QImage(size[0] * 2 + pad * 3, size[1] + pad * 2 + label_h, QImage.Format_RGB32)
    compare.fill(QColor("white"))
    p = QPainter(compare)
    p.drawImage(QPoint(pad, pad + label_h), before)
    p.drawImage(QPoint(size[0] + pad * 2, pad + label_h), after)
    p.setFont(QFont("Sans", 11))
    p.drawText(pad, pad + 18, f"input ({layer.rasterUnitsPerPixelX():g} m/px)")
    p.drawText(
        size[0] + pad * 2,
        pad + 18,
        f"SlimDiffSR {dock.current_model().get('name')} ({result.rasterUnitsPerPixelX():g} m/px)",
    )
    p.end()
    compare_path = args.out_dir / "qgis_compare.png"
    compare.save(str(compare_path))
    print(f"wrote {shot} and {compare_path}")

    # Tear down in order: widgets and layers must be gone before exitQgis, or Qt crashes at exit.
    plugin.unload()
    del result, layer, bridge
    project.removeAllMapLayers()
    iface.win.close()
    iface.win.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    QCoreApplication.processEvents()
    app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
