"""Model files seen from the plugin: read a card and import a file, with the stdlib only.

A SlimDiffSR model is one ``.safetensors`` file whose header metadata holds a JSON model card
(key ``slimdiffsr.card``, see core/slimdiffsr/models/card.py). The safetensors header is plain
JSON behind an 8-byte length, so the dock can show a card and refuse a foreign file at import
time without torch; the backend remains the judge when a model is actually loaded.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

from .translation import tr

CARD_KEY = "slimdiffsr.card"
MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit


class ModelFileError(ValueError):
    """The file is not a SlimDiffSR model; the message says why in words."""


def read_card(path: str | Path) -> dict[str, Any]:
    """The model card of a ``.safetensors`` model file, as a dict."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(tr("The model file does not exist: {}").format(p))
    try:
        with p.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ModelFileError(tr("{} is not a model file: it is too short.").format(p.name))
            (n,) = struct.unpack("<Q", head)
            if n <= 0 or n > MAX_HEADER or n > p.stat().st_size - 8:
                raise ModelFileError(tr("{} is not a safetensors model file.").format(p.name))
            header = json.loads(f.read(n).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(
            tr("{} is not a safetensors model file ({}).").format(p.name, e)
        ) from e
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or CARD_KEY not in meta:
        raise ModelFileError(
            tr(
                "{} is a safetensors file without a SlimDiffSR model card; convert published "
                "checkpoints with `slimdiffsr convert` first."
            ).format(p.name)
        )
    try:
        card = json.loads(meta[CARD_KEY])
    except json.JSONDecodeError as e:
        raise ModelFileError(
            tr("The model card in {} is not valid JSON ({}).").format(p.name, e)
        ) from e
    if not isinstance(card, dict) or not {"name", "scale"} <= set(card):
        raise ModelFileError(tr("The model card in {} lacks its name or scale.").format(p.name))
    return card


def import_model(path: str | Path, models_dir: str | Path) -> Path:
    """Copy a model file into the models folder after checking its card; returns the copy."""
    card = read_card(path)
    if not str(card.get("name", "")).strip():
        raise ModelFileError(tr("The model card in {} has an empty name.").format(Path(path).name))
    dest_dir = Path(models_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / Path(path).name
    if dest.resolve() != Path(path).resolve():
        tmp = dest.with_name(f".{dest.name}.part")
        shutil.copyfile(path, tmp)
        tmp.replace(dest)
    return dest


def describe_card(entry: dict[str, Any]) -> str:
    """One short HTML paragraph for the dock: scale, bands, value contract, license."""
    from html import escape

    bands = entry.get("bands") or []
    vc = entry.get("value_contract") or {}
    if vc:
        values = f"{vc.get('kind', 'fixed')} {_num(vc.get('low'))}..{_num(vc.get('high'))}"
    else:
        values = tr("the raster's own range")
    parts = [
        f"<b>{escape(str(entry.get('name', '?')))}</b>",
        f"x{entry.get('scale', '?')}",
        tr("bands: {}").format(escape(", ".join(map(str, bands))) if bands else tr("any")),
        tr("values: {}").format(escape(values)),
        tr("license: {}").format(escape(str(entry.get("license") or tr("unknown")))),
    ]
    text = " &middot; ".join(parts)
    if entry.get("description"):
        text += "<br><i>" + escape(str(entry["description"])) + "</i>"
    return text


def _num(v: Any) -> str:
    """0.0 -> '0', [0.0, 10.0] -> '0/10': contract limits as people write them."""
    if isinstance(v, list | tuple):
        return "/".join(_num(x) for x in v) if v else "?"
    if isinstance(v, int | float):
        return f"{v:g}"
    return "?" if v is None else str(v)
