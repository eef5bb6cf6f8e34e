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

from . import backend, catalog, settings
from .translation import tr


def format_report(facts: dict[str, Any]) -> str:
    """Plain-text report of ``backend.describe()`` for the dialog (and for bug reports)."""
    loc: backend.BackendLocation = facts["location"]
    hello, info = facts.get("hello", {}), facts.get("info", {})
    cuda = tr("available") if info.get("cuda") else tr("not available")
    lines = [
        tr("Backend Python: {}").format(info.get("executable") or loc.python),
        tr("Found via:      {}").format(loc.source),
        tr("SlimDiffSR:     {} (plugin {}, protocol {})").format(
            info.get("version") or hello.get("version", "?"),
            backend.PLUGIN_VERSION,
            hello.get("protocol", "?"),
        ),
        tr("Python:         {}").format(info.get("python") or hello.get("python", "?")),
        tr("PyTorch:        {}").format(info.get("torch") or tr("not installed")),
    ]
    runtimes = info.get("runtimes")
    if runtimes:
        names = runtimes if isinstance(runtimes, list) else list(runtimes)
        lines.append(tr("Runtimes:       {}").format(", ".join(map(str, names))))
    lines.append(tr("CUDA:           {}").format(cuda))
    devices = info.get("devices") or []
    if devices:
        lines.append(tr("Devices:"))
        for d in devices:
            mem = d.get("memory_gb")
            mem_text = f", {float(mem):.1f} GB" if mem not in (None, "") else ""
            lines.append(f"  - {d.get('name', '?')} ({d.get('kind', '?')}{mem_text})")
    models = facts.get("models") or []
    lines.append(tr("Models ({}):").format(len(models)))
    for m in models:
        mark = tr(" [default]") if m.get("default") else ""
        lines.append(f"  - {m.get('name')}: x{m.get('scale')}{mark}")
    lines.append(tr("Models folder:  {}").format(settings.models_dir()))
    lines.append(tr("Output folder:  {}").format(settings.output_dir()))
    return "\n".join(lines)


class BackendDialog(QDialog):
    """Edit backend settings and check the backend; ``checked`` fires with (ok, report)."""

    checked = pyqtSignal(bool, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(tr("SlimDiffSR backend"))
        self.resize(640, 480)
        self.task: QgsTask | None = None
        lay = QVBoxLayout(self)
        lay.addWidget(
            QLabel(
                tr(
                    "SlimDiffSR runs in its own Python environment (PyTorch or ONNX Runtime). It "
                    "is found in this order: ${}, the Backend Python below, the .venv of the "
                    "project folder below, QGIS's own Python if it has slimdiffsr."
                ).format(backend.ENV_PYTHON),
                self,
            )
        )
        lay.itemAt(0).widget().setWordWrap(True)
        form = QFormLayout()
        self.python_widget = QgsFileWidget(self)
        self.python_widget.setStorageMode(QgsFileWidget.GetFile)
        self.python_widget.setFilePath(settings.backend_python())
        form.addRow(tr("Backend Python"), self.python_widget)
        self.project_widget = QgsFileWidget(self)
        self.project_widget.setStorageMode(QgsFileWidget.GetDirectory)
        self.project_widget.setFilePath(settings.project_path())
        form.addRow(tr("Project folder"), self.project_widget)
        self.models_widget = QgsFileWidget(self)
        self.models_widget.setStorageMode(QgsFileWidget.GetDirectory)
        self.models_widget.setFilePath(str(settings.models_dir()))
        form.addRow(tr("Models folder"), self.models_widget)
        lay.addLayout(form)

        self.check_button = QPushButton(tr("Check backend"), self)
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
        self.report.setPlainText(tr("Checking the backend..."))
        self.check_button.setEnabled(False)
        log: list[str] = []

        def work(task: QgsTask) -> dict[str, Any]:
            return backend.describe(log=log.append)

        def done(exception: BaseException | None, facts: dict[str, Any] | None = None) -> None:
            self.task = None
            self.check_button.setEnabled(True)
            if exception is not None:
                text = tr("Problem: {}").format(exception)
                if log:
                    text += "\n\n" + tr("Backend log:") + "\n" + "\n".join(log[-20:])
                self.report.setPlainText(text)
                self.checked.emit(False, text)
            else:
                catalog.remember(facts or {})
                result = format_report(facts or {})
                self.report.setPlainText(result)
                self.checked.emit(True, result)

        self.task = QgsTask.fromFunction(tr("SlimDiffSR: check backend"), work, on_finished=done)
        QgsApplication.taskManager().addTask(self.task)
