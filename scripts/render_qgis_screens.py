"""Screenshots of the plugin as an analyst sees it: the dock mid-run and the toolbox dialog.

It starts QGIS (real widgets; run it under Xvfb for a real X server, or offscreen), loads the
plugin through ``classFactory`` like QGIS does, opens the demo raster and writes

- ``docs/img/qgis_dock_running.png``: the main window while the dock runs the default model on
  the CPU: the plan line, the per-tile progress bar with tiles done / total and time left, the log;
- ``docs/img/qgis_toolbox_dialog.png``: Processing's own dialog for "Super-resolve raster layer"
  at the size QGIS opens it (its labels must fit), help panel included.

Run it with Debian's QGIS Python and a backend::

    xvfb-run -a -s "-screen 0 1600x1000x24" env SLIMDIFFSR_PYTHON=.venv/bin/python \\
        .venv-qgis/bin/python scripts/render_qgis_screens.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEMO = sorted((ROOT / "core" / "slimdiffsr" / "demo").glob("*.tif"))


def spin(cond: Any, timeout: float) -> bool:
    from qgis.PyQt.QtCore import QCoreApplication

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        if cond():
            return True
        time.sleep(0.03)
    return cond()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", type=Path, default=DEMO[0] if DEMO else None)
    ap.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--tile", type=int, default=48, help="small tiles: several steps to watch")
    ap.add_argument("--tiles-before-shot", type=int, default=2)
    args = ap.parse_args(argv)
    if args.input is None or not args.input.is_file():
        ap.error("no input raster; pass --input")
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(ROOT))

    from qgis.core import QgsApplication, QgsProject, QgsRasterLayer

    app = QgsApplication([], True)
    app.initQgis()
    sys.path.append(str(Path(QgsApplication.pkgDataPath()) / "python" / "plugins"))
    import qgis.utils
    from processing.core.Processing import Processing
    from qgis.gui import QgsBrowserGuiModel, QgsLayerTreeMapCanvasBridge, QgsMapCanvas
    from qgis.PyQt.QtCore import QCoreApplication, QEvent, Qt
    from qgis.PyQt.QtGui import QColor
    from qgis.PyQt.QtWidgets import QMainWindow, QToolBar

    Processing.initialize()

    class Iface:
        """The QgisInterface calls the plugin and Processing's dialog make; the rest no-ops."""

        def __init__(self) -> None:
            self.win = QMainWindow()
            self.win.setWindowTitle("QGIS - SlimDiffSR")
            self.canvas = QgsMapCanvas(self.win)
            self.canvas.setCanvasColor(QColor("white"))
            self.win.setCentralWidget(self.canvas)
            self.plugins_toolbar = QToolBar("Plugins Toolbar", self.win)
            self.win.addToolBar(self.plugins_toolbar)
            self.browser = QgsBrowserGuiModel()

        def mainWindow(self) -> QMainWindow:
            return self.win

        def mapCanvas(self) -> QgsMapCanvas:
            return self.canvas

        def browserModel(self) -> QgsBrowserGuiModel:
            return self.browser

        def addDockWidget(self, area: Any, dock: Any) -> None:
            self.win.addDockWidget(area, dock)

        def addToolBarIcon(self, action: Any) -> None:
            self.plugins_toolbar.addAction(action)

        def __getattr__(self, name: str) -> Any:
            return lambda *a, **k: None

    iface = Iface()
    qgis.utils.iface = iface
    import qgis_plugin

    iface.win.resize(1280, 800)
    plugin = qgis_plugin.classFactory(iface)
    plugin.initGui()
    project = QgsProject.instance()
    bridge = QgsLayerTreeMapCanvasBridge(project.layerTreeRoot(), iface.canvas)
    layer = QgsRasterLayer(str(args.input), args.input.stem, "gdal")
    if not layer.isValid():
        print(f"error: cannot open {args.input}", file=sys.stderr)
        return 2
    project.addMapLayer(layer)
    iface.canvas.setDestinationCrs(layer.crs())
    iface.canvas.setExtent(layer.extent())
    dock = plugin.ensure_dock()
    dock.setMinimumWidth(400)
    iface.win.resizeDocks([dock], [420], Qt.Horizontal)
    iface.win.show()
    dock.show()
    dock.layer_combo.setLayer(layer)
    if not spin(lambda: dock.describe_task is None, 180):
        print("warning: the backend did not list its models", file=sys.stderr)
    names = [m.get("name") for m in dock.models]
    default = next((m["name"] for m in dock.models if m.get("default")), names[0])
    dock.model_combo.setCurrentIndex(names.index(default))
    dock.tile_spin.setValue(args.tile)
    dock.device_combo.setCurrentIndex(dock.device_combo.findText("cpu"))
    dock.temporary_check.setChecked(True)
    for _ in range(2):  # settle: the changes above queued plans of their own
        spin(lambda: dock.plan_task is None and not dock._plan_timer.isActive(), 120)
        dock.update_plan()
        spin(lambda: dock.plan_task is None and bool(dock.plan_label.text()), 120)

    # 1. the dock mid-run
    texts: list[str] = []
    if not dock.run():
        print(dock.log_view.toPlainText(), file=sys.stderr)
        return 1
    dock._run["feedback"].progress_text.connect(texts.append)
    want = args.tiles_before_shot
    if not spin(lambda: len(texts) > want and "left" in texts[-1] or not dock.is_running(), 900):
        print("warning: no progress to show", file=sys.stderr)
    spin(lambda: False, 0.3)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    running = args.out_dir / "qgis_dock_running.png"
    iface.win.grab().save(str(running))
    print(f"progress when shot: {texts[-1] if texts else '-'}")
    dock.cancel()
    spin(lambda: not dock.is_running(), 30)

    # 2. the toolbox dialog, at the size Processing gives it
    from processing.gui.AlgorithmDialog import AlgorithmDialog

    alg = QgsApplication.processingRegistry().createAlgorithmById("slimdiffsr:superresolve")
    dlg = AlgorithmDialog(alg, False, iface.win)
    dlg.mainWidget().wrappers["INPUT"].setParameterValue(
        layer.id(), dlg.mainWidget().processing_context
    )
    dlg.show()
    spin(lambda: False, 1.0)
    dialog_png = args.out_dir / "qgis_toolbox_dialog.png"
    dlg.grab().save(str(dialog_png))
    print(f"dialog size: {dlg.width()} x {dlg.height()}")
    print(f"wrote {running} and {dialog_png}")

    dlg.close()
    dlg.deleteLater()
    plugin.unload()
    del layer, bridge
    project.removeAllMapLayers()
    iface.win.close()
    iface.win.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    QCoreApplication.processEvents()
    app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
