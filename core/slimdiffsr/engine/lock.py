"""One writer per output: an advisory lock beside the target, unique temporary names, safe replace.

A run holds ``.<name>.lock`` (``protocol.lock_name``) for its whole life; the lock is a kernel
``flock``, so it vanishes with the process even after SIGKILL, and a second run on the same output
is refused at once with the first one's pid, host, start time and command. Temporary files are made
with ``tempfile`` in the target's folder (so two runs never share a name and the final rename stays
atomic). ``overwrite`` replaces only a regular file that GDAL reads as a raster.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from slimdiffsr import protocol
from slimdiffsr.errors import DiskSpaceError, OutputBusyError, OutputExistsError


def describe_holder(info: dict[str, Any] | None) -> str:
    if not info or info.get("pid") is None:
        return "another SlimDiffSR run"
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
    cmd = str(info.get("command") or "")[:120]
    return f"SlimDiffSR run pid {info['pid']} on {info.get('host', '?')} (started {when}: {cmd})"


class OutputLock:
    """Exclusive advisory lock on ``output`` for one run; use as a context manager."""

    def __init__(self, output: Path, command: str | None = None) -> None:
        self.output = Path(output)
        self.path = self.output.with_name(protocol.lock_name(self.output.name))
        self.command = command or " ".join(
            os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv)
        )
        self.fd: int | None = None

    def acquire(self) -> OutputLock:
        """Take the lock or raise :class:`OutputBusyError` naming the run that holds it."""
        for _ in range(10):  # the holder may unlink the file between our open and lock
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:  # read-only file system, no permission, missing folder
                raise DiskSpaceError(
                    f"cannot write in {self.output.parent}: {e.strerror or e}"
                ) from e
            if not protocol.try_lock(fd):
                info = protocol.output_in_use(str(self.output))
                os.close(fd)
                raise OutputBusyError(
                    f"{self.output} is being written by {describe_holder(info)}; "
                    "wait for it to finish or choose another output"
                )
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            protocol.unlock(fd)
            os.close(fd)
        else:  # pragma: no cover - only under a storm of competing runs
            raise OutputBusyError(f"{self.output} is contended by other runs; try again")
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "command": self.command,
        }
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode("utf-8"))
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink()  # while still holding it, so no one locks a file we then remove
        except OSError:
            pass
        protocol.unlock(self.fd)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def unique_temp(output: Path, suffix: str) -> Path:
    """A new, empty, uniquely named hidden file beside ``output`` (``.<name>.<random><suffix>``).

    ``mkstemp`` creates it owner-only (0600); it becomes the user's output by a rename, so it gets
    the mode any new file of theirs would get (0666 less the umask), as GDAL would give it."""
    fd, name = tempfile.mkstemp(
        dir=output.parent, prefix=protocol.temp_prefix(output.name), suffix=suffix
    )
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    return Path(name)


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux), else set and
    restored at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_replaceable(target: Path, output_dir: Path, raster: bool = True) -> None:
    """Refuse to ``overwrite`` anything but a raster file of ours to replace.

    Not a directory, device, FIFO or socket; not a symlink (the rename would replace the link,
    and a link pointing outside the output folder must never be followed); not a file GDAL
    cannot read as a raster (a document, a script, a system file).
    """
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        real = Path(os.path.realpath(target))
        if real.parent != Path(os.path.realpath(output_dir)):
            raise OutputExistsError(
                f"{target} is a symbolic link to {real}, outside the output folder; "
                "refusing to replace it"
            )
        st = os.stat(target)
    if not stat.S_ISREG(st.st_mode):
        raise OutputExistsError(
            f"{target} exists and is not a regular file; refusing to replace it"
        )
    if not raster:
        return
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(target):
            pass
    except (RasterioIOError, OSError):
        raise OutputExistsError(
            f"{target} exists and is not a raster; overwrite replaces only rasters"
        ) from None
