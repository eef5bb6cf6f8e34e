"""The installed models as the plugin knows them: the backend's list, cached between sessions.

The Processing algorithm's MODEL choices must exist when QGIS starts, before any backend is
running, so the backend's answer to ``models`` is kept in the settings. It is asked once when
nothing is cached, again whenever the dock or the backend dialog talks to the backend, and the
provider is refreshed when the list changed, so a new model appears without a code change.
"""

from __future__ import annotations

from typing import Any

from . import settings

# Used only when no backend has ever answered: the models the backend package ships.
SHIPPED_MODELS: list[dict[str, Any]] = [
    {"name": "slimdiffsr-nano-x4", "scale": 4, "bands": ["red", "green", "blue"], "default": True},
    {"name": "bicubic-x4", "scale": 4, "bands": []},
    {"name": "bicubic-x8", "scale": 8, "bands": []},
]


def models(ask_backend: bool = True) -> list[dict[str, Any]]:
    """Cached models; when none are cached, ask the backend now (once), else the shipped list."""
    cached = settings.cached_models()
    if cached or not ask_backend:
        return cached or [dict(m) for m in SHIPPED_MODELS]
    try:
        from . import backend

        listed = backend.list_models(timeout=60)
    except Exception:  # no backend yet: the run will say how to set one up
        return [dict(m) for m in SHIPPED_MODELS]
    if listed:
        settings.set_cached_models(listed)
        return settings.cached_models()
    return [dict(m) for m in SHIPPED_MODELS]


def names(entries: list[dict[str, Any]] | None = None) -> list[str]:
    return [str(m["name"]) for m in (entries if entries is not None else models())]


def default_name(entries: list[dict[str, Any]] | None = None) -> str:
    entries = entries if entries is not None else models()
    for m in entries:
        if m.get("default"):
            return str(m["name"])
    return str(entries[0]["name"]) if entries else "slimdiffsr-nano-x4"


def find(name: str, entries: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    for m in entries if entries is not None else models(ask_backend=False):
        if m.get("name") == name:
            return m
    return None


def update(listed: list[dict[str, Any]]) -> bool:
    """Store the backend's fresh list; refresh the Processing provider if it changed."""
    if not listed or not settings.set_cached_models(listed):
        return False
    from qgis.core import QgsApplication

    provider = QgsApplication.processingRegistry().providerById("slimdiffsr")
    if provider is not None:
        provider.refreshAlgorithms()
    return True


def remember(facts: dict[str, Any]) -> bool:
    """Keep what ``backend.describe`` found (GPU or not, models); True if the models changed."""
    devices = (facts.get("info") or {}).get("devices") or []
    settings.set_backend_has_gpu(any(d.get("kind") in ("cuda", "mps") for d in devices))
    return update(list(facts.get("models") or []))
