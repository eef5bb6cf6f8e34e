"""A fixed crop set with precomputed teacher outputs, for distilling from a slow teacher on CPU.

Real-ESRGAN x4plus (16.7 M parameters) costs about 0.5 s per 32 x 32 LR crop on one CPU thread:
several times a student step, so it runs ONCE per crop. :func:`build_cache` draws ``n`` HR crops
from the training set (:class:`RasterPatchDataset`, seeded), degrades each once (seeded, the run's
preset), runs the teacher and stores ``hr``, ``lr`` and ``teacher`` as float16 tensors in one
safetensors file with the recipe in its metadata (hr and teacher are uint8-exact; lr keeps the
preset's quantisation).
Checkpointed: an interrupted build resumes from its ``.part`` file.

With ``features`` (the default) it also stores ``teacher_feat``: the teacher's trunk features
(``RRDBNet.trunk``, 64 channels at LR resolution) area-averaged by 2 to HR/8, the student's latent
grid, as float16 (64 x 16 x 16 per 128 px crop), for feature distillation. Metadata ``features``
names them (``rrdb_trunk_avgpool2``); caches without the key still load (no feature term).

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

FEATURES = "rrdb_trunk_avgpool2"


def load_realesrgan(path: str | Path) -> torch.nn.Module:
    """The converted Real-ESRGAN x4plus (``python -m slimdiffsr.weights provision``); the sizes
    are read from the file, so tests can cache from a tiny RRDBNet."""
    from safetensors.torch import load_file

    from slimdiffsr.models.rrdbnet import RRDBNet

    sd = load_file(str(path))
    nb = len({k.split(".")[1] for k in sd if k.startswith("body.")})
    net = RRDBNet(
        nf=sd["conv_first.weight"].shape[0], nb=nb, gc=sd["body.0.rdbs.0.convs.0.weight"].shape[0]
    )
    net.load_state_dict(sd, strict=True)
    return net.eval().requires_grad_(False)


def teacher_pass(net: torch.nn.Module, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Clamped teacher output and its trunk features pooled to HR/8 (the student's latent grid)."""
    with torch.no_grad():
        out, feat = net.forward_features(lr)
    return out.clamp(0, 1), torch.nn.functional.avg_pool2d(feat, 2)


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
    features: bool = True,
) -> Path:
    from safetensors.torch import load_file, save_file

    from slimdiffsr.data.datasets import RasterPatchDataset
    from slimdiffsr.data.degradation import DegradationConfig, degrade

    out = Path(out)
    part = out.with_name(out.name + ".part")
    ds = RasterPatchDataset(data, crop_size=crop_size, bands=bands or [1, 2, 3], seed=seed)
    net = load_realesrgan(teacher)
    cfg = DegradationConfig.preset(degradation)
    keys = ("hr", "lr", "teacher") + (("teacher_feat",) if features else ())
    done: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    if part.is_file():
        prev = load_file(str(part))
        for k in ("hr", "lr", "teacher"):
            done[k] = list(prev[k])
        if features and "teacher_feat" in prev:
            done["teacher_feat"] = list(prev["teacher_feat"])
        elif features:  # a part from a build without features: recompute them from the stored
            # float16 LR; the float32 LR it rounds is gone, so they differ from a fresh build's
            # by that rounding amplified (about 5e-3 at most on the x4plus teacher)
            done["teacher_feat"] = [
                teacher_pass(net, x[None].float())[1][0].half() for x in prev["lr"]
            ]
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed)).tolist()
    t0 = time.time()
    for i in range(len(done["hr"]), n):
        idx = order[i % len(order)]
        hr = ds.sample(idx, epoch=i // len(order))[None]
        lr = degrade(hr, scale, cfg, torch.Generator().manual_seed(seed * 100003 + i))
        t, feat = teacher_pass(net, lr)
        for k, v in (("hr", hr), ("lr", lr), ("teacher", t), ("teacher_feat", feat)):
            if k in done:
                done[k].append(v[0].half())
        if (i + 1) % 16 == 0 or i + 1 == n:
            save_file({k: torch.stack(v) for k, v in done.items()}, str(part))
            print(f"{i + 1}/{n} crops, {time.time() - t0:.0f} s", flush=True)
    meta = {
        "data": str(data), "teacher": Path(teacher).name, "n": str(n), "crop_size": str(crop_size),
        "scale": str(scale), "degradation": degradation, "seed": str(seed),
    }  # fmt: skip
    if features:
        meta["features"] = FEATURES
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
    p.add_argument(
        "--no-features", action="store_true", help="do not store the teacher's trunk features"
    )
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    path = build_cache(
        a.data, a.teacher, a.n, a.out, a.crop_size, 4, a.degradation, a.seed,
        features=not a.no_features,
    )  # fmt: skip
    print(json.dumps({"out": str(path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
