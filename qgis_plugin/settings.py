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


# -- where results go ------------------------------------------------------------------------


def default_output_dir() -> Path:
    """Beside the project file when it is saved, else ``SlimDiffSR`` in the user's documents."""
    from qgis.core import QgsProject
    from qgis.PyQt.QtCore import QStandardPaths

    project_file = QgsProject.instance().absoluteFilePath()
    if project_file:
        return Path(project_file).parent / "SlimDiffSR"
    docs = QStandardPaths.writableLocation(QStandardPaths.DocumentsLocation) or str(Path.home())
    return Path(docs) / "SlimDiffSR"


def output_dir() -> Path:
    """The folder results are written to unless a run names a file (survives a restart)."""
    value = _get("output_dir").strip()
    return Path(value).expanduser() if value else default_output_dir()


def set_output_dir(path: str | None) -> None:
    _set("output_dir", path)


def temporary_outputs() -> bool:
    """True when the user prefers temporary files (gone when QGIS exits) to the output folder."""
    return _get("temporary_outputs", "false").lower() in ("true", "1", "yes")


def set_temporary_outputs(value: bool) -> None:
    _set("temporary_outputs", "true" if value else None)


def unique_output(stem: str, folder: Path | None = None) -> Path:
    """A GeoTIFF path in the output folder that does not exist yet: stem.tif, stem_2.tif, ..."""
    folder = folder or output_dir()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip("._") or "result"
    cand = folder / f"{safe}.tif"
    n = 2
    while cand.exists() or cand.with_name(f".{cand.name}.partial.tif").exists():
        cand = folder / f"{safe}_{n}.tif"
        n += 1
    return cand


# -- what the backend told us last (so QGIS starts without asking it) ----------------------------


def cached_models() -> list[dict]:
    """The backend's model list from the last time it was asked ([] when never)."""
    import json

    try:
        value = json.loads(_get("models_cache", "[]") or "[]")
    except ValueError:
        return []
    return (
        [m for m in value if isinstance(m, dict) and m.get("name")]
        if isinstance(value, list)
        else []
    )


def set_cached_models(models: list[dict]) -> bool:
    """Store the model list; True when it differs from what was stored (names or cards)."""
    import json

    keep = ("name", "scale", "bands", "default", "description", "license", "value_contract")
    slim = [{k: m.get(k) for k in keep if k in m} for m in models if m.get("name")]
    text = json.dumps(slim, sort_keys=True)
    if text == _get("models_cache", ""):
        return False
    _set("models_cache", text)
    return True


def tiles_per_second() -> float:
    """Throughput of the last finished run (for the dock's estimate); 0 when unknown."""
    try:
        return max(0.0, float(_get("tiles_per_second", "0") or 0))
    except ValueError:
        return 0.0


def set_tiles_per_second(value: float) -> None:
    _set("tiles_per_second", f"{value:.6g}" if value > 0 else None)


def backend_has_gpu() -> bool:
    """Whether the backend reported a CUDA or MPS device the last time it was checked."""
    return _get("backend_gpu", "false") == "true"


def set_backend_has_gpu(value: bool) -> None:
    _set("backend_gpu", "true" if value else None)
