"""Publish a trained student into the package's model zoo with a complete model card.

Copies the model file (never modifying the checkpoint), merges the measured validation metrics
from a ``slimdiffsr evaluate --json`` file and provenance fields into the card stored in the
file's metadata, and writes a human-readable card (``NAME.md``) beside it.

    python training/publish_model.py runs/default_nano_x4/checkpoint-1750/slimdiffsr-nano-x4.safetensors \
        --eval val_x4.json --wall-time-min 85 --hardware "2 CPU cores (shared)" \
        --eval-command "slimdiffsr evaluate ..." --dest core/slimdiffsr/zoo
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safetensors.torch import load_file

from slimdiffsr.models.card import read_card, save_model_file

DATA_LICENSES = {
    "neon (HARV, OSBS, SJER; validation TEAK)": "NEON airborne RGB orthophotos, CC0; repository MIT",
    "naip m_4709963_se_14_1 (train 2009-2018; validation 2019, 2020)": "NAIP, public domain; repository MIT",
}


def mean_metrics(evaluation: dict, model_label: str) -> dict:
    """Pull the mean metrics of ``model_label`` and of bicubic from an evaluate JSON."""
    out = {}
    for label, entry in evaluation["methods"].items():
        key = (
            "bicubic"
            if label.startswith("bicubic")
            else ("model" if label == model_label else None)
        )
        if key is None:
            continue
        for metric, v in entry["mean"].items():
            if metric != "seconds":
                out[f"{metric}_{key}"] = round(v, 4) if isinstance(v, float) else v
    for metric in ("psnr", "lpips"):
        if f"{metric}_model" in out and f"{metric}_bicubic" in out:
            out[f"{metric}_gain"] = round(out[f"{metric}_model"] - out[f"{metric}_bicubic"], 4)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="trained model file (.safetensors with card)")
    p.add_argument("--eval", required=True, help="JSON written by slimdiffsr evaluate --json")
    p.add_argument("--eval-command", required=True, help="the exact evaluate command used")
    p.add_argument("--wall-time-min", type=float, required=True)
    p.add_argument("--hardware", required=True)
    p.add_argument(
        "--train-command",
        default="python training/distill.py --config training/configs/default_nano_x4.yaml",
    )
    p.add_argument("--dest", default="core/slimdiffsr/zoo")
    a = p.parse_args()

    src = Path(a.model)
    card = read_card(src)
    evaluation = json.loads(Path(a.eval).read_text())
    card.metrics = {
        "validation": "NEON TEAK (unseen site) + NAIP 2019/2020, x4, degradation 'rs', seed 0",
        **mean_metrics(evaluation, card.name),
        "command": a.eval_command,
    }
    card.training.update(
        {
            "data": DATA_LICENSES,
            "wall_time_min": a.wall_time_min,
            "hardware": a.hardware,
            "command": a.train_command,
        }
    )
    card.license = "MIT (weights); training data CC0 / public domain"
    card.description = (
        "Compact SlimDiffSR student (nano preset, 4.5 M parameters) for x4 RGB imagery, trained "
        "from scratch on CPU WITHOUT the diffusion teacher (no Stable Diffusion weights were "
        "available): a residual over bicubic, L1 loss, remote-sensing degradation."
    )
    dest = Path(a.dest) / f"{card.name}.safetensors"
    save_model_file(load_file(str(src)), card, dest)
    lines = [f"# Model card: {card.name}", "", card.description, ""]
    lines += ["## Use", "", f"- scale x{card.scale}; bands {', '.join(card.bands)};"]
    lines += [f"- input value contract: {json.dumps(card.value_contract)};"]
    lines += [f"- halo {card.halo} LR px (the engine's default tiling respects it).", ""]
    lines += ["## Training", ""] + [f"- {k}: {json.dumps(v)}" for k, v in card.training.items()]
    lines += ["", "## Validation", ""] + [f"- {k}: {v}" for k, v in card.metrics.items()]
    lines += ["", "## Limits", ""]
    lines += [
        "- Not the paper's model: no diffusion prior, no distillation; expect modest sharpening, "
        "not generated texture. Use `slimdiffsr convert` with the authors' checkpoint for the "
        "paper-size network.",
        "- Trained on 8-bit aerial RGB at 0.1 m (NEON) and 5 m (NAIP, resampled); other sensors "
        "and 16-bit data work through the value contract but were not validated.",
    ]
    dest.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"published {dest} and {dest.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
