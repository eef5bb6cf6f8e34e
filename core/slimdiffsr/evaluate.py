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
import csv
import json
import logging
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slimdiffsr.devices import resolve_device
from slimdiffsr.errors import InputError, SlimDiffSRError

log = logging.getLogger("slimdiffsr.evaluate")

PIXEL_METRICS = ("psnr", "ssim")
LR_METRICS = ("consistency", "sam")  # need the LR input
DETAIL_METRIC = "detail"  # improvement / omission / hallucination; needs HR and LR
LEARNED_FR = ("lpips", "lpips-vgg", "dists")
LEARNED_NR = ("niqe", "musiq", "maniqa", "clipiqa")
ALL_METRICS = PIXEL_METRICS + LEARNED_FR + LEARNED_NR + LR_METRICS + (DETAIL_METRIC, "seam")
LOWER_BETTER = {"lpips", "lpips-vgg", "dists", "niqe", "consistency", "sam", "seam"}
LOWER_BETTER |= {"hallucination", "omission"}
DEFAULT_REF_METRICS = "psnr,ssim,lpips,consistency"
DEFAULT_NR_METRICS = "niqe"


class EvaluateError(InputError):
    """Bad evaluation arguments or inputs (printed as one line, exit status 2)."""


# ------------------------------------------------------------------------------------------------
# Arguments
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# Scoring
# ------------------------------------------------------------------------------------------------
@dataclass
class Scorer:
    """Builds the requested metrics once; ``score`` returns ``{metric: value}`` for one image."""

    metrics: list[str]
    scale: int
    crop_border: int
    weights: str | None = None
    device: str = "cpu"
    seam_tile: int | None = None
    has_hr: bool = True
    has_lr: bool = True
    skipped: dict[str, str] = field(default_factory=dict)
    learned: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from slimdiffsr.metrics.iqa import MetricUnavailable, build_metric
        from slimdiffsr.weights import WeightsMissingError

        for m in self.metrics:
            if m in LEARNED_FR + LEARNED_NR:
                try:
                    self.learned[m] = build_metric(m, self.weights, self.device)
                except (WeightsMissingError, MetricUnavailable) as e:
                    self.skipped[m] = str(e)
            elif m in LR_METRICS + (DETAIL_METRIC,) and not self.has_lr:
                self.skipped[m] = "needs the LR input (--lr DIR, or model-driven mode)"

    @property
    def active(self) -> list[str]:
        return [m for m in self.metrics if m not in self.skipped]

    def score(
        self,
        sr: np.ndarray,
        hr: np.ndarray | None,
        lr: np.ndarray | None,
        lr_up: np.ndarray | None,
        value_range: float,
    ) -> dict[str, float]:
        """Metrics of one SR (C, H, W) in [0, 1] against HR / LR (same unit).

        A metric that cannot score this image (e.g. NIQE on a tiny image) gives nan and its first
        error is kept in ``errors``; the others still run.
        """
        out: dict[str, float] = {}
        for m in self.active:
            try:
                out.update(self._one(m, sr, hr, lr, lr_up, value_range))
            except (ValueError, RuntimeError) as e:
                out[m] = float("nan")
                self.errors.setdefault(m, f"{type(e).__name__}: {e}")
        return out

    def _one(
        self,
        m: str,
        sr: np.ndarray,
        hr: np.ndarray | None,
        lr: np.ndarray | None,
        lr_up: np.ndarray | None,
        value_range: float,
    ) -> dict[str, float]:
        from slimdiffsr.metrics import psnr_ssim, rs

        y = sr.shape[0] >= 3 or sr.shape[0] == 1
        if m == "psnr" and hr is not None:
            return {m: psnr_ssim.psnr(sr, hr, self.crop_border, test_y_channel=y)}
        if m == "ssim" and hr is not None:
            return {m: psnr_ssim.ssim(sr, hr, self.crop_border, test_y_channel=y)}
        if m in self.learned:
            metric = self.learned[m]
            if not metric.full_reference:
                return {m: metric(sr)}
            return {m: metric(sr, hr)} if hr is not None else {}
        if m == "consistency" and lr is not None:
            return {m: rs.consistency_l1(sr, lr, self.scale, value_range)}
        if m == "sam" and lr is not None and sr.shape[0] >= 2:
            return {m: rs.consistency_sam(sr, lr, self.scale)}
        if m == DETAIL_METRIC and hr is not None and lr_up is not None:
            d = rs.detail_scores(sr, hr, lr_up)
            return {k: d[k] for k in ("improvement", "omission", "hallucination")}
        if m == "seam" and self.seam_tile:
            return {m: rs.seam_score(sr, self.seam_tile)}
        return {}


# ------------------------------------------------------------------------------------------------
# Images
# ------------------------------------------------------------------------------------------------
def _parse_bands(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        bands = [int(b) for b in text.split(",") if b.strip()]
    except ValueError as e:
        raise EvaluateError(f"--bands must be 1-based integers like 1,2,3, got {text!r}") from e
    if not bands or min(bands) < 1:
        raise EvaluateError(f"--bands must be 1-based integers like 1,2,3, got {text!r}")
    return bands


def _default_bands(path: Path, n: int | None) -> list[int] | None:
    """First ``n`` bands (the model's band count); without a model, RGB from >= 3-band rasters."""
    import rasterio

    with rasterio.open(path) as src:
        count = src.count
    if n is not None:
        if count < n:
            raise EvaluateError(f"{path} has {count} bands; the model needs {n}")
        return list(range(1, n + 1))
    return [1, 2, 3] if count >= 3 else None


@dataclass
class Raster:
    unit: np.ndarray  # (C, H, W) float32 in [0, 1]
    valid: np.ndarray  # (H, W) bool
    dtype: str
    contract: Any  # ValueContract

    @property
    def value_range(self) -> float:
        hi = float(np.mean(self.contract.high))
        lo = float(np.mean(self.contract.low))
        return hi - lo


def read_raster(path: Path, bands: list[int] | None, contract: Any = None) -> Raster:
    """Read bands of a raster (GeoTIFF, PNG, ...) into [0, 1] through a value contract."""
    from slimdiffsr.data.datasets import inspect_raster, read_unit

    info = inspect_raster(path, bands, contract)
    unit, valid = read_unit(info, bands)
    return Raster(unit, valid, info.dtype, info.contract)


def centre_crop(x: np.ndarray, size: int | None, multiple: int) -> np.ndarray:
    """Centre crop (C, H, W) to at most ``size`` per side, then to a multiple of ``multiple``
    (dropping the bottom/right remainder, as ``build_paired_val`` does)."""
    h, w = x.shape[-2:]
    if size is not None:
        ch, cw = min(h, size), min(w, size)
        r, c = (h - ch) // 2, (w - cw) // 2
        x = x[..., r : r + ch, c : c + cw]
        h, w = ch, cw
    hh, ww = h // multiple * multiple, w // multiple * multiple
    if hh == 0 or ww == 0:
        raise EvaluateError(f"an image of {h}x{w} is smaller than the scale {multiple}")
    return np.ascontiguousarray(x[..., :hh, :ww])


def to_dtype_grid(unit: np.ndarray, raster: Raster) -> np.ndarray:
    """Round an SR in [0, 1] the way the engine writes it in the source dtype, and read it back."""
    if np.dtype(raster.dtype).kind not in "ui":
        return np.clip(unit, 0.0, 1.0).astype(np.float32)
    dn = raster.contract.from_model(unit * 2.0 - 1.0, raster.dtype)
    return ((raster.contract.to_model(dn) + 1.0) * 0.5).astype(np.float32)


def resize_to(x: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bicubic resize (C, H, W) to ``hw`` (antialiased when shrinking), clipped to [0, 1]."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
    t = F.interpolate(t, size=hw, mode="bicubic", align_corners=False, antialias=True)
    return t[0].clamp(0, 1).numpy()


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------
def load_models(names: Sequence[str], scale: int, device: str) -> list[tuple[str, Any]]:
    """Bicubic first, then each named model (duplicates and explicit bicubic dropped)."""
    from slimdiffsr.models.registry import load_model

    models: list[tuple[str, Any]] = [("bicubic", load_model("bicubic", device=device, scale=scale))]
    for n in names:
        if n == "bicubic" or n.startswith("bicubic-x"):
            continue
        m = load_model(n, device=device)
        if m.scale != scale:
            raise EvaluateError(f"model {n} is x{m.scale} but --scale is {scale}")
        label = getattr(getattr(m, "card", None), "name", None) or Path(n).stem
        if label in dict(models):
            label = f"{label} ({Path(n).name})"
        models.append((label, m))
    return models


def run_model(model: Any, lr: np.ndarray, device: str) -> tuple[np.ndarray, float]:
    """LR (C, h, w) in [0, 1] -> SR (C, sh, sw) in [0, 1] and the forward time in seconds."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(lr))[None].to(device) * 2 - 1
    with torch.inference_mode():
        if x.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        y = model(x)
        if y.is_cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    sr = ((y.float().clamp(-1, 1) + 1) * 0.5)[0].cpu().numpy()
    return sr, dt


# ------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------
@dataclass
class Results:
    """Per-method, per-image metric values, plus what was skipped and noted."""

    metrics: list[str]
    per_image: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def add(self, method: str, image: str, values: dict[str, float]) -> None:
        self.per_image.setdefault(method, {})[image] = values

    def columns(self) -> list[str]:
        cols: list[str] = []
        for rows in self.per_image.values():
            for v in rows.values():
                cols.extend(k for k in v if k not in cols)
        order = {m: i for i, m in enumerate(list(ALL_METRICS) + ["improvement", "omission"])}
        order["hallucination"] = len(order)
        order["seconds"] = len(order) + 1
        return sorted(cols, key=lambda c: order.get(c, len(order) + 2))

    def means(self) -> dict[str, dict[str, float]]:
        """Mean over images per method; inf values (identical images) are excluded from PSNR."""
        out: dict[str, dict[str, float]] = {}
        for method, rows in self.per_image.items():
            out[method] = {}
            for c in self.columns():
                vals = [r[c] for r in rows.values() if c in r and math.isfinite(r[c])]
                if vals:
                    out[method][c] = float(np.mean(vals))
        return out

    def to_json(self) -> dict[str, Any]:
        means = self.means()

        def clean(v: float) -> float | str:
            return v if math.isfinite(v) else str(v)

        by_sensor_means = {}
        groups = self.info.get("sensors") or {}
        for g in dict.fromkeys(groups.values()):
            by_sensor_means[g] = {}
            for m, rows in self.per_image.items():
                sel = [v for i, v in rows.items() if groups.get(i) == g]
                cols = {c for v in sel for c in v}
                by_sensor_means[g][m] = {
                    c: float(np.mean([v[c] for v in sel if c in v and math.isfinite(v[c])]))
                    for c in sorted(cols)
                    if any(c in v and math.isfinite(v[c]) for v in sel)
                }
        return {
            **self.info,
            "by_sensor": by_sensor_means,
            "metrics": self.metrics,
            "lower_is_better": sorted(c for c in self.columns() if c in LOWER_BETTER),
            "skipped": self.skipped,
            "notes": self.notes,
            "methods": {
                m: {
                    "mean": means[m],
                    "images": {
                        i: {k: clean(v) for k, v in vals.items()} for i, vals in rows.items()
                    },
                }
                for m, rows in self.per_image.items()
            },
        }


def _arrow(c: str) -> str:
    return "" if c == "seconds" else ("↓" if c in LOWER_BETTER else "↑")


def _fmt(c: str, v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if c in ("psnr", "musiq") or c == "consistency":
        return f"{v:.2f}"
    if c == "seconds":
        return f"{v:.3f}"
    return f"{v:.4f}"


def format_table(res: Results, baseline: str | None = "bicubic") -> str:
    """Methods x mean metrics as aligned text, plus a difference row per method vs baseline."""
    means = res.means()
    cols = res.columns()
    head = ["method", "n"] + [f"{c}{_arrow(c)}" for c in cols]
    rows = []
    for m, vals in means.items():
        rows.append([m, str(len(res.per_image[m]))] + [_fmt(c, vals.get(c)) for c in cols])
    if baseline in means:
        for m, vals in means.items():
            if m == baseline:
                continue
            diff = []
            for c in cols:
                a, b = vals.get(c), means[baseline].get(c)
                diff.append("-" if a is None or b is None else f"{a - b:+.4g}")
            rows.append([f"  {m} - {baseline}", ""] + diff)
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    line = lambda r: "  ".join(  # noqa: E731
        s.ljust(w) if i == 0 else s.rjust(w) for i, (s, w) in enumerate(zip(r, widths))
    )
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


# ------------------------------------------------------------------------------------------------
# Modes
# ------------------------------------------------------------------------------------------------
@dataclass
class Sample:
    """What the report needs to draw one image's side-by-side crops."""

    name: str
    hr: np.ndarray | None
    lr: np.ndarray | None
    sr: dict[str, np.ndarray]


def _hr_files(a: argparse.Namespace) -> list[Path]:
    from slimdiffsr.data.datasets import find_images, load_split

    if a.split:
        val = load_split(a.split).val
        missing = [f for f in val if not f.is_file()]
        if missing:
            raise EvaluateError(
                f"{len(missing)} validation files of {a.split} are missing, e.g. {missing[0]}"
            )
        # sorted like find_images, so image k gets the seed build_paired_val gives it
        files = find_images(val) if val else []
    else:
        files = find_images(a.hr)
    if not files:
        raise EvaluateError("no HR images to evaluate")
    return files[: a.max_images] if a.max_images else files


def _note_errors(res: Results, scorer: Scorer) -> None:
    for m, err in scorer.errors.items():
        res.notes.append(f"{m} could not score some images (nan, left out of the mean): {err}")


SENSORS = {"landsat8": "Landsat-8 (30 m)", "naip": "NAIP (1 m)", "neon": "NEON aerial (0.1 m)"}


def sensor_of(path: Path) -> str:
    """The sensor group of an image, from its path (``SENSORS`` folders), else its folder."""
    parts = [q.lower() for q in Path(path).parts]
    for key, label in SENSORS.items():
        if key in parts or any(q.startswith(key) for q in parts[-1:]):
            return label
    return Path(path).parent.name


def _image_keys(files: Sequence[Path]) -> list[str]:
    """File stems, prefixed by the parent folder where two files share a stem."""
    stems = [f.stem for f in files]
    return [f"{f.parent.name}/{f.stem}" if stems.count(f.stem) > 1 else f.stem for f in files]


def evaluate_models(
    a: argparse.Namespace, echo: Callable[[str], None]
) -> tuple[Results, list[Sample]]:
    """Model-driven mode: HR -> seeded degradation -> every model (bicubic first) -> metrics."""
    import torch

    from slimdiffsr.contract import ValueContract
    from slimdiffsr.data.degradation import DegradationConfig, degrade

    device = str(resolve_device(a.device))
    files = _hr_files(a)
    cfg = DegradationConfig.preset(a.degradation)
    models = load_models(a.model, a.scale, device)
    learned = [m for _, m in models[1:]]
    card = getattr(learned[0], "card", None) if learned else None
    contract = None
    if card is not None and card.value_contract:
        contract = ValueContract.from_dict(card.value_contract)
    n_bands = len(card.bands) if card is not None and card.bands else None
    bands = _parse_bands(a.bands) or _default_bands(files[0], n_bands)
    scorer = Scorer(a.metric_list, a.scale, a.crop_border, a.weights_dir, device)
    res = Results(a.metric_list, skipped=dict(scorer.skipped))
    res.info = {
        "mode": "model",
        "scale": a.scale,
        "degradation": cfg.name,
        "seed": a.seed,
        "bands": bands,
        "crop_border": a.crop_border,
        "max_size": a.max_size,
        "images": [str(f) for f in files],
        "models": {label: getattr(m, "model_hash", "") for label, m in models},
        "params": {label: sum(p.numel() for p in m.parameters()) for label, m in models},
        "device": device,
    }
    res.notes.append(
        f"HR cropped to a multiple of {a.scale}"
        + (f" after a centre crop to at most {a.max_size}px" if a.max_size else "")
        + f"; LR = degrade(HR, '{cfg.name}', seed {a.seed} + image index); "
        "SR rounded to the source dtype before scoring."
    )
    samples: list[Sample] = []
    keys = _image_keys(files)
    res.info["sensors"] = {keys[k]: sensor_of(f) for k, f in enumerate(files)}
    floats = False
    for k, f in enumerate(files):
        import rasterio

        with rasterio.open(f) as src:
            is_float = np.dtype(src.dtypes[0]).kind == "f"
        # a float raster is already in [0, 1] (e.g. the Landsat-8 VRTs of the training split,
        # which carry the raster-wide percentile mapping): the card's integer contract is not for it
        r = read_raster(f, bands, None if is_float else contract)
        floats = floats or is_float
        hr = centre_crop(r.unit, a.max_size, a.scale)
        gen = torch.Generator().manual_seed(a.seed + k)
        lr = degrade(torch.from_numpy(hr)[None], a.scale, cfg, gen)[0].numpy()
        lr_up = None
        srs: dict[str, np.ndarray] = {}
        for label, model in models:
            sr, dt = run_model(model, lr, device)
            sr = to_dtype_grid(sr, r)
            if label == "bicubic":
                lr_up = sr
            # consistency in 8-bit DN: integer rasters by their contract, [0, 1] floats x 255
            vr = 255.0 if is_float else r.value_range
            vals = scorer.score(sr, hr, lr, lr_up, vr)
            vals["seconds"] = dt
            res.add(label, keys[k], vals)
            if k < a.report_images:
                srs[label] = sr
            if not a.quiet:
                shown = ", ".join(f"{c} {_fmt(c, v)}" for c, v in vals.items())
                echo(f"[{k + 1}/{len(files)}] {keys[k]} {label}: {shown}")
        if k < a.report_images:
            samples.append(Sample(keys[k], hr, lr, srs))
    if floats:
        res.notes.append("float rasters are read as [0, 1]; their consistency is x 255 (8-bit DN)")
    _note_errors(res, scorer)
    return res, samples


def by_sensor(res: Results) -> dict[str, Results]:
    """Split the results by sensor group (``res.info['sensors']``), keeping method order."""
    groups = res.info.get("sensors") or {}
    out: dict[str, Results] = {}
    for g in dict.fromkeys(groups.values()):
        sub = Results(res.metrics)
        for method, rows in res.per_image.items():
            for img, vals in rows.items():
                if groups.get(img) == g:
                    sub.add(method, img, vals)
        out[g] = sub
    return out


def _by_stem(folder: str) -> dict[str, Path]:
    from slimdiffsr.data.datasets import find_images

    out: dict[str, Path] = {}
    for f in find_images(folder):
        if f.stem in out:
            raise EvaluateError(f"two files named {f.stem} in {folder}: {out[f.stem]} and {f}")
        out[f.stem] = f
    return out


def evaluate_folders(
    a: argparse.Namespace, echo: Callable[[str], None]
) -> tuple[Results, list[Sample]]:
    """Paired (--sr with --hr) or no-reference (--sr alone) mode over files matched by name."""
    device = str(resolve_device(a.device))
    sr_files = _by_stem(a.sr)
    hr_files = _by_stem(a.hr[0]) if a.hr else {}
    lr_files = _by_stem(a.lr) if a.lr else {}
    if len(a.hr) > 1:
        raise EvaluateError("paired mode takes one --hr folder")
    names = sorted(sr_files)
    if hr_files:
        missing = [n for n in names if n not in hr_files]
        if missing:
            raise EvaluateError(
                f"{len(missing)} SR files have no HR of the same name: {missing[:5]}"
            )
    if lr_files:
        missing = [n for n in names if n not in lr_files]
        if missing:
            raise EvaluateError(
                f"{len(missing)} SR files have no LR of the same name: {missing[:5]}"
            )
    if a.max_images:
        names = names[: a.max_images]
    label = a.name or Path(a.sr).resolve().name
    scorer = Scorer(
        a.metric_list, a.scale, a.crop_border, a.weights_dir, device, a.seam_tile,
        has_hr=bool(hr_files), has_lr=bool(lr_files),
    )  # fmt: skip
    res = Results(a.metric_list, skipped=dict(scorer.skipped))
    res.info = {
        "mode": "paired" if hr_files else "no-reference",
        "scale": a.scale,
        "crop_border": a.crop_border,
        "sr": str(a.sr),
        "hr": str(a.hr[0]) if a.hr else None,
        "lr": a.lr,
        "images": names,
        "device": device,
    }
    bands = _parse_bands(a.bands)
    resized: list[str] = []
    samples: list[Sample] = []
    for k, n in enumerate(names):
        b = bands or _default_bands(sr_files[n], None)
        sr_r = read_raster(sr_files[n], b)
        sr, hr, lr = sr_r.unit, None, None
        if hr_files:
            hr = read_raster(hr_files[n], b).unit
            if hr.shape[0] != sr.shape[0]:
                raise EvaluateError(f"{n}: SR has {sr.shape[0]} bands, HR {hr.shape[0]}")
            if sr.shape != hr.shape:
                resized.append(
                    f"{n} ({sr.shape[-2]}x{sr.shape[-1]} -> {hr.shape[-2]}x{hr.shape[-1]})"
                )
                sr = resize_to(sr, hr.shape[-2:])
        if lr_files:
            lr = read_raster(lr_files[n], b).unit
            want = (lr.shape[-2] * a.scale, lr.shape[-1] * a.scale)
            if sr.shape[-2:] != want:
                sr = resize_to(sr, want) if hr is None else sr
            if sr.shape[-2:] != want:
                raise EvaluateError(
                    f"{n}: SR {sr.shape[-2:]} is not LR {lr.shape[-2:]} x{a.scale}; check --scale"
                )
        lr_up = resize_to(lr, sr.shape[-2:]) if lr is not None else None
        vals = scorer.score(sr, hr, lr, lr_up, sr_r.value_range)
        res.add(label, n, vals)
        if k < a.report_images:
            samples.append(Sample(n, hr, lr, {label: sr}))
        if not a.quiet:
            echo(
                f"[{k + 1}/{len(names)}] {n}: "
                + ", ".join(f"{c} {_fmt(c, v)}" for c, v in vals.items())
            )
    if resized:
        res.notes.append(
            f"{len(resized)} SR images differ in size from their HR and were bicubic-resized to it: "
            + ", ".join(resized[:5])
            + (" ..." if len(resized) > 5 else "")
        )
    _note_errors(res, scorer)
    return res, samples


# ------------------------------------------------------------------------------------------------
# Report: markdown + CSV table, quality-vs-speed plot, side-by-side crops
# ------------------------------------------------------------------------------------------------
def _png(arr: np.ndarray, path: Path) -> None:
    """Save (C, H, W) or (H, W) in [0, 1] as an 8-bit PNG (first three bands as RGB)."""
    from PIL import Image

    a = np.asarray(arr)
    if a.ndim == 3:
        a = a[:3] if a.shape[0] >= 3 else np.repeat(a[:1], 3, axis=0)
        a = a.transpose(1, 2, 0)
    Image.fromarray((np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def _heat(m: np.ndarray, vmax: float) -> np.ndarray:
    """A (H, W) error map -> (3, H, W) black-red-yellow picture, saturating at ``vmax``."""
    t = np.clip(m / max(vmax, 1e-12), 0, 1)
    return np.stack([np.clip(2 * t, 0, 1), np.clip(2 * t - 1, 0, 1), np.zeros_like(t)])


def write_report(res: Results, samples: list[Sample], folder: Path, scale: int) -> list[Path]:
    """Write table.md, table.csv, quality_speed.png and crops/<image>.png; returns the paths."""
    from slimdiffsr.metrics.rs import consistency_map

    folder.mkdir(parents=True, exist_ok=True)
    means = res.means()
    cols = res.columns()
    out: list[Path] = []
    params = res.info.get("params", {})
    csv_path = folder / "table.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "images"] + cols + (["params_m"] if params else []))
        for m, vals in means.items():
            extra = [params.get(m, 0) / 1e6] if params else []
            w.writerow([m, len(res.per_image[m])] + [vals.get(c, "") for c in cols] + extra)
    out.append(csv_path)
    md = [f"# Evaluation ({res.info.get('mode')} mode, x{scale})", ""]
    heads = [f"{c} {_arrow(c)}".strip() for c in cols] + (["Params M"] if params else [])
    md.append("| Method | " + " | ".join(heads) + " |")
    md.append("|---|" + "---|" * len(heads))
    for m, vals in means.items():
        cells = [_fmt(c, vals.get(c)) for c in cols]
        cells += [f"{params.get(m, 0) / 1e6:.2f}"] if params else []
        md.append(f"| {m} | " + " | ".join(cells) + " |")
    md += [
        "",
        f"Mean over images; `seconds` is the model forward time per image "
        f"(device {res.info.get('device', '?')}).",
    ]
    md += [f"- {n}" for n in res.notes]
    md += [f"- skipped {k}: {v}" for k, v in res.skipped.items()]
    md += ["", "```", " ".join(res.info.get("command", [])), "```"]
    (folder / "table.md").write_text("\n".join(md) + "\n")
    out.append(folder / "table.md")

    quality = next((c for c in ("lpips", "dists", "psnr", "niqe") if c in cols), None)
    if quality and "seconds" in cols:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
        for m, vals in means.items():
            if quality in vals and "seconds" in vals:
                ax.scatter(vals["seconds"], vals[quality])
                ax.annotate(m, (vals["seconds"], vals[quality]), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("seconds per image (log)")
        ax.set_ylabel(f"{quality} {_arrow(quality)}")
        ax.set_title(f"quality vs speed (device {res.info.get('device', '?')})")
        fig.tight_layout()
        fig.savefig(folder / "quality_speed.png")
        plt.close(fig)
        out.append(folder / "quality_speed.png")

    crops = folder / "crops"
    for s in samples:
        crops.mkdir(exist_ok=True)
        panels = []
        order = sorted(s.sr, key=lambda m: m != "bicubic")
        panels += [s.sr[m] for m in order]
        if s.hr is not None:
            panels.append(s.hr)
        learned = [m for m in order if m != "bicubic"] or order
        if s.lr is not None:
            sr = s.sr[learned[0]]
            if sr.shape[-2:] == (s.lr.shape[-2] * scale, s.lr.shape[-1] * scale):
                cmap = consistency_map(sr, s.lr, scale)
                big = np.kron(cmap, np.ones((scale, scale)))
                panels.append(_heat(big, 8 / 255))
        h = min(p.shape[-2] for p in panels)
        w = min(p.shape[-1] for p in panels)
        side = min(h, w, 192)
        r0, c0 = (h - side) // 2, (w - side) // 2
        tiles = []
        for p in panels:
            t = p if p.ndim == 3 else p[None]
            t = t[:3] if t.shape[0] >= 3 else np.repeat(t[:1], 3, axis=0)
            tiles.append(t[:, r0 : r0 + side, c0 : c0 + side])
            tiles.append(np.ones((3, side, 4), dtype=np.float32))
        path = crops / f"{s.name.replace('/', '_')}.png"
        _png(np.concatenate(tiles[:-1], axis=2), path)
        out.append(path)
    if samples:
        legend = " | ".join(
            sorted(samples[0].sr, key=lambda m: m != "bicubic")
            + (["HR"] if samples[0].hr is not None else [])
            + (["|down(SR)-LR| (0..8/255)"] if samples[0].lr is not None else [])
        )
        (crops / "README.md").write_text(f"Panels, left to right: {legend}\n")
    return out


# ------------------------------------------------------------------------------------------------
# Entry point
# ------------------------------------------------------------------------------------------------
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
