"""One root error for everything SlimDiffSR raises on purpose, with a ``kind`` per failure class.

Callers catch :class:`SlimDiffSRError` to tell "the user's input or setup is wrong" (print one line,
exit 2) from a bug (traceback). Each subclass also inherits the builtin it refines, as rasterio's
errors do (``RasterioIOError(RasterioError, OSError)``), so ``except OSError`` keeps working.
``kind`` is the worker protocol's error kind (``protocol.ERROR_KINDS``).

Stdlib only: the worker imports this before torch.
"""

from __future__ import annotations

import errno
import re


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


class OutputBusyError(InputError):
    """Another live run holds the output's lock; this run is refused before it writes anything."""


class GeographicCRSWarning(UserWarning):
    """The raster is in degrees: its pixels are not square on the ground."""


# -- classifying failures that are not ours (OS, allocator, GDAL) --------------------------------
_MEMORY_TEXT = (
    "out of memory",
    "can't allocate memory",
    "cannot allocate memory",
    "not enough memory",
    "bad_alloc",
    "failed to allocate",
)
_DISK_ERRNOS = {errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG}
if hasattr(errno, "EDQUOT"):
    _DISK_ERRNOS.add(errno.EDQUOT)


def error_kind(e: BaseException) -> str | None:
    """The protocol error kind of a failure the user can act on, or None for a bug.

    Our own errors carry their ``kind``; allocator failures (``MemoryError``, torch's
    "DefaultCPUAllocator: can't allocate memory") are ``memory``; a full, read-only or forbidden
    disk is ``disk``; a missing file is ``input``.
    """
    if isinstance(e, SlimDiffSRError):
        return e.kind
    if isinstance(e, MemoryError):
        return "memory"
    text = str(e).lower()
    if isinstance(e, RuntimeError) and any(t in text for t in _MEMORY_TEXT):
        return "memory"
    if isinstance(e, OSError):
        if e.errno in _DISK_ERRNOS:
            return "disk"
        if e.errno in (errno.ENOENT, errno.EISDIR, errno.ENOTDIR):
            return "input"
    return None


def one_line(e: BaseException) -> str:
    """An exception as one line: ``file: reason`` for OS errors, the first line otherwise."""
    if isinstance(e, OSError) and not isinstance(e, SlimDiffSRError) and e.strerror:
        where = e.filename if e.filename is not None else ""
        return f"{where}: {e.strerror}" if where else e.strerror
    text = str(e).strip() or type(e).__name__
    if error_kind(e) == "memory" and not isinstance(e, SlimDiffSRError):
        m = re.search(r"allocate (\d+) bytes", text)
        need = f" for {int(m.group(1)) / 1e6:.0f} MB" if m else ""
        text = f"out of memory{need}; lower --tile, --batch-size or --memory-mb"
    return " ".join(text.split())[:1000]


__all__ = [
    "CancelledError",
    "DeviceError",
    "DiskSpaceError",
    "GeographicCRSWarning",
    "InputError",
    "ModelError",
    "OutOfMemoryError",
    "OutputBusyError",
    "OutputExistsError",
    "SlimDiffSRError",
    "error_kind",
    "one_line",
]
