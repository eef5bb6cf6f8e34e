"""Smoke test of distillation on real imagery: a tiny random teacher, the nano student, CPU.

Runs ``training/distill.py``'s step logic for 100 steps (batch 4, 128 crops, RS degradation,
autoencoder initialised from ``../shared/weights``) on the fixed split of ``../shared/data`` and
checks that the training loss falls and that validation PSNR-Y ends above its value at step 0.
About 5 minutes on 2 shared CPU cores. Exit status 0 on success, 1 on failure, 2 if the data is
missing. Measured: loss 0.63 -> 0.30, PSNR-Y 27.310 -> 27.394 dB (bicubic 27.310). With a random
autoencoder, or 64 crops, 100-300 steps do not move PSNR above bicubic yet.

    .venv/bin/python scripts/smoke_distill.py [--steps 100] [--out runs/smoke_distill]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPLIT = ROOT / "training" / "splits" / "shared_data.json"
WEIGHTS = ROOT.parent / "shared" / "weights"


def make_tiny_teacher(folder: Path) -> Path:
    """A random SD-shaped teacher folder (unet/vae/scheduler, estimator, teacher_config.json)."""
    from slimdiffsr.testing import make_teacher_folder

    return make_teacher_folder(folder, "tiny")


def smoke(
    steps: int, out: Path, teacher: Path, crop: int = 128, batch: int = 4, lr: float = 1e-4
) -> dict[str, float]:
    """Train, then compare first/last losses and step-0/final validation PSNR-Y."""
    from slimdiffsr.training.config import load_config
    from slimdiffsr.training.distill import run

    cfg = load_config(
        None,
        {
            "train_data": str(SPLIT),
            "teacher": str(teacher),
            "student_preset": "nano",
            "init_autoencoder": str(WEIGHTS) if WEIGHTS.is_dir() else None,
            "crop_size": crop,
            "train_batch_size": batch,
            "degradation": "rs",
            "loss_l1": 1.0,
            "loss_l2": 0.0,
            "learning_rate": lr,
            "max_train_steps": steps,
            "validation_steps": steps,
            "checkpointing_steps": steps,
            "val_crop_size": 128,
            "val_max_images": 4,
            "report_to": "none",
            "output_dir": str(out),
            "seed": 0,
            "num_threads": 1,
        },
    )
    summary = run(cfg)
    losses = [h["loss"] for h in summary["history"]]
    rec = [h["rec"] for h in summary["history"]]
    k = max(1, min(5, len(losses) // 4))
    val = summary["validation"]
    return {
        "loss_first": sum(losses[:k]) / k,
        "loss_last": sum(losses[-k:]) / k,
        "rec_first": sum(rec[:k]) / k,
        "rec_last": sum(rec[-k:]) / k,
        "psnr_step0": val[0]["val/psnr_y"],
        "psnr_final": val[-1]["val/psnr_y"],
        "psnr_bicubic": val[-1]["val/psnr_y_bicubic"],
        "steps_per_s": summary["steps_per_s"],
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-4)
    args = p.parse_args()
    if not SPLIT.is_file() or not (ROOT.parent / "shared" / "data").is_dir():
        print("smoke_distill: ../shared/data is absent", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "run"
        teacher = make_tiny_teacher(Path(tmp) / "teacher")
        r = smoke(args.steps, out, teacher, args.crop, args.batch, args.lr)
    ok = r["loss_last"] < r["loss_first"] and r["psnr_final"] > r["psnr_step0"]
    print(json.dumps({**r, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
