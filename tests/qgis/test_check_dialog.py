""" "Check backend" reports interpreter, versions and devices, or says what is wrong."""

from __future__ import annotations

import pytest
from qgis_helpers import wait_until

pytestmark = pytest.mark.qgis


def run_check(dialog) -> tuple[bool, str]:
    got: list[tuple[bool, str]] = []
    dialog.checked.connect(lambda ok, text: got.append((ok, text)))
    dialog.check()
    assert wait_until(lambda: bool(got), 180)
    return got[0]


def test_check_reports_the_backend(plugin, backend_python) -> None:
    from qgis_plugin.check_dialog import BackendDialog

    dialog = BackendDialog()
    ok, text = run_check(dialog)
    assert ok, text
    assert f"Backend Python: {backend_python}" in text or "Backend Python:" in text
    assert "environment variable SLIMDIFFSR_PYTHON" in text
    for field in ("SlimDiffSR:", "PyTorch:", "CUDA:", "Devices:", "Models ("):
        assert field in text
    assert "bicubic" in text
    assert dialog.report.toPlainText() == text


def test_check_says_what_is_wrong(plugin, tmp_path, monkeypatch) -> None:
    from qgis_plugin.check_dialog import BackendDialog

    monkeypatch.setenv("SLIMDIFFSR_PYTHON", str(tmp_path / "missing" / "python"))
    ok, text = run_check(BackendDialog())
    assert not ok
    assert text.startswith("Problem:") and "does not exist" in text


def test_settings_round_trip(plugin, tmp_path, monkeypatch) -> None:
    """The dialog's fields are what discovery reads (after the environment variable)."""
    from qgis_plugin import backend, settings
    from qgis_plugin.check_dialog import BackendDialog

    monkeypatch.delenv("SLIMDIFFSR_PYTHON", raising=False)
    project = tmp_path / "checkout"
    (project / ".venv" / "bin").mkdir(parents=True)
    py = project / ".venv" / "bin" / "python"
    py.write_text("#!/bin/sh\n")
    py.chmod(0o755)
    dialog = BackendDialog()
    dialog.project_widget.setFilePath(str(project))
    dialog.save()
    try:
        loc = backend.find_backend()
        assert loc.python == str(py) and "project folder" in loc.source
        dialog.python_widget.setFilePath(str(py))
        dialog.save()
        assert backend.find_backend().source == "the plugin setting 'Backend Python'"
    finally:
        settings.set_backend_python(None)
        settings.set_project_path(None)


def test_discovery_without_configuration(plugin, backend_python, monkeypatch) -> None:
    """Nothing configured: QGIS's own Python is used only if it can import slimdiffsr and torch."""
    import sys

    from qgis_plugin import backend

    monkeypatch.delenv("SLIMDIFFSR_PYTHON", raising=False)
    assert backend._imports_backend(backend_python)
    assert not backend._imports_backend(sys.executable)  # the QGIS test env has no torch
    with pytest.raises(backend.BackendError, match="No SlimDiffSR backend is configured"):
        backend.find_backend(python_setting="", project_setting="")


def test_project_folder_without_venv(plugin, tmp_path, monkeypatch) -> None:
    from qgis_plugin import backend

    monkeypatch.delenv("SLIMDIFFSR_PYTHON", raising=False)
    with pytest.raises(backend.BackendError, match="has no backend environment"):
        backend.find_backend(python_setting="", project_setting=str(tmp_path))
