"""Model cards and the product's model file format.

A SlimDiffSR model file is a single ``.safetensors`` file: the state dict as tensors, and a JSON
model card in the file's metadata (key ``slimdiffsr.card``). The card holds everything needed to
rebuild the network (``architecture`` and ``config``) and to use it correctly on rasters (scale,
band meaning, value contract), plus provenance (training data, licenses, metrics). Nothing is ever
unpickled.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slimdiffsr.errors import ModelError

CARD_KEY = "slimdiffsr.card"
FORMAT_KEY = "slimdiffsr.format"
FORMAT_VERSION = "1"


class ModelFileError(ModelError):
    """A file is missing, is not a SlimDiffSR model, or does not match its card."""


@dataclass
class ModelCard:
    """What a user and the engine need to know about a model."""

    name: str
    architecture: str  # "student" | "bicubic" | ...
    scale: int
    config: dict[str, Any] = field(default_factory=dict)
    bands: list[str] = field(default_factory=lambda: ["red", "green", "blue"])
    value_contract: dict[str, Any] = field(
        default_factory=lambda: {"kind": "fixed", "low": [0.0], "high": [255.0]}
    )
    description: str = ""
    license: str = "MIT"
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    halo: int = 32  # LR pixels of context the engine should give every tile
    version: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ModelFileError(f"model card is not valid JSON: {e}") from e
        known = set(cls.__dataclass_fields__)
        missing = {"name", "architecture", "scale"} - set(d)
        if missing:
            raise ModelFileError(f"model card lacks required fields: {sorted(missing)}")
        return cls(**{k: v for k, v in d.items() if k in known})

    def summary(self) -> str:
        vc = self.value_contract
        return (
            f"{self.name}: x{self.scale}, bands {','.join(self.bands)}, "
            f"values {vc.get('kind')} [{vc.get('low')}, {vc.get('high')}], license {self.license}"
        )


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_card(path: str | Path) -> ModelCard:
    """Read only the card of a model file (cheap: no tensors are loaded)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises several types for foreign files
        raise ModelFileError(f"{path} is not a safetensors model file ({e})") from e
    if CARD_KEY not in meta:
        raise ModelFileError(
            f"{path} is a safetensors file without a SlimDiffSR model card; "
            "import published checkpoints with `slimdiffsr convert`"
        )
    return ModelCard.from_json(meta[CARD_KEY])


def save_model_file(state_dict: dict[str, Any], card: ModelCard, path: str | Path) -> Path:
    """Write tensors + card atomically (temporary file beside the target, then rename)."""
    import os

    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not card.version:
        from slimdiffsr import __version__

        card.version = __version__
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={CARD_KEY: card.to_json(), FORMAT_KEY: FORMAT_VERSION})
    os.replace(tmp, path)
    return path


def load_model_file(path: str | Path) -> tuple[dict[str, Any], ModelCard]:
    """Read tensors and card of a model file."""
    from safetensors.torch import load_file

    card = read_card(path)
    return load_file(str(path)), card
