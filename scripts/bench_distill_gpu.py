"""GPU benchmark of ``training/distill.py``: a few hundred steps on CUDA with bf16.

Reports steps/s and peak GPU memory as one JSON line per configuration. Uses ``../shared/data``
when present, else synthetic multi-scale textures (the numbers are about speed, not quality).
The teacher is a random SD-shaped folder: ``sd2`` has the real SD-2.x widths (865 M UNet
parameters, what the paper distils from), ``tiny`` is for a quick check.

    .venv/bin/python scripts/bench_distill_gpu.py --steps 300 --teacher-size sd2 --preset paper
    .venv/bin/python scripts/bench_distill_gpu.py --steps 300 --no-teacher --preset nano
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPLIT = ROOT / "training" / "splits" / "shared_data.json"


def synthetic_data(folder: Path, n: int = 16, size: int = 512) -> Path:
    """Multi-scale smooth noise as 3-band uint8 GeoTIFFs (texture at every frequency)."""
    import numpy as np
    import rasterio
    import torch
    import torch.nn.functional as F
    from affine import Affine

    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        img = torch.zeros(1, 3, size, size)
        for octave in range(1, 8):
            s = 2**octave
            img += (
                F.interpolate(
                    torch.rand(1, 3, s, s, generator=g), size=(size, size), mode="bicubic"
                )
                / octave
            )
        img = (img - img.min()) / (img.max() - img.min())
        arr = (img[0].numpy() * 255).astype(np.uint8)
        profile = {"driver": "GTiff", "height": size, "width": size, "count": 3, "dtype": "uint8",
                   "crs": "EPSG:32633", "transform": Affine(1.0, 0, 0, 0, -1.0, 0)}  # fmt: skip
        with rasterio.open(folder / f"synthetic_{i:02d}.tif", "w", **profile) as dst:
            dst.write(arr)
    return folder


def make_teacher(folder: Path, size: str) -> Path:
    from slimdiffsr.testing import make_teacher_folder

    return make_teacher_folder(folder, size)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--preset", default="paper", choices=["paper", "nano"])
    p.add_argument("--teacher-size", default="sd2", choices=["sd2", "tiny"])
    p.add_argument("--no-teacher", action="store_true")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "no"])
    p.add_argument("--workers", type=int, default=4)
    args = p.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("bench_distill_gpu: CUDA is not available", file=sys.stderr)
        return 2
    from slimdiffsr.training.config import load_config
    from slimdiffsr.training.distill import run

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shared = (ROOT.parent / "shared" / "data").is_dir()
        train = str(SPLIT) if shared else str(synthetic_data(tmp / "data"))
        t0 = time.perf_counter()
        teacher = None if args.no_teacher else str(make_teacher(tmp / "teacher", args.teacher_size))
        setup_s = time.perf_counter() - t0
        cfg = load_config(
            None,
            {
                "train_data": train,
                "val_data": None if shared else train,
                "val_max_images": 4,
                "teacher": teacher,
                "student_preset": args.preset,
                "crop_size": args.crop,
                "train_batch_size": args.batch,
                "degradation": "realesrgan",
                "mixed_precision": args.precision,
                "max_train_steps": args.steps,
                "validation_steps": args.steps,
                "checkpointing_steps": args.steps,
                "logging_steps": 50,
                "dataloader_num_workers": args.workers,
                "report_to": "none",
                "output_dir": str(tmp / "run"),
            },
        )
        summary = run(cfg)
    result = {
        "device": torch.cuda.get_device_name(0),
        "preset": args.preset,
        "teacher": None if args.no_teacher else args.teacher_size,
        "batch": args.batch,
        "crop": args.crop,
        "precision": args.precision,
        "steps": summary["step"],
        "steps_per_s": round(summary["steps_per_s"], 3),
        "images_per_s": round(summary["steps_per_s"] * args.batch, 2),
        "max_memory_gb": round(summary.get("max_memory_gb", float("nan")), 2),
        "teacher_setup_s": round(setup_s, 1),
        "loss_first": round(summary["history"][0]["loss"], 4),
        "loss_last": round(summary["history"][-1]["loss"], 4),
        "data": "shared" if shared else "synthetic",
    }
    print("bench " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
