"""Plugin settings, kept in QgsSettings under ``slimdiffsr/``.

One small typed accessor per key, so the rest of the plugin never spells a settings key and the
defaults live in one place. QSettings objects are cheap and re-entrant, so every call makes its
own: the accessors are safe from the Processing worker thread too.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsSettings

from . import protocol

PREFIX = "slimdiffsr"

# Run defaults shared by the algorithm and the dock: the worker protocol's own defaults.
DEFAULT_TILE = int(protocol.UPSCALE_PARAMS["tile"])
DEFAULT_OVERLAP = int(protocol.UPSCALE_PARAMS["overlap"])
DEVICES = list(protocol.DEVICES)
PRECISIONS = list(protocol.PRECISIONS)


def _get(key: str, default: str = "") -> str:
    value = QgsSettings().value(f"{PREFIX}/{key}", default)
    return str(value) if value is not None else default


def _set(key: str, value: str | None) -> None:
    s = QgsSettings()
    if value:
        s.setValue(f"{PREFIX}/{key}", str(value))
    else:
        s.remove(f"{PREFIX}/{key}")


def backend_python() -> str:
    """Explicit path to the backend's Python interpreter ('' when not set)."""
    return _get("backend_python").strip()


def set_backend_python(path: str | None) -> None:
    _set("backend_python", path)


def project_path() -> str:
    """A SlimDiffSR checkout whose ``.venv`` holds the backend ('' when not set)."""
    return _get("project_path").strip()


def set_project_path(path: str | None) -> None:
    _set("project_path", path)


def default_models_dir() -> Path:
    """Where imported models go unless the user chose a folder: beside the QGIS profile."""
    from qgis.core import QgsApplication

    return Path(QgsApplication.qgisSettingsDirPath()) / "slimdiffsr" / "models"


def models_dir() -> Path:
    """The user's models folder; the backend lists it next to its shipped models."""
    value = _get("models_dir").strip()
    return Path(value).expanduser() if value else default_models_dir()


def set_models_dir(path: str | None) -> None:
    _set("models_dir", path)


def last_model() -> str:
    """Model last used in the dock, so the picker reopens on it."""
    return _get("last_model", "default") or "default"


def set_last_model(name: str) -> None:
    _set("last_model", name)
