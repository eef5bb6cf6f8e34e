"""Whole archives on a Dask cluster: one task per raster (or per row band of a big raster).

Dask distributed schedules, retries and moves the work; the engine's resume manifest is the unit
of retry. ``upscale_many`` is the Python entry point; ``slimdiffsr upscale ... --cluster`` the CLI.
Nothing here imports dask until it is used, so ``import slimdiffsr`` stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["upscale_many"]


def upscale_many(*args: Any, **kwargs: Any) -> Any:
    """See :func:`slimdiffsr.cluster.submit.upscale_many`."""
    from slimdiffsr.cluster.submit import upscale_many as _run

    return _run(*args, **kwargs)


upscale_many.__doc__ = (
    "Super-resolve many rasters on a Dask cluster; see slimdiffsr.cluster.submit.upscale_many."
)
