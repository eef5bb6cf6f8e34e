"""Import the authors' published student checkpoints (``.pkl``) into the product format.

Their files are torch pickles saved from ``DataParallel`` (keys prefixed ``module.``). We load them
with ``weights_only=True`` (tensors and plain containers only, never arbitrary objects), strip the
prefix, check every key and shape against the published layout shipped with the package
(``published_layout.json``), load strictly into the ``paper`` preset and write a safetensors
model file with a card.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from slimdiffsr.models.card import ModelFileError

LAYOUT_FILE = Path(__file__).with_name("published_layout.json")


def published_layout() -> dict[str, list[int]]:
    return json.loads(LAYOUT_FILE.read_text())["state_dict"]


def read_published_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a published checkpoint, keys without ``module.``, checked against the layout."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"checkpoint not found: {path}")
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelFileError(
            f"{path} is not a loadable torch checkpoint of tensors ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]})"
        ) from e
    for key in ("state_dict", "model", "params"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelFileError(f"{path} does not contain a state dict of tensors")
    state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in obj.items()}
    layout = published_layout()
    missing = sorted(set(layout) - set(state))
    unexpected = sorted(set(state) - set(layout))
    wrong = [k for k in layout if k in state and list(state[k].shape) != layout[k]]
    if missing or unexpected or wrong:
        raise ModelFileError(
            f"{path} is not a SlimDiffSR student checkpoint: {len(missing)} missing keys "
            f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, "
            f"{len(wrong)} wrong shapes {wrong[:3]}"
        )
    return state


def convert_checkpoint(
    src: str | Path, dst: str | Path, scale: int = 4, name: str | None = None
) -> Path:
    """Convert a published ``.pkl`` to a product model file at ``dst`` (refuses to overwrite src)."""
    from slimdiffsr.models.student import SlimDiffSRStudent

    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve():
        raise ModelFileError("destination equals the source checkpoint; choose another path")
    state = read_published_checkpoint(src)
    model = SlimDiffSRStudent.from_preset("paper", scale=scale)
    model.load_state_dict(state, strict=True)
    card = model.make_card(
        name or dst.stem,
        description=f"Authors' published SlimDiffSR x{scale} student, converted from {src.name}.",
        license="see the authors' release",
        value_contract={"kind": "fixed", "low": [0.0], "high": [255.0]},
        training={"source": "published checkpoint", "file": src.name},
        halo=48,
    )
    return model.save_model(dst, card)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="slimdiffsr convert",
        description="Convert the authors' published student checkpoint (.pkl) to a SlimDiffSR "
        "model file (.safetensors with a model card). Example: "
        "slimdiffsr convert SlimDiffSR_x4.pkl models/slimdiffsr-paper-x4.safetensors --scale 4",
    )
    p.add_argument("src", help="published checkpoint (.pkl / .pth)")
    p.add_argument("dst", help="output model file (.safetensors)")
    p.add_argument("--scale", type=int, default=4, choices=(4, 8))
    p.add_argument("--name", default=None, help="model name in the card (default: file stem)")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    if Path(a.dst).exists() and not a.overwrite:
        raise ModelFileError(f"{a.dst} exists; pass --overwrite to replace it")
    out = convert_checkpoint(a.src, a.dst, scale=a.scale, name=a.name)
    print(f"wrote {out}")
    return 0
