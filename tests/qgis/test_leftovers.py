"""The plugin's clean-up after a failed run removes only a dead run's files, never a live one's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.qgis

HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
os.write(fd, b'{"pid": %d, "command": "test"}' % os.getpid())
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


def _leftovers(out: Path) -> list[Path]:
    from qgis_plugin import protocol

    partial = out.parent / f"{protocol.temp_prefix(out.name)}ab12cd34.partial.tif"
    journal = out.parent / protocol.journal_name(out.name)
    partial.write_bytes(b"partial")
    journal.write_text("{}\n")
    return [partial, journal]


def test_live_runs_files_are_kept(tmp_path: Path) -> None:
    from qgis_plugin import backend, protocol

    out = tmp_path / "scene_x4.tif"
    files = _leftovers(out)
    lock = tmp_path / protocol.lock_name(out.name)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        backend.remove_leftovers(out, keep_output=False)
        assert all(p.exists() for p in files), "a live run's temporary files were deleted"
        assert lock.exists()
    finally:
        holder.kill()
        holder.wait()


def test_dead_runs_files_are_removed(tmp_path: Path) -> None:
    from qgis_plugin import backend, protocol

    out = tmp_path / "scene_x4.tif"
    files = _leftovers(out)
    other = tmp_path / f"{protocol.temp_prefix(out.name + '.x.tif')}ab12cd34.partial.tif"
    other.write_bytes(b"another output's partial")
    (tmp_path / protocol.lock_name(out.name)).write_text('{"pid": 1}')  # lock file, nobody holds it
    backend.remove_leftovers(out, keep_output=False)
    assert not any(p.exists() for p in files)
    assert other.exists(), "another output's temporary file was deleted"
    assert os.listdir(tmp_path) == [other.name]
