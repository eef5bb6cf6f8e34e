"""Resume manifest: which output rows are on disk, and which tiles will never run again.

The key is a hash of everything that changes the pixels (input file identity, model hash, bands,
tiling, value contract, dtype, ...). A manifest with another key is ignored, so a resumed run can
never mix outputs of different settings. Per column chunk it stores how many HR rows are final in
the partial file; a tile is finished (kept in ``tiles`` with its consistency) when all of its rows
are. Tiles straddling the frontier ran, but their contribution to unwritten rows was in memory
only, so they run again.

The manifest is written after the partial GeoTIFF is closed (so what it claims is on disk), and
deleted when the output is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = 1


def settings_key(settings: dict[str, Any]) -> str:
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def input_identity(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass
class Manifest:
    path: Path
    key: str
    settings: dict[str, Any] = field(default_factory=dict)
    rows_done: dict[int, int] = field(default_factory=dict)  # chunk index -> HR rows written
    tiles: dict[str, list[float] | None] = field(default_factory=dict)  # finished tile -> stats

    @classmethod
    def load(cls, path: Path, key: str) -> Manifest | None:
        """The manifest at ``path`` if it exists, parses and matches ``key``; else None."""
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(d, dict) or d.get("format") != FORMAT or d.get("key") != key:
            return None
        try:
            rows = {int(k): int(v) for k, v in d.get("rows_done", {}).items()}
        except (TypeError, ValueError):
            return None
        return cls(path, key, d.get("settings", {}), rows, dict(d.get("tiles", {})))

    def save(self) -> None:
        d = {
            "format": FORMAT,
            "key": self.key,
            "settings": self.settings,
            "rows_done": {str(k): v for k, v in sorted(self.rows_done.items())},
            "tiles": self.tiles,
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(d, default=str), encoding="utf-8")
        os.replace(tmp, self.path)

    def rows(self, chunk: int) -> int:
        return self.rows_done.get(chunk, 0)

    @staticmethod
    def tile_key(chunk: int, window_key: str) -> str:
        return f"{chunk}:{window_key}"
