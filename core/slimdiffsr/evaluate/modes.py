"""The three evaluation modes: model-driven (``evaluate_models``), paired and no-reference
(``evaluate_folders``), and the model loading and forward timing they use."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slimdiffsr.devices import resolve_device
from slimdiffsr.evaluate.rasters import (
    _default_bands,
    _parse_bands,
    centre_crop,
    read_raster,
    resize_to,
    to_dtype_grid,
)
from slimdiffsr.evaluate.report import Sample, _fmt
from slimdiffsr.evaluate.scoring import EvaluateError, Results, Scorer


def parse_ensembles(text: str | Sequence[int]) -> list[int]:
    """``"1,8"`` -> [1, 8] (each checked; duplicates dropped, order kept)."""
    from slimdiffsr.engine.ensemble import check_ensemble

    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        return list(dict.fromkeys(check_ensemble(int(v)) for v in items if str(v).strip()))
    except ValueError as e:
        raise EvaluateError(f"--ensemble: {e}") from e


def with_ensembles(
    models: Sequence[tuple[str, Any]], sizes: Sequence[int]
) -> list[tuple[str, Any, int]]:
    """(label, model, ensemble) rows: bicubic once (it is symmetric, an ensemble cannot change
    it), each learned model at each size, labelled ``NAME xN`` for N > 1."""
    rows: list[tuple[str, Any, int]] = []
    for label, m in models:
        for n in [1] if label == "bicubic" else sizes:
            rows.append((label if n == 1 else f"{label} x{n}", m, n))
    return rows


def load_models(names: Sequence[str], scale: int, device: str) -> list[tuple[str, Any]]:
    """Bicubic first, then each named model (duplicates and explicit bicubic dropped)."""
    from slimdiffsr.models.registry import load_model

    models: list[tuple[str, Any]] = [("bicubic", load_model("bicubic", device=device, scale=scale))]
    loaded: list[tuple[str, str, Any]] = []
    for n in dict.fromkeys(names):
        if n == "bicubic" or n.startswith("bicubic-x"):
            continue
        m = load_model(n, device=device)
        if m.scale != scale:
            raise EvaluateError(f"model {n} is x{m.scale} but --scale is {scale}")
        label = getattr(getattr(m, "card", None), "name", None) or Path(n).stem
        loaded.append((label, n, m))
    labels = unique_labels([(label, n) for label, n, _ in loaded])
    return models + [(lb, m) for lb, (_, _, m) in zip(labels, loaded, strict=True)]


def unique_labels(items: Sequence[tuple[str, str]]) -> list[str]:
    """Card names as labels; where several models share one (the checkpoints of one run share the
    card name and the file name), each gets the shortest tail of its path that tells it apart."""
    out = []
    for label, src in items:
        others = [Path(s).parts for lb, s in items if lb == label and s != src]
        if not others:
            out.append(label)
            continue
        parts = Path(src).parts
        k = next(
            (k for k in range(1, len(parts) + 1) if all(o[-k:] != parts[-k:] for o in others)),
            len(parts),
        )
        out.append(f"{label} ({'/'.join(parts[-k:])})")
    return out


def contract_disagreement(models: Sequence[tuple[str, Any]]) -> str | None:
    """Integer HR rasters are read once, with the first model's value contract, so every model
    sees the same pixels; say so when another model declares a different contract (a training
    checkpoint's card can carry its first training file's, e.g. [0, 1] for a float tile)."""
    cards = [(lb, getattr(getattr(m, "card", None), "value_contract", None)) for lb, m in models]
    cards = [(lb, vc) for lb, vc in cards if vc]
    differ = [lb for lb, vc in cards[1:] if vc != cards[0][1]]
    if not differ:
        return None
    return (
        f"integer HR rasters are read with {cards[0][0]}'s value contract {cards[0][1]}; "
        f"{', '.join(differ)} declare(s) another: list the model whose contract fits the data first"
    )


def run_model(
    model: Any, lr: np.ndarray, device: str, ensemble: int = 1
) -> tuple[np.ndarray, float]:
    """LR (C, h, w) in [0, 1] -> SR (C, sh, sw) in [0, 1] and the forward time in seconds;
    ``ensemble`` > 1 averages that many flipped/rotated copies (``engine.ensemble``)."""
    import torch

    from slimdiffsr.engine.ensemble import self_ensemble

    x = torch.from_numpy(np.ascontiguousarray(lr))[None].to(device) * 2 - 1
    with torch.inference_mode():
        if x.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        y = self_ensemble(model, x, ensemble)
        if y.is_cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    sr = ((y.float().clamp(-1, 1) + 1) * 0.5)[0].cpu().numpy()
    return sr, dt


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
    sizes = parse_ensembles(getattr(a, "ensemble", "1"))
    models = load_models(a.model, a.scale, device)
    runs = with_ensembles(models, sizes)
    learned = [m for _, m in models[1:]]
    card = getattr(learned[0], "card", None) if learned else None
    contract = None
    if card is not None and card.value_contract:
        contract = ValueContract.from_dict(card.value_contract)
    other = contract_disagreement(models[1:])
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
        "models": {label: getattr(m, "model_hash", "") for label, m, _ in runs},
        "params": {label: sum(p.numel() for p in m.parameters()) for label, m, _ in runs},
        "ensemble": {label: n for label, _, n in runs},
        "device": device,
    }
    res.notes.append(
        f"HR cropped to a multiple of {a.scale}"
        + (f" after a centre crop to at most {a.max_size}px" if a.max_size else "")
        + f"; LR = degrade(HR, '{cfg.name}', seed {a.seed} + image index); "
        "SR rounded to the source dtype before scoring."
    )
    if other:
        res.notes.append(other)
        echo(f"warning: {other}")
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
        for label, model, n in runs:
            sr, dt = run_model(model, lr, device, n)
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
