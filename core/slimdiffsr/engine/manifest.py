"""Resume journal: which output rows are on disk, and which tiles will never run again.

An append-only JSON-lines file beside the output (``protocol.journal_name``), written so that a
run killed at any instant (SIGKILL, power loss) can be resumed: the first line is a header (the
settings key, the settings and the names of the partial files), then one line per batch of
finished output rows, appended and fsync'd only after those rows are closed and fsync'd in the
partial GeoTIFF. A torn last line (the crash hit the append) is ignored; what the journal claims
is therefore always on disk.

The key is a hash of everything that changes the pixels (input file identity, model hash, bands,
tiling, value contract, dtype, ...), serialised canonically so the same command gives the same key
in every run. A journal with another key is ignored, so a resumed run never mixes outputs of
different settings. Per column chunk it records how many HR rows are final; a tile is finished
(kept in ``tiles`` with its consistency sums) when all of its rows are. Tiles straddling the
frontier ran, but their contribution to unwritten rows was in memory only, so they run again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = 2


def settings_key(settings: dict[str, Any]) -> str:
    """A stable hash of the settings (sorted keys, tuples as lists, no whitespace)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def input_identity(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def fsync_path(path: Path) -> None:
    """Flush a closed file's data (or a folder's entries) to the disk; a no-op where the OS cannot."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass
class Manifest:
    """The journal of one output. Create with :meth:`create`, reopen with :meth:`load`."""

    path: Path
    key: str
    settings: dict[str, Any] = field(default_factory=dict)
    rows_done: dict[int, int] = field(default_factory=dict)  # chunk index -> HR rows written
    tiles: dict[str, list[float] | None] = field(default_factory=dict)  # finished tile -> stats
    files: dict[str, str | None] = field(default_factory=dict)  # role -> partial file name

    @classmethod
    def create(
        cls, path: Path, key: str, settings: dict[str, Any], files: dict[str, str | None]
    ) -> Manifest:
        """Start a new journal (replacing any old one): the header, fsync'd."""
        m = cls(path, key, settings, {}, {}, dict(files))
        header = {"format": FORMAT, "key": key, "settings": settings, "files": m.files}
        tmp = path.with_name(path.name + ".new")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(header, sort_keys=True, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return m

    @classmethod
    def read(cls, path: Path) -> Manifest | None:
        """The journal at ``path`` whatever its key (None if missing or unreadable)."""
        try:
            text = path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return None
        lines = text.split("\n")
        try:
            head = json.loads(lines[0])
        except ValueError:
            return None
        if not isinstance(head, dict) or head.get("format") != FORMAT:
            return None
        files = head.get("files") if isinstance(head.get("files"), dict) else {}
        m = cls(path, str(head.get("key")), head.get("settings") or {}, {}, {}, files)
        for line in lines[1:]:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                chunk, rows = int(rec["chunk"]), int(rec["rows"])
                tiles = dict(rec.get("tiles") or {})
            except (ValueError, KeyError, TypeError):
                break  # a torn append: the crash hit it; everything before is good
            m.rows_done[chunk] = max(rows, m.rows_done.get(chunk, 0))
            m.tiles.update(tiles)
        return m

    @classmethod
    def load(cls, path: Path, key: str) -> Manifest | None:
        """The journal at ``path`` if it exists, parses and matches ``key``; else None."""
        m = cls.read(path)
        return m if m is not None and m.key == key else None

    def record(self, chunk: int, rows: int, tiles: dict[str, list[float] | None]) -> None:
        """Append one batch of finished rows (call after they are on disk), fsync'd."""
        self.rows_done[chunk] = rows
        self.tiles.update(tiles)
        line = json.dumps({"chunk": chunk, "rows": rows, "tiles": tiles}, default=str) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def save(self) -> None:
        """Nothing to do: every record is on disk when :meth:`record` returns."""

    def rows(self, chunk: int) -> int:
        return self.rows_done.get(chunk, 0)

    @staticmethod
    def tile_key(chunk: int, window_key: str) -> str:
        return f"{chunk}:{window_key}"
