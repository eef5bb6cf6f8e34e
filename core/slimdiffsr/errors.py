"""One root error for everything SlimDiffSR raises on purpose, with a ``kind`` per failure class.

Callers catch :class:`SlimDiffSRError` to tell "the user's input or setup is wrong" (print one line,
exit 2) from a bug (traceback). Each subclass also inherits the builtin it refines, as rasterio's
errors do (``RasterioIOError(RasterioError, OSError)``), so ``except OSError`` keeps working.
``kind`` is the worker protocol's error kind (``protocol.ERROR_KINDS``).

Stdlib only: the worker imports this before torch.
"""

from __future__ import annotations


class SlimDiffSRError(Exception):
    """Root of all deliberate SlimDiffSR errors."""

    kind = "internal"


class InputError(SlimDiffSRError, ValueError):
    """The input raster or a setting cannot be used (unreadable file, missing band, bad dtype)."""

    kind = "input"


class OutputExistsError(InputError, FileExistsError):
    """The output exists and ``overwrite`` was not given, or it would replace the input."""


class ModelError(SlimDiffSRError, ValueError):
    """The model cannot be used for this job (missing file, scale or band mismatch)."""

    kind = "model"


class DeviceError(SlimDiffSRError, RuntimeError):
    """The requested device or precision is not available."""

    kind = "device"


class OutOfMemoryError(SlimDiffSRError, MemoryError):
    """The device ran out of memory for one batch of tiles."""

    kind = "memory"


class DiskSpaceError(SlimDiffSRError, OSError):
    """Not enough free space (or no write access) for the output."""

    kind = "disk"


class CancelledError(SlimDiffSRError):
    """The caller's ``cancel()`` returned True; the run stopped at a tile boundary."""

    kind = "cancelled"


class GeographicCRSWarning(UserWarning):
    """The raster is in degrees: its pixels are not square on the ground."""


__all__ = [
    "CancelledError",
    "DeviceError",
    "DiskSpaceError",
    "GeographicCRSWarning",
    "InputError",
    "ModelError",
    "OutOfMemoryError",
    "OutputExistsError",
    "SlimDiffSRError",
]
