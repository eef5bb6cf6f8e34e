"""Backend settings and "Check backend": where the backend is, and what it reports.

Users fix most set-up problems here: the dialog edits the three settings discovery uses and runs
the same discovery + handshake the algorithm runs, then shows interpreter, versions, devices
(CUDA name and memory) and installed models, or the sentence explaining what is wrong.
"""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication, QgsTask
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtGui import QFontDatabase
from qgis.PyQt.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from . import backend, settings


def format_report(facts: dict[str, Any]) -> str:
    """Plain-text report of ``backend.describe()`` for the dialog (and for bug reports)."""
    loc: backend.BackendLocation = facts["location"]
    hello, info = facts.get("hello", {}), facts.get("info", {})
    lines = [
        f"Backend Python: {info.get('executable') or loc.python}",
        f"Found via:      {loc.source}",
        f"SlimDiffSR:     {info.get('version') or hello.get('version', '?')} "
        f"(plugin {backend.PLUGIN_VERSION}, protocol {hello.get('protocol', '?')})",
        f"Python:         {info.get('python') or hello.get('python', '?')}",
        f"PyTorch:        {info.get('torch', '?')}",
        f"CUDA:           {'available' if info.get('cuda') else 'not available'}",
    ]
    devices = info.get("devices") or []
    if devices:
        lines.append("Devices:")
        for d in devices:
            mem = d.get("memory_gb")
            mem_text = f", {float(mem):.1f} GB" if mem not in (None, "") else ""
            lines.append(f"  - {d.get('name', '?')} ({d.get('kind', '?')}{mem_text})")
    models = facts.get("models") or []
    lines.append(f"Models ({len(models)}):")
    for m in models:
        mark = " [default]" if m.get("default") else ""
        lines.append(f"  - {m.get('name')}: x{m.get('scale')}{mark}")
    lines.append(f"Models folder:  {settings.models_dir()}")
    return "\n".join(lines)


class BackendDialog(QDialog):
    """Edit backend settings and check the backend; ``checked`` fires with (ok, report)."""

    checked = pyqtSignal(bool, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("SlimDiffSR backend")
        self.resize(640, 480)
        self.task: QgsTask | None = None
        lay = QVBoxLayout(self)
        lay.addWidget(
            QLabel(
                "SlimDiffSR runs in its own Python environment (with PyTorch). It is found in "
                f"this order: ${backend.ENV_PYTHON}, the Backend Python below, the .venv of the "
                "project folder below, QGIS's own Python if it has slimdiffsr and torch.",
                self,
            )
        )
        lay.itemAt(0).widget().setWordWrap(True)
        form = QFormLayout()
        self.python_widget = QgsFileWidget(self)
        self.python_widget.setStorageMode(QgsFileWidget.GetFile)
        self.python_widget.setFilePath(settings.backend_python())
        form.addRow("Backend Python", self.python_widget)
        self.project_widget = QgsFileWidget(self)
        self.project_widget.setStorageMode(QgsFileWidget.GetDirectory)
        self.project_widget.setFilePath(settings.project_path())
        form.addRow("Project folder", self.project_widget)
        self.models_widget = QgsFileWidget(self)
        self.models_widget.setStorageMode(QgsFileWidget.GetDirectory)
        self.models_widget.setFilePath(str(settings.models_dir()))
        form.addRow("Models folder", self.models_widget)
        lay.addLayout(form)

        self.check_button = QPushButton("Check backend", self)
        self.check_button.clicked.connect(self.check)
        lay.addWidget(self.check_button)
        self.report = QPlainTextEdit(self)
        self.report.setReadOnly(True)
        self.report.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
        lay.addWidget(self.report, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.Save | QDialogButtonBox.Close, self)
        buttons.accepted.connect(self.save_and_close)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)

    def save(self) -> None:
        settings.set_backend_python(self.python_widget.filePath().strip())
        settings.set_project_path(self.project_widget.filePath().strip())
        models = self.models_widget.filePath().strip()
        default = str(settings.default_models_dir())
        settings.set_models_dir(models if models and models != default else None)

    def save_and_close(self) -> None:
        self.save()
        self.accept()

    def check(self) -> None:
        """Save, then run discovery + handshake + info in a background task."""
        if self.task is not None:
            return
        self.save()
        self.report.setPlainText("Checking the backend...")
        self.check_button.setEnabled(False)
        log: list[str] = []

        def work(task: QgsTask) -> str:
            return format_report(backend.describe(log=log.append))

        def done(exception: BaseException | None, result: str | None = None) -> None:
            self.task = None
            self.check_button.setEnabled(True)
            if exception is not None:
                text = f"Problem: {exception}"
                if log:
                    text += "\n\nBackend log:\n" + "\n".join(log[-20:])
                self.report.setPlainText(text)
                self.checked.emit(False, text)
            else:
                self.report.setPlainText(result or "")
                self.checked.emit(True, result or "")

        self.task = QgsTask.fromFunction("SlimDiffSR: check backend", work, on_finished=done)
        QgsApplication.taskManager().addTask(self.task)
