"""Plugin entry object: registers the Processing provider, the dock panel and the menu actions."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QAction

from .algorithms.superresolve import plugin_icon
from .provider import SlimDiffSRProvider

MENU = "&SlimDiffSR"


class SlimDiffSRPlugin:
    """What QGIS holds for the plugin's lifetime; the dock is built on first use (fast start)."""

    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.provider: SlimDiffSRProvider | None = None
        self.dock: Any = None
        self.actions: list[QAction] = []

    def initProcessing(self) -> None:
        """Called by QGIS (and qgis_process) for plugins with hasProcessingProvider=yes."""
        if self.provider is None:
            self.provider = SlimDiffSRProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        self.initProcessing()
        parent = self.iface.mainWindow()
        panel = QAction(plugin_icon(), "SlimDiffSR panel", parent)
        panel.setCheckable(True)
        panel.setToolTip("Show the SlimDiffSR super-resolution panel")
        panel.toggled.connect(self._toggle_dock)
        check = QAction(plugin_icon(), "Backend settings and check...", parent)
        check.triggered.connect(self.show_backend_dialog)
        self.actions = [panel, check]
        for a in self.actions:
            self.iface.addPluginToRasterMenu(MENU, a)
        self.iface.addRasterToolBarIcon(panel)

    def unload(self) -> None:
        for a in self.actions:
            self.iface.removePluginRasterMenu(MENU, a)
        if self.actions:
            self.iface.removeRasterToolBarIcon(self.actions[0])
        self.actions = []
        if self.dock is not None:
            self.dock.shutdown()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

    def ensure_dock(self) -> Any:
        """Create the dock on first use and return it."""
        if self.dock is None:
            from .dock import SlimDiffSRDock

            self.dock = SlimDiffSRDock(self.iface, self.iface.mainWindow())
            self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
            if self.actions:
                self.dock.visibilityChanged.connect(self.actions[0].setChecked)
        return self.dock

    def _toggle_dock(self, visible: bool) -> None:
        if visible:
            self.ensure_dock().show()
        elif self.dock is not None:
            self.dock.hide()

    def show_backend_dialog(self) -> None:
        from .check_dialog import BackendDialog

        BackendDialog(self.iface.mainWindow()).exec_()
