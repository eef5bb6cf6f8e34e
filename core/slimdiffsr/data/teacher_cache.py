"""A fixed crop set with precomputed teacher outputs, for distilling from a slow teacher on CPU.

Real-ESRGAN x4plus (16.7 M parameters) costs seconds per 32 x 32 LR crop on one CPU thread: far
too slow to run in every training step, cheap enough to run ONCE per crop. :func:`build_cache`
draws ``n`` HR crops from the training set (:class:`RasterPatchDataset`, seeded), degrades each
once (seeded, the run's preset), runs the teacher and stores ``hr``, ``lr`` and ``teacher`` as
uint8-exact float16 tensors in one safetensors file (with the recipe in its metadata).
Checkpointed: an interrupted build resumes from its ``.part`` file.

Usage::

    python -m slimdiffsr.data.teacher_cache --data training/splits/shared_data.json \\
        --teacher WEIGHTS/realesrgan_x4plus.safetensors --n 256 --out runs/cache.safetensors
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch


def load_realesrgan(path: str | Path) -> torch.nn.Module:
    """The converted Real-ESRGAN x4plus (``python -m slimdiffsr.weights provision``)."""
    from safetensors.torch import load_file

    from slimdiffsr.models.rrdbnet import RRDBNet

    net = RRDBNet()
    net.load_state_dict(load_file(str(path)), strict=True)
    return net.eval().requires_grad_(False)


def build_cache(
    data: str,
    teacher: str | Path,
    n: int,
    out: str | Path,
    crop_size: int = 128,
    scale: int = 4,
    degradation: str = "rs",
    seed: int = 0,
    bands: list[int] | None = None,
) -> Path:
    from safetensors.torch import load_file, save_file

    from slimdiffsr.data.datasets import RasterPatchDataset
    from slimdiffsr.data.degradation import DegradationConfig, degrade

    out = Path(out)
    part = out.with_name(out.name + ".part")
    ds = RasterPatchDataset(data, crop_size=crop_size, bands=bands or [1, 2, 3], seed=seed)
    net = load_realesrgan(teacher)
    cfg = DegradationConfig.preset(degradation)
    done: dict[str, list[torch.Tensor]] = {"hr": [], "lr": [], "teacher": []}
    if part.is_file():
        prev = load_file(str(part))
        for k in done:
            done[k] = list(prev[k])
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed)).tolist()
    t0 = time.time()
    for i in range(len(done["hr"]), n):
        idx = order[i % len(order)]
        hr = ds.sample(idx, epoch=i // len(order))[None]
        lr = degrade(hr, scale, cfg, torch.Generator().manual_seed(seed * 100003 + i))
        with torch.no_grad():
            t = net(lr).clamp(0, 1)
        for k, v in (("hr", hr), ("lr", lr), ("teacher", t)):
            done[k].append(v[0].half())
        if (i + 1) % 16 == 0 or i + 1 == n:
            save_file({k: torch.stack(v) for k, v in done.items()}, str(part))
            print(f"{i + 1}/{n} crops, {time.time() - t0:.0f} s", flush=True)
    meta = {
        "data": str(data), "teacher": Path(teacher).name, "n": str(n), "crop_size": str(crop_size),
        "scale": str(scale), "degradation": degradation, "seed": str(seed),
    }  # fmt: skip
    save_file({k: torch.stack(v) for k, v in done.items()}, str(part), metadata=meta)
    os.replace(part, out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", required=True)
    p.add_argument("--teacher", required=True, help="realesrgan_x4plus.safetensors")
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--out", required=True)
    p.add_argument("--crop-size", type=int, default=128)
    p.add_argument("--degradation", default="rs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    path = build_cache(a.data, a.teacher, a.n, a.out, a.crop_size, 4, a.degradation, a.seed)
    print(json.dumps({"out": str(path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
