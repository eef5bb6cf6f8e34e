"""SlimDiffSR QGIS plugin: super-resolve raster layers through the SlimDiffSR backend.

Light on purpose: it imports QGIS and the stdlib-only worker ``protocol`` only; the torch
backend runs in its own Python, found and driven by ``backend.py``.
"""

from __future__ import annotations

from typing import Any


def classFactory(iface: Any) -> Any:  # noqa: N802 (the name QGIS looks for)
    """QGIS entry point."""
    from .plugin import SlimDiffSRPlugin

    return SlimDiffSRPlugin(iface)
