"""``slimdiffsr evaluate``: score super-resolution the way the paper does, plus RS trust metrics.

Three modes, chosen by the arguments:

- model-driven (``--model``): HR images (``--hr`` folders/files or ``--split`` file's validation
  list) are cropped to a multiple of the scale, degraded with a seeded preset (image ``k`` uses
  generator seed ``seed + k``, as ``data.datasets.build_paired_val`` does), super-resolved by each
  model and by bicubic (always reported, as the baseline) and scored against the HR;
- paired (``--sr DIR --hr DIR``): SR and HR files matched by name (stem);
- no-reference (``--sr DIR`` alone, optionally ``--lr DIR`` for input consistency).

Examples::

    slimdiffsr evaluate --model default --split training/splits/shared_data.json --scale 4 \\
        --degradation rs --seed 0 --json val.json --report reports/val
    slimdiffsr evaluate --sr out/ --hr gt/ --metrics psnr,ssim,lpips,dists,niqe --json m.json
    slimdiffsr evaluate --sr real_sr/ --lr real_lr/ --metrics niqe,consistency

PSNR and SSIM are on Y of YCbCr (BT.601) with ``scale`` pixels cropped at each border
(``metrics.psnr_ssim``). Learned metrics read weights from ``--weights-dir`` /
``$SLIMDIFFSR_WEIGHTS`` only; a metric whose weights are missing is skipped with the reason. An SR
whose size differs from its reference is bicubic-resized to it, and the report says so. SR made
here is rounded to the source raster's dtype first (what the engine would write).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from slimdiffsr.errors import SlimDiffSRError
from slimdiffsr.evaluate.modes import evaluate_folders, evaluate_models
from slimdiffsr.evaluate.report import format_table, write_report
from slimdiffsr.evaluate.scoring import (
    ALL_METRICS,
    DEFAULT_NR_METRICS,
    DEFAULT_REF_METRICS,
    DETAIL_METRIC,
    LEARNED_FR,
    PIXEL_METRICS,
    by_sensor,
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="slimdiffsr evaluate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    src = p.add_argument_group("inputs")
    src.add_argument(
        "--model",
        action="append",
        default=[],
        help="model name or .safetensors path (repeatable or comma list); bicubic is always added",
    )
    src.add_argument("--hr", action="append", default=[], help="HR folder/file/glob (repeatable)")
    src.add_argument("--split", help="split .json: its validation files are the HR images")
    src.add_argument("--sr", help="folder of SR images (paired or no-reference mode)")
    src.add_argument("--lr", help="folder of LR inputs matching --sr by name (consistency)")
    src.add_argument("--name", help="label of the --sr method in tables (default: folder name)")
    opt = p.add_argument_group("protocol")
    opt.add_argument("--scale", type=int, default=4)
    opt.add_argument("--degradation", default="rs", help="preset: rs, rs16, realesrgan, bicubic")
    opt.add_argument("--seed", type=int, default=0)
    opt.add_argument("--bands", help="1-based bands to read, e.g. 1,2,3 (default: the model's)")
    opt.add_argument("--max-size", type=int, help="centre-crop HR images to at most this side")
    opt.add_argument("--max-images", type=int, help="use only the first N images")
    opt.add_argument("--crop-border", type=int, help="PSNR/SSIM border crop (default: scale)")
    opt.add_argument("--seam-tile", type=int, help="output tile size for the seam metric")
    opt.add_argument(
        "--ensemble",
        default="1",
        help="self-ensemble sizes to score each learned model at, comma list of 1, 2, 4, 8 "
        "(e.g. 1,8: each model plain and as 'NAME x8'); see slimdiffsr.engine.ensemble",
    )
    opt.add_argument(
        "--metrics",
        help=f"comma list from {','.join(ALL_METRICS)} "
        f"(default {DEFAULT_REF_METRICS} with a reference, {DEFAULT_NR_METRICS} without)",
    )
    run = p.add_argument_group("run and output")
    run.add_argument("--weights-dir", help="metric weights folder (default $SLIMDIFFSR_WEIGHTS)")
    run.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    run.add_argument("--json", help="write per-image and mean values here")
    run.add_argument("--report", help="folder for table.md, table.csv, plot and crops (PNG)")
    run.add_argument("--report-images", type=int, default=4, help="side-by-side crops to save")
    run.add_argument("--overwrite", action="store_true", help="replace existing --json/--report")
    run.add_argument("-q", "--quiet", action="store_true", help="no per-image lines")
    a = p.parse_args(argv)
    a.model = [m.strip() for ms in a.model for m in ms.split(",") if m.strip()]
    if a.model and a.sr:
        p.error("use --model (model-driven) or --sr (paired / no-reference), not both")
    if not a.model and not a.sr:
        p.error("give --model NAME (with --hr or --split) or --sr DIR")
    if a.model and not (a.hr or a.split):
        p.error("--model needs HR images: --hr DIR or --split FILE")
    if a.sr and a.split:
        p.error("--split works with --model; in paired mode give --hr DIR")
    if a.scale < 1:
        p.error("--scale must be >= 1")
    if a.max_size is not None and a.max_size < a.scale:
        p.error("--max-size must be at least the scale")
    a.metric_list = _metric_list(p, a)
    if a.crop_border is None:
        a.crop_border = a.scale
    for flag in ("json", "report"):
        v = getattr(a, flag)
        if v and Path(v).exists() and not a.overwrite:
            p.error(f"--{flag} {v} exists; pass --overwrite to replace it")
    return a


def _metric_list(p: argparse.ArgumentParser, a: argparse.Namespace) -> list[str]:
    has_ref = bool(a.model or a.hr)
    text = a.metrics or (DEFAULT_REF_METRICS if has_ref else DEFAULT_NR_METRICS)
    names = [m.strip().lower() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in ALL_METRICS]
    if bad:
        p.error(f"unknown metrics {bad}; choose from {','.join(ALL_METRICS)}")
    if not has_ref:
        needs = [m for m in names if m in PIXEL_METRICS + LEARNED_FR + (DETAIL_METRIC,)]
        if needs:
            p.error(f"metrics {needs} need a reference: add --hr DIR")
    if "seam" in names and not a.seam_tile:
        p.error("the seam metric needs --seam-tile (the engine's output tile size)")
    return list(dict.fromkeys(names))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``slimdiffsr evaluate``; returns the exit status (2 for input errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    a = parse_args(argv)
    echo: Callable[[str], None] = lambda s: print(s, flush=True)  # noqa: E731
    try:
        t0 = time.perf_counter()
        res, samples = (evaluate_models if a.model else evaluate_folders)(a, echo)
        res.info["command"] = ["slimdiffsr", "evaluate", *argv]
        res.info["wall_seconds"] = round(time.perf_counter() - t0, 2)
        res.info["host"] = {"python": platform.python_version(), "machine": platform.machine()}
    except (SlimDiffSRError, OSError) as e:  # EvaluateError, DatasetError, DeviceError, ...
        print(f"error: {e}", file=sys.stderr)
        return 2
    print()
    print(format_table(res))
    groups = by_sensor(res)
    if len(groups) > 1:
        for g, sub in groups.items():
            print(f"\nby sensor: {g} ({len(next(iter(sub.per_image.values())))} images)")
            print(format_table(sub))
    for n in res.notes:
        print(f"note: {n}")
    for m, why in res.skipped.items():
        print(f"skipped {m}: {why}")
    if a.json:
        p = Path(a.json)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(res.to_json(), indent=1) + "\n")
        print(f"wrote {p}")
    if a.report:
        paths = write_report(res, samples, Path(a.report), a.scale)
        print(f"wrote report to {a.report} ({len(paths)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
