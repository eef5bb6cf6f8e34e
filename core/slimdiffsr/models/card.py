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
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slimdiffsr.errors import ModelError

CARD_KEY = "slimdiffsr.card"
FORMAT_KEY = "slimdiffsr.format"
FORMAT_VERSION = "1"

log = logging.getLogger(__name__)


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
    # What the model was trained on (``contract.Domain``): kind "display8" (8-bit display-range
    # imagery) or "reflectance", band names, wavelengths_nm, gsd_m [min, max]. Empty on older
    # cards: derived from ``value_contract`` (see ``Domain.of_card``).
    domain: dict[str, Any] = field(default_factory=dict)
    version: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str | Path = "model card") -> ModelCard:
        """Parse a card; keys this version does not know (a newer writer) are logged with
        ``source`` (the file name) and ignored, so old readers still load new files."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ModelFileError(f"{source}: model card is not valid JSON: {e}") from e
        if not isinstance(d, dict):
            raise ModelFileError(
                f"{source}: model card must be a JSON object, got {type(d).__name__}"
            )
        known = set(cls.__dataclass_fields__)
        missing = {"name", "architecture", "scale"} - set(d)
        if missing:
            raise ModelFileError(f"{source}: model card lacks required fields: {sorted(missing)}")
        unknown = sorted(set(d) - known)
        if unknown:
            log.warning("%s: ignoring unknown model card keys %s", source, unknown)
        problem = card_problem(d)
        if problem:
            raise ModelFileError(f"{source}: invalid model card: {problem}")
        return cls(**{k: v for k, v in d.items() if k in known})

    def summary(self) -> str:
        vc = self.value_contract
        return (
            f"{self.name}: x{self.scale}, bands {','.join(self.bands)}, "
            f"values {vc.get('kind')} [{vc.get('low')}, {vc.get('high')}], license {self.license}"
        )


CARD_SCALES = (2, 4, 8)  # what the student network can be built for


def _finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _limits(v: Any) -> list[float] | None:
    if _finite_number(v):
        return [float(v)]
    if isinstance(v, list) and v and all(_finite_number(x) for x in v):
        return [float(x) for x in v]
    return None


def card_problem(d: dict[str, Any]) -> str | None:
    """What makes a card unusable (wrong types, scale, bands vs channels, degenerate value
    range), as one phrase; None when it is fine. Checked at load, so a bad file fails early with
    one line instead of deep in the network or as an all-zero output."""
    for k in ("name", "architecture"):
        if not isinstance(d.get(k), str) or not d[k].strip():
            return f"{k} must be a non-empty string, got {d.get(k)!r:.60}"
    scale = d.get("scale")
    if not isinstance(scale, int) or isinstance(scale, bool) or scale not in CARD_SCALES:
        return f"scale must be one of {list(CARD_SCALES)} (an integer), got {scale!r:.60}"
    for k, kind in (("config", dict), ("training", dict), ("metrics", dict)):
        if k in d and not isinstance(d[k], kind):
            return f"{k} must be a JSON object, got {d[k]!r:.60}"
    for k in ("description", "license", "version"):
        if k in d and not isinstance(d[k], str):
            return f"{k} must be a string, got {d[k]!r:.60}"
    halo = d.get("halo", 0)
    if not isinstance(halo, int) or isinstance(halo, bool) or not 0 <= halo <= 4096:
        return f"halo must be an integer from 0 to 4096, got {halo!r:.60}"
    bands = d.get("bands", [])
    if not isinstance(bands, list) or not all(isinstance(b, str) and b for b in bands):
        return f"bands must be a list of band names, got {bands!r:.60}"
    n_in = (d.get("config") or {}).get("in_channels")
    if bands and isinstance(n_in, int) and len(bands) != n_in:
        return f"{len(bands)} band name(s) {bands} for a network with {n_in} input channels"
    vc = d.get("value_contract")
    if vc in (None, {}):
        return None
    if not isinstance(vc, dict):
        return f"value_contract must be a JSON object, got {vc!r:.60}"
    kind = vc.get("kind", "fixed")  # other kinds are judged by ``contract.ValueContract``
    if kind == "fixed":
        low, high = _limits(vc.get("low")), _limits(vc.get("high"))
        if low is None or high is None:
            return "value_contract low/high must be finite numbers (or lists of them)"
        n = max(len(low), len(high))
        if {len(low), len(high)} - {1, n} or (bands and n not in (1, len(bands))):
            return f"value_contract has {len(low)} low and {len(high)} high values for {len(bands)} bands"
        lo = low * n if len(low) == 1 else low
        hi = high * n if len(high) == 1 else high
        if any(b <= a for a, b in zip(lo, hi)):
            return f"value_contract needs high > low for every band, got low {low} high {high}"
    elif kind == "percentile":
        p_lo, p_hi = vc.get("p_low", 0.5), vc.get("p_high", 99.5)
        if not (_finite_number(p_lo) and _finite_number(p_hi) and 0 <= p_lo < p_hi <= 100):
            return (
                f"value_contract percentiles must be 0 <= p_low < p_high <= 100, got {p_lo}, {p_hi}"
            )
    return None


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
        with safe_open(str(path), framework="numpy") as f:  # numpy: no torch needed
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises several types for foreign files
        raise ModelFileError(f"{path} is not a safetensors model file ({e})") from e
    if CARD_KEY not in meta:
        raise ModelFileError(
            f"{path} is a safetensors file without a SlimDiffSR model card; "
            "import published checkpoints with `slimdiffsr convert`"
        )
    return ModelCard.from_json(meta[CARD_KEY], path)


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
