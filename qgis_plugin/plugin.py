"""Plugin entry object: registers the Processing provider, the dock panel and the menu actions."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QAction

from . import backend, translation
from .algorithms.superresolve import plugin_icon
from .provider import SlimDiffSRProvider
from .translation import tr

MENU = "&SlimDiffSR"


class SlimDiffSRPlugin:
    """What QGIS holds for the plugin's lifetime; the dock is built on first use (fast start)."""

    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.provider: SlimDiffSRProvider | None = None
        self.dock: Any = None
        self.actions: list[QAction] = []
        # before any tr(): menu entries, the algorithm and messages come out translated
        self.translator = translation.install_translator()

    def initProcessing(self) -> None:
        """Called by QGIS (and qgis_process) for plugins with hasProcessingProvider=yes."""
        if self.provider is None:
            self.provider = SlimDiffSRProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        self.initProcessing()
        parent = self.iface.mainWindow()
        panel = QAction(plugin_icon(), tr("SlimDiffSR panel"), parent)
        panel.setObjectName("SlimDiffSRPanelAction")
        panel.setCheckable(True)
        panel.setToolTip(tr("Show the SlimDiffSR super-resolution panel"))
        panel.toggled.connect(self._toggle_dock)
        check = QAction(plugin_icon(), tr("Backend settings and check..."), parent)
        check.setObjectName("SlimDiffSRBackendAction")
        check.triggered.connect(self.show_backend_dialog)
        self.actions = [panel, check]
        for a in self.actions:
            self.iface.addPluginToRasterMenu(MENU, a)
        self.iface.addToolBarIcon(panel)  # the Plugins toolbar, shown in a fresh profile

    def unload(self) -> None:
        for a in self.actions:
            self.iface.removePluginRasterMenu(MENU, a)
        if self.actions:
            self.iface.removeToolBarIcon(self.actions[0])
        self.actions = []
        if self.dock is not None:
            self.dock.shutdown()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        backend.shutdown_shared()  # the warm worker goes with the plugin (and with QGIS)
        translation.remove_translator(self.translator)
        self.translator = None

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
        if self.dock is not None:
            self.dock.refresh_models()  # settings may have changed: no stale state in the panel
