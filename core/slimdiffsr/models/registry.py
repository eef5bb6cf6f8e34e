"""Installed models: the ones shipped inside the package plus a user models folder.

Names resolve in this order: ``bicubic`` (built in), ``default`` (the shipped default), a path to a
``.safetensors`` file, then a card name found in the models folders. The user folder is
``$SLIMDIFFSR_MODELS`` or ``~/.local/share/slimdiffsr/models``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slimdiffsr.models.card import ModelCard, ModelFileError, file_sha256, read_card

if TYPE_CHECKING:  # pragma: no cover
    import torch

ZOO_DIR = Path(__file__).resolve().parent.parent / "zoo"
DEFAULT_MODEL = "slimdiffsr-nano-x4"


def user_models_dir() -> Path:
    env = os.environ.get("SLIMDIFFSR_MODELS")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".local" / "share" / "slimdiffsr" / "models"


def model_dirs() -> list[Path]:
    return [ZOO_DIR, user_models_dir()]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path | None  # None for built-in models
    card: ModelCard

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "scale": self.card.scale,
            "bands": self.card.bands,
            "value_contract": self.card.value_contract,
            "license": self.card.license,
            "description": self.card.description,
            "default": self.name == DEFAULT_MODEL,
        }


def list_models() -> list[ModelEntry]:
    """All installed models (files whose card cannot be read are skipped)."""
    from slimdiffsr.models.bicubic import BicubicSR

    entries: dict[str, ModelEntry] = {}
    for d in model_dirs():
        if not d.is_dir():
            continue
        for p in sorted(d.glob("*.safetensors")):
            try:
                card = read_card(p)
            except ModelFileError:
                continue
            entries.setdefault(card.name, ModelEntry(card.name, p, card))
    for s in (4, 8):
        b = BicubicSR(s)
        entries.setdefault(f"bicubic-x{s}", ModelEntry(f"bicubic-x{s}", None, b.card))
    return list(entries.values())


def resolve(name_or_path: str) -> Path | str:
    """Return a model file path, or the built-in name (``bicubic``, ``bicubic-x8``)."""
    n = str(name_or_path)
    if n == "bicubic" or n.startswith("bicubic-x"):
        return n
    if n == "default":
        n = DEFAULT_MODEL
    p = Path(n).expanduser()
    if p.suffix == ".safetensors" or p.exists():
        if not p.is_file():
            raise ModelFileError(f"model file not found: {p}")
        return p
    for e in list_models():
        if e.name == n and e.path is not None:
            return e.path
    names = ", ".join(e.name for e in list_models()) or "(none)"
    hint = ""
    if n == DEFAULT_MODEL:
        hint = f" (the default model should be at {ZOO_DIR / (DEFAULT_MODEL + '.safetensors')})"
    raise ModelFileError(f"no installed model named {n!r}{hint}; installed: {names}")


def load_model(
    name_or_path: str = "default",
    device: str | torch.device | None = None,
    scale: int | None = None,
) -> torch.nn.Module:
    """Build a model in eval mode with ``.scale``, ``.halo``, ``.card`` and ``.model_hash``."""

    from slimdiffsr.models.bicubic import BicubicSR

    target = resolve(name_or_path)
    if isinstance(target, str):
        try:
            s = scale or (int(target.split("-x")[1]) if "-x" in target else 4)
        except ValueError:
            raise ModelFileError(
                f"unknown built-in model {target!r}; use bicubic-x4 or bicubic-x8"
            ) from None
        model: torch.nn.Module = BicubicSR(s)
    else:
        from slimdiffsr.models.card import load_model_file

        state, card = load_model_file(target)
        if card.architecture != "student":
            raise ModelFileError(f"{target}: unknown architecture {card.architecture!r}")
        if scale is not None and scale != card.scale:
            raise ModelFileError(
                f"model {card.name} is x{card.scale}, but scale {scale} was requested"
            )
        from slimdiffsr.models.student import SlimDiffSRStudent

        try:
            model = SlimDiffSRStudent.from_card(card)
            missing, unexpected = model.load_state_dict(state, strict=False)
        except (TypeError, ValueError, RuntimeError) as e:  # config or tensor shapes
            reason = " ".join(str(e).split())[:300]
            raise ModelFileError(
                f"{target}: the card does not describe these weights ({reason})"
            ) from e
        if missing or unexpected:
            raise ModelFileError(
                f"{target}: weights do not match the card's architecture "
                f"(missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]})"
            )
        model.card = card
        model.model_hash = file_sha256(target)[:16]
    if device is not None:
        model = model.to(device)
    return model.eval()
