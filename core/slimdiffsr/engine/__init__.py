"""The georeferenced tiled inference engine: ``upscale()`` and ``Upscaler`` (see ``run``).

Submodules: ``plan`` (bands, value mapping, output layout, decided once), ``preflight`` (the plan
plus one sentence, warnings, refusals), ``loop`` (the tile loop), ``finish`` (final files, summary,
QA report), ``writer`` (model units -> raster values), ``products`` (Sentinel-2 / Landsat products), ``resample`` (numpy bicubic), ``tiling``
(pure window algebra), ``raster_io`` (profiles, windowed reads, atomic files), ``blend`` (the row
strip), ``qa`` (consistency layer, seam metric), ``manifest`` (resume).
Importing this package is cheap; torch loads with ``run``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["UpscaleResult", "Upscaler", "upscale"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from slimdiffsr.engine import run

        return getattr(run, name)
    raise AttributeError(f"module 'slimdiffsr.engine' has no attribute {name!r}")
