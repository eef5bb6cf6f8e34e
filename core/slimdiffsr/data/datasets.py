"""Training and validation data: random HR crops from rasters of any dtype, and fixed splits.

Rasters are read with rasterio and mapped to [0, 1] through the same :class:`ValueContract` the
engine uses for inference (``unit = (DN - low) / (high - low)``), so a model sees identical
numbers in training and in production. Degradation (``degradation``) works in [0, 1] too; the
training step maps both LR and HR to the model's [-1, 1] with ``2 x - 1``.

Randomness is a pure function of ``(seed, epoch, index)``: a crop does not depend on worker count
or on what was drawn before, so a resumed run sees exactly the crops an uninterrupted run would.
"""

from __future__ import annotations

import glob as globlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from slimdiffsr.contract import ValueContract
from slimdiffsr.errors import InputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2", ".vrt", ".img")
SPLIT_VERSION = 1


class DatasetError(InputError):
    """The data cannot serve training: no usable images, crops too large, bad split file."""


# ------------------------------------------------------------------------------------------------
# Finding files
# ------------------------------------------------------------------------------------------------
def find_images(sources: str | Path | Sequence[str | Path]) -> list[Path]:
    """Expand sources into a sorted, de-duplicated list of image files.

    Each source is a folder (searched recursively for ``IMAGE_SUFFIXES``), a glob pattern
    (``data/**/*.tif``), a list file (``.txt``/``.lst``: one path per line, ``#`` comments,
    relative to the list file), a split file (``.json`` from :func:`write_split`: its train
    files) or an image path. Raises :class:`DatasetError` if a source matches nothing.
    """
    if isinstance(sources, str | Path):
        sources = [sources]
    out: list[Path] = []
    for src in sources:
        s = str(src)
        p = Path(s).expanduser()
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
            )
        elif p.is_file() and p.suffix.lower() in (".txt", ".lst"):
            found = [_resolve(line, p.parent) for line in _list_lines(p)]
        elif p.is_file() and p.suffix.lower() == ".json":
            found = load_split(p).train
        elif p.is_file():
            found = [p]
        elif any(ch in s for ch in "*?["):
            found = sorted(
                Path(f) for f in globlib.glob(str(p), recursive=True) if Path(f).is_file()
            )
        else:
            raise DatasetError(
                f"data source {s!r} does not exist (not a folder, file or glob match)"
            )
        if not found:
            raise DatasetError(
                f"data source {s!r} contains no images ({', '.join(IMAGE_SUFFIXES)})"
            )
        out.extend(found)
    return sorted({f.resolve() for f in out})


def _list_lines(p: Path) -> list[str]:
    lines = [ln.split("#", 1)[0].strip() for ln in p.read_text().splitlines()]
    return [ln for ln in lines if ln]


def _resolve(path: str, base: Path) -> Path:
    q = Path(path).expanduser()
    return q if q.is_absolute() else (base / q)


# ------------------------------------------------------------------------------------------------
# Splits
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Split:
    """A fixed train/validation split of image files (absolute paths)."""

    train: list[Path]
    val: list[Path]
    seed: int | None = None
    note: str = ""


def make_split(
    files: Sequence[str | Path],
    val_fraction: float = 0.1,
    seed: int = 0,
    val_patterns: Sequence[str] | None = None,
) -> Split:
    """Split files into train/val, deterministically.

    With ``val_patterns`` (fnmatch on the posix path, e.g. ``*/neon/TEAK/*``) the split is by rule:
    matching files are validation (use it to hold out whole sites or dates, which is what tells
    you about generalisation). Otherwise ``val_fraction`` of the sorted files, chosen by a
    permutation seeded with ``seed``, are validation (at least one when there are >= 2 files).
    """
    paths = sorted({Path(f).resolve() for f in files})
    if not paths:
        raise DatasetError("cannot split an empty file list")
    if val_patterns:
        val = [p for p in paths if any(fnmatch(p.as_posix(), pat) for pat in val_patterns)]
        train = [p for p in paths if p not in set(val)]
    else:
        if not 0.0 <= val_fraction < 1.0:
            raise DatasetError(f"val_fraction must be in [0, 1), got {val_fraction}")
        n_val = round(len(paths) * val_fraction)
        if val_fraction > 0 and len(paths) >= 2:
            n_val = max(1, n_val)
        order = np.random.default_rng(seed).permutation(len(paths))
        val_idx = set(order[:n_val].tolist())
        val = [p for i, p in enumerate(paths) if i in val_idx]
        train = [p for i, p in enumerate(paths) if i not in val_idx]
    if not train:
        raise DatasetError("the split leaves no training images")
    return Split(train, val, seed)


def write_split(path: str | Path, split: Split, root: str | Path | None = None) -> Path:
    """Write a split as JSON; paths are stored relative to ``root`` (itself stored relative to
    the split file when possible) so the file survives moving the project and the data together."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root_abs = Path(root).resolve() if root is not None else None

    def rel(p: Path) -> str:
        if root_abs is not None:
            try:
                return p.resolve().relative_to(root_abs).as_posix()
            except ValueError:
                pass
        return p.resolve().as_posix()

    root_field = None
    if root_abs is not None:
        import os

        root_field = Path(os.path.relpath(root_abs, path.parent.resolve())).as_posix()
    doc = {
        "version": SPLIT_VERSION,
        "root": root_field,
        "seed": split.seed,
        "note": split.note,
        "train": [rel(p) for p in split.train],
        "val": [rel(p) for p in split.val],
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def load_split(path: str | Path) -> Split:
    """Read a split file written by :func:`write_split`; paths come back absolute."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"split file not found: {path}")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"split file {path} is not valid JSON: {e}") from e
    if not isinstance(doc, dict) or "train" not in doc or "val" not in doc:
        raise DatasetError(f"split file {path} needs 'train' and 'val' lists")
    base = path.parent
    if doc.get("root"):
        base = _resolve(doc["root"], path.parent)
    train = [_resolve(p, base).resolve() for p in doc["train"]]
    val = [_resolve(p, base).resolve() for p in doc["val"]]
    return Split(train, val, doc.get("seed"), doc.get("note", ""))


# ------------------------------------------------------------------------------------------------
# Reading rasters
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RasterInfo:
    """What the dataset needs to know about one usable raster."""

    path: Path
    height: int
    width: int
    count: int
    dtype: str
    contract: ValueContract


def _open(path: Path):
    import rasterio

    return rasterio.open(path)


def inspect_raster(
    path: Path, bands: Sequence[int] | None, contract: ValueContract | None
) -> RasterInfo:
    """Read a raster's header (and, for percentile contracts, a decimated sample to fit it)."""
    with _open(path) as src:
        if bands is not None:
            bad = [b for b in bands if not 1 <= b <= src.count]
            if bad:
                raise DatasetError(f"{path}: bands {bad} out of range 1..{src.count}")
        dtype = src.dtypes[0]
        vc = contract if contract is not None else ValueContract.for_dtype(dtype)
        if not vc.fitted:
            idx = list(bands) if bands is not None else list(range(1, src.count + 1))
            f = max(1, max(src.height, src.width) // 512)
            shape = (len(idx), max(1, src.height // f), max(1, src.width // f))
            sample = src.read(idx, out_shape=shape)
            valid = src.dataset_mask(out_shape=shape[1:]) > 0
            vc = vc.fit(sample, valid)
        return RasterInfo(path, src.height, src.width, src.count, dtype, vc)


def read_unit(
    info: RasterInfo, bands: Sequence[int] | None, window: tuple[int, int, int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read (C, h, w) float32 in [0, 1] and its (h, w) validity mask; ``window`` = (row, col, h, w)."""
    from rasterio.windows import Window

    with _open(info.path) as src:
        idx = list(bands) if bands is not None else list(range(1, src.count + 1))
        win = Window(window[1], window[0], window[3], window[2]) if window else None
        dn = src.read(idx, window=win)
        valid = src.dataset_mask(window=win) > 0
    unit = (info.contract.to_model(dn) + 1.0) * 0.5
    return np.ascontiguousarray(unit, dtype=np.float32), valid


# ------------------------------------------------------------------------------------------------
# Random-crop dataset
# ------------------------------------------------------------------------------------------------
def _item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index])


def pad_reflect101(x: np.ndarray, size: int) -> np.ndarray:
    """Pad (C, h, w) at bottom/right to at least ``size`` x ``size``, mirroring without repeating
    the edge (OpenCV's BORDER_REFLECT_101, numpy ``reflect``)."""
    ph, pw = max(0, size - x.shape[-2]), max(0, size - x.shape[-1])
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if min(x.shape[-2:]) > 1 else "edge"
    pad = [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(x, pad, mode=mode)


class RasterPatchDataset(Dataset):
    """Random square HR crops from a set of rasters, as float32 (C, crop, crop) in [0, 1].

    Args:
        sources: folder(s), glob(s), list file(s), a split ``.json`` (its train files) or paths.
        crop_size: crop side in HR pixels (method: 256).
        bands: 1-based band indices to read (e.g. ``[1, 2, 3]`` for RGB from RGBN); ``None`` = all,
            which requires every raster to have the same band count.
        hflip: random horizontal flip with odds 1/2 (the method uses no rotations).
        rot90: also a random rotation by k * 90 degrees (with ``hflip``: all eight symmetries of
            the square). Nadir imagery has no "up", so this is free data for remote sensing.
        pad: images smaller than the crop are reflect-101 padded; with ``pad=False`` they raise.
        value_contract: mapping of raster values to [0, 1]; ``None`` = the dtype's natural contract
            (uint8 0-255, uint16/int16 0-10000, float 0-1), as the engine does.
        repeats: crops per image per epoch (``len = repeats * images``).
        seed: crops are a pure function of ``(seed, epoch, index)``; see :meth:`set_epoch`.
        min_valid: a crop with a smaller fraction of valid (not nodata) pixels is redrawn, up to
            ``max_tries`` times.
        cache: keep decoded images in memory (per worker); fast for small rasters. Without it,
            each crop is a windowed read.
    Raises:
        DatasetError: no usable images; bands out of range or inconsistent; crop larger than an
            image with ``pad=False``.
    """

    def __init__(
        self,
        sources: str | Path | Sequence[str | Path],
        crop_size: int = 256,
        bands: Sequence[int] | None = None,
        hflip: bool = True,
        rot90: bool = False,
        pad: bool = True,
        value_contract: ValueContract | None = None,
        repeats: int = 1,
        seed: int = 0,
        min_valid: float = 0.95,
        max_tries: int = 10,
        cache: bool = True,
    ) -> None:
        if crop_size < 1:
            raise DatasetError(f"crop_size must be >= 1, got {crop_size}")
        if repeats < 1:
            raise DatasetError(f"repeats must be >= 1, got {repeats}")
        self.crop_size = int(crop_size)
        self.bands = list(bands) if bands is not None else None
        self.hflip = hflip
        self.rot90 = rot90
        self.pad = pad
        self.repeats = int(repeats)
        self.seed = int(seed)
        self.epoch = 0
        self.min_valid = float(min_valid)
        self.max_tries = int(max_tries)
        self.cache = cache
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        files = find_images(sources)
        infos, skipped = [], []
        for f in files:
            try:
                infos.append(inspect_raster(f, self.bands, value_contract))
            except DatasetError:
                raise
            except Exception as e:  # unreadable or unsupported files are skipped, loudly
                skipped.append(f"{f} ({type(e).__name__}: {e})")
        for s in skipped:
            log.warning("skipping unusable image %s", s)
        if not infos:
            detail = f"; skipped: {skipped[:3]}" if skipped else ""
            raise DatasetError(f"no usable images among {len(files)} files{detail}")
        if self.bands is None:
            counts = sorted({i.count for i in infos})
            if len(counts) > 1:
                raise DatasetError(
                    f"images have different band counts {counts}; choose bands, e.g. bands=[1, 2, 3]"
                )
        largest = max(min(i.height, i.width) for i in infos)
        if self.crop_size > largest:
            raise DatasetError(
                f"crop {self.crop_size} is larger than every image (largest short side {largest}); "
                "lower crop_size"
            )
        if not pad:
            small = [i for i in infos if min(i.height, i.width) < self.crop_size]
            if small:
                i = small[0]
                raise DatasetError(
                    f"crop {self.crop_size} is larger than {len(small)} image(s), e.g. {i.path} "
                    f"({i.height}x{i.width}); lower crop_size or allow padding"
                )
        self.infos: list[RasterInfo] = infos
        self.skipped = skipped

    @property
    def channels(self) -> int:
        return len(self.bands) if self.bands is not None else self.infos[0].count

    def __len__(self) -> int:
        return len(self.infos) * self.repeats

    def set_epoch(self, epoch: int) -> None:
        """Select the crops of an epoch (like ``DistributedSampler.set_epoch``)."""
        self.epoch = int(epoch)

    def _full(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in self._cache:
            data = read_unit(self.infos[i], self.bands)
            if not self.cache:
                return data
            self._cache[i] = data
        return self._cache[i]

    def _crop(self, i: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        info, c = self.infos[i], self.crop_size
        h, w = info.height, info.width
        r = int(rng.integers(0, max(0, h - c) + 1))
        q = int(rng.integers(0, max(0, w - c) + 1))
        ch, cw = min(c, h), min(c, w)
        if self.cache:
            full, valid = self._full(i)
            x, m = full[:, r : r + ch, q : q + cw], valid[r : r + ch, q : q + cw]
        else:
            x, m = read_unit(info, self.bands, (r, q, ch, cw))
        return pad_reflect101(x, c), float(m.mean()) if m.size else 0.0

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.sample(index, self.epoch)

    def sample(self, index: int, epoch: int) -> torch.Tensor:
        """The crop for ``(index, epoch)``: a pure function of them and ``seed`` (exact resume)."""
        i = index % len(self.infos)
        rng = _item_rng(self.seed, epoch, index)
        best, best_valid = None, -1.0
        for _ in range(self.max_tries):
            x, frac = self._crop(i, rng)
            if frac > best_valid:
                best, best_valid = x, frac
            if frac >= self.min_valid:
                break
        assert best is not None
        if self.hflip and rng.random() < 0.5:
            best = best[:, :, ::-1]
        if self.rot90:
            best = np.rot90(best, int(rng.integers(0, 4)), axes=(1, 2))
        return torch.from_numpy(np.ascontiguousarray(best))


# ------------------------------------------------------------------------------------------------
# Paired validation set
# ------------------------------------------------------------------------------------------------
class PairedDataset(Dataset):
    """Fixed (LR, HR) pairs in [0, 1], degraded once; items are dicts ``lr``, ``hr``, ``name``."""

    def __init__(self, pairs: list[dict[str, Any]], scale: int, degradation: str) -> None:
        self.pairs = pairs
        self.scale = scale
        self.degradation = degradation

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.pairs[index]


def build_paired_val(
    sources: str | Path | Sequence[str | Path],
    scale: int,
    config: Any = None,
    seed: int = 0,
    crop_size: int | None = 256,
    bands: Sequence[int] | None = None,
    value_contract: ValueContract | None = None,
    max_images: int | None = None,
) -> PairedDataset:
    """Build a fixed validation set: centre crops, each degraded once with ``seed + index``.

    ``crop_size`` None keeps whole images (cropped to a multiple of ``scale``); smaller images are
    reflect-101 padded. Each image has its own generator, so adding images does not change the
    others. ``config`` is a ``DegradationConfig`` (default: the RS preset). Returns
    :class:`PairedDataset` with ``lr`` (C, H/s, W/s), ``hr`` (C, H, W), float32 in [0, 1].
    """
    from slimdiffsr.data.degradation import DegradationConfig, degrade

    cfg = config if config is not None else DegradationConfig.rs()
    files = find_images(sources)
    if max_images is not None:
        files = files[:max_images]
    pairs: list[dict[str, Any]] = []
    for k, f in enumerate(files):
        info = inspect_raster(f, bands, value_contract)
        x, _ = read_unit(info, bands)
        if crop_size is not None:
            x = pad_reflect101(x, crop_size)
            r0 = (x.shape[-2] - crop_size) // 2
            c0 = (x.shape[-1] - crop_size) // 2
            x = x[:, r0 : r0 + crop_size, c0 : c0 + crop_size]
        hh, ww = (x.shape[-2] // scale) * scale, (x.shape[-1] // scale) * scale
        if hh == 0 or ww == 0:
            raise DatasetError(f"{f} is smaller than the scale {scale}")
        hr = torch.from_numpy(np.ascontiguousarray(x[:, :hh, :ww]))
        gen = torch.Generator().manual_seed(seed + k)
        lr = degrade(hr[None], scale, cfg, gen)[0]
        pairs.append({"lr": lr, "hr": hr, "name": f.stem})
    if not pairs:
        raise DatasetError("no validation images")
    channels = {p["hr"].shape[0] for p in pairs}
    if len(channels) > 1:
        raise DatasetError(
            f"validation images have different band counts {sorted(channels)}; set bands"
        )
    return PairedDataset(pairs, scale, cfg.name)


def collate_pairs(items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Stack same-size pairs into a batch (validation with a fixed crop size)."""
    items = list(items)
    return {
        "lr": torch.stack([i["lr"] for i in items]),
        "hr": torch.stack([i["hr"] for i in items]),
        "name": [i["name"] for i in items],
    }


__all__ = [
    "DatasetError",
    "PairedDataset",
    "RasterInfo",
    "RasterPatchDataset",
    "Split",
    "build_paired_val",
    "collate_pairs",
    "find_images",
    "inspect_raster",
    "load_split",
    "make_split",
    "pad_reflect101",
    "read_unit",
    "write_split",
]
