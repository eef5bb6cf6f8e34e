"""Planning a run: which bands, which value mapping, which output layout, decided once.

``make_plan`` looks at the open input and the model once, before any tile is read, and returns a
frozen :class:`Plan`: the bands fed to the model, the value contract fitted raster-wide (from an
overview, never per tile), the tile grid and column chunks, the output profile, tags and the
settings that key a resumable run. The tile loop (``engine.loop``) and the writer
(``engine.writer``) only read it. No torch here: planning runs the same for every backend.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.enums import ColorInterp

from slimdiffsr import __version__
from slimdiffsr.contract import ValueContract
from slimdiffsr.engine import raster_io as rio_io
from slimdiffsr.engine.manifest import input_identity
from slimdiffsr.engine.tiling import Chunk, TileGrid, Window, column_chunks, output_block_size
from slimdiffsr.errors import GeographicCRSWarning, InputError, ModelError

ProgressFn = Callable[[int, int, str], None]
CancelFn = Callable[[], bool]

QA_THRESHOLD = 0.02  # a tile is flagged when its mean consistency exceeds 2 % of the value range

_COLORINTERP_NAMES = {
    "red": ColorInterp.red,
    "green": ColorInterp.green,
    "blue": ColorInterp.blue,
    "gray": ColorInterp.gray,
    "grey": ColorInterp.gray,
    "alpha": ColorInterp.alpha,
}


@dataclass(frozen=True)
class RunOptions:
    """Per-raster options of one run (what ``Upscaler.run`` takes besides the paths)."""

    bands: tuple[int, ...] | None = None
    roi_window: tuple[int, int, int, int] | None = None
    roi_bounds: tuple[float, float, float, float] | None = None
    roi_crs: Any = None
    value_contract: str | dict[str, Any] | ValueContract | None = None
    out_dtype: str | None = None
    qa: bool = False
    qa_threshold: float = QA_THRESHOLD
    cog: bool = False
    overwrite: bool = False
    resume: bool = False
    compress: str = "deflate"
    progress: ProgressFn | None = None
    cancel: CancelFn | None = None


@dataclass(frozen=True, eq=False)
class Plan:
    """Everything decided before the first tile; read-only for the loop and the writer."""

    bands: list[int]  # 1-based input bands fed to the model, in model order
    in_dtype: str
    out_dtype: str
    mask_kind: str  # "none" | "nodata" | "alpha" | "mask"
    region: Window
    contract: ValueContract  # fitted: raster values <-> model units
    value_range: np.ndarray  # per band, raster units spanned by model units [-1, 1]
    dn_scale: np.ndarray  # (C, 1, 1): model units -> raster values, times ...
    dn_offset: np.ndarray  # (C, 1, 1): ... plus
    fill_values: np.ndarray  # per band, for pixels with no valid neighbour
    grid: TileGrid
    block: int
    strip_rows: int
    chunks: list[Chunk]
    nodata: float | None
    alpha: bool
    meta: rio_io.BandMeta
    profile: dict[str, Any]
    tags: dict[str, str]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def C(self) -> int:  # noqa: N802 - the band count, as in (C, H, W)
        return len(self.bands)


def model_band_count(model: Any) -> int | None:
    """Bands the model needs: its card's band list, else its config's ``in_channels``."""
    card = getattr(model, "card", None)
    if card is not None and card.bands:
        return len(card.bands)
    cfg = getattr(model, "config", None)
    n = getattr(cfg, "in_channels", None)
    if n is None and isinstance(cfg, dict):
        n = cfg.get("in_channels")
    return int(n) if n else None


def select_bands(
    src: Any, bands: Sequence[int] | None, card_bands: Sequence[str], needed: int | None
) -> list[int]:
    """Resolve the 1-based input bands fed to the model, in model order."""
    count = src.count
    if bands:
        bad = [b for b in bands if not 1 <= b <= count]
        if bad:
            raise InputError(f"band(s) {bad} requested but {src.name} has {count} bands")
        if needed is not None and len(bands) != needed:
            raise ModelError(
                f"the model needs {needed} bands ({', '.join(card_bands) or 'any'}), "
                f"but {len(bands)} were selected"
            )
        return list(bands)
    alpha = rio_io.alpha_band(src)
    candidates = [b for b in range(1, count + 1) if b != alpha]
    if card_bands:
        interp = list(src.colorinterp)
        picked: list[int] = []
        for name in card_bands:
            ci = _COLORINTERP_NAMES.get(str(name).lower())
            idx = next((i + 1 for i, c in enumerate(interp) if ci is not None and c == ci), None)
            if idx is None or idx in picked:
                picked = []
                break
            picked.append(idx)
        if picked:
            return picked
    n = needed if needed is not None else len(candidates)
    if len(candidates) < n:
        raise InputError(
            f"the model needs {n} bands ({', '.join(card_bands) or 'any'}), "
            f"but {src.name} has {len(candidates)} usable band(s)"
        )
    return candidates[:n]


def resolve_contract(
    value_contract: str | dict[str, Any] | ValueContract | None, card: Any, dtype: str
) -> ValueContract:
    """The requested contract, else the model card's, else the dtype's natural range."""
    if isinstance(value_contract, ValueContract):
        return value_contract
    if isinstance(value_contract, dict):
        return ValueContract.from_dict(value_contract)
    if isinstance(value_contract, str) and value_contract.strip():
        return ValueContract.parse(value_contract)
    if card is not None and card.value_contract:
        return ValueContract.from_dict(card.value_contract)
    return ValueContract.for_dtype(dtype)


def _out_dtype(requested: str | None, in_dtype: str) -> str:
    if requested in (None, "", "same"):
        requested = in_dtype if in_dtype in rio_io.OUTPUT_DTYPES else "float32"
    name = np.dtype(requested).name
    if name not in rio_io.OUTPUT_DTYPES:
        raise InputError(f"output dtype must be one of {rio_io.OUTPUT_DTYPES}, got {name}")
    return name


def _region(src: Any, o: RunOptions) -> Window:
    if o.roi_window is not None and o.roi_bounds is not None:
        raise InputError("give a pixel ROI or map bounds, not both")
    if o.roi_window is not None:
        return rio_io.window_from_pixels(src, o.roi_window)
    if o.roi_bounds is not None:
        return rio_io.window_from_bounds(src, o.roi_bounds, o.roi_crs)
    return rio_io.raster_window(src)


def make_plan(src: Any, inp: Path, out: Path, up: Any, o: RunOptions) -> Plan:
    """Decide bands, value mapping and output layout for ``src`` (open) with the engine ``up``."""
    in_dtype = rio_io.check_dtype(src)
    card = up.card
    bands = select_bands(src, o.bands, card.bands if card else [], up.in_bands)
    C = len(bands)
    mask_kind = rio_io.mask_kind(src, bands)
    out_dtype = _out_dtype(o.out_dtype, in_dtype)
    region = _region(src, o)
    if src.crs is not None and src.crs.is_geographic:
        warnings.warn(
            f"{inp.name} is in a geographic CRS ({src.crs.to_string()}): its pixels are "
            "not square on the ground; consider reprojecting to a projected CRS first",
            GeographicCRSWarning,
            stacklevel=4,
        )
    # value contract, fitted once per raster; nodata fill values from the same overview
    contract = resolve_contract(o.value_contract, card, in_dtype)
    need_sample = not contract.fitted or mask_kind != "none" or in_dtype[0] == "f"
    sample = rio_io.read_overview(src, bands) if need_sample else None
    if sample is not None and not contract.fitted:
        contract = contract.fit(sample[0], sample[1])
    lo = contract.from_model(-np.ones((C, 1, 1), np.float32), "float32").ravel()
    hi = contract.from_model(np.ones((C, 1, 1), np.float32), "float32").ravel()
    fill_values = (lo + hi) / 2
    if sample is not None and sample[1].any():
        fill_values = np.array(
            [float(sample[0][b][sample[1]].astype(np.float64).mean()) for b in range(C)]
        )
    # output layout
    s = up.scale
    grid = TileGrid(region, up.tile, up.overlap, s, up.margin)
    block = output_block_size(s)
    strip_rows = -(-(grid.tile_height * s + block) // block) * block
    max_cols = max(block, up.memory_mb * 2**20 // (C * 4 * strip_rows))
    chunks = column_chunks(grid, max_cols, block)
    nodata = src.nodata if mask_kind == "nodata" else None
    alpha = mask_kind == "alpha"
    meta = rio_io.BandMeta.of(src, bands)
    count = C + (1 if alpha else 0)
    profile = rio_io.output_profile(
        src,
        region=region,
        scale=s,
        count=count,
        dtype=out_dtype,
        nodata=nodata,
        block=block,
        compress=o.compress,
        photometric=rio_io.photometric_for(meta, out_dtype),
        alpha=alpha,
    )
    unc = rio_io.estimate_bytes(profile["width"], profile["height"], count, out_dtype)
    rio_io.check_free_space(out.parent, unc, o.compress != "none", o.cog)
    settings = {
        "input": input_identity(inp),
        "model": up.model_name,
        "model_hash": up.model_hash,
        "scale": s,
        "bands": bands,
        "tile": up.tile,
        "overlap": up.overlap,
        "halo": up.halo,
        "margin": up.margin,
        "precision": up.precision,
        "consistency": [up.consistency, up.consistency_iterations],
        "region": region.key(),
        "contract": contract.to_dict(),
        "out_dtype": out_dtype,
        "compress": o.compress,
        "chunks": [(c.x0, c.x1) for c in chunks],
        "qa": bool(o.qa),
        "version": __version__,
    }
    tags = _tags(src, inp, up, bands, contract, region)
    return Plan(
        bands=bands,
        in_dtype=in_dtype,
        out_dtype=out_dtype,
        mask_kind=mask_kind,
        region=region,
        contract=contract,
        value_range=np.maximum(hi - lo, 1e-12),
        dn_scale=((hi - lo) / 2).astype(np.float32).reshape(-1, 1, 1),
        dn_offset=((hi + lo) / 2).astype(np.float32).reshape(-1, 1, 1),
        fill_values=fill_values,
        grid=grid,
        block=block,
        strip_rows=strip_rows,
        chunks=chunks,
        nodata=nodata,
        alpha=alpha,
        meta=meta,
        profile=profile,
        tags=tags,
        settings=settings,
    )


def _tags(
    src: Any, inp: Path, up: Any, bands: list[int], contract: ValueContract, r: Window
) -> dict[str, str]:
    tags = {k: v for k, v in src.tags().items() if not k.startswith("TIFFTAG_")}
    tags.update(
        {
            "TIFFTAG_SOFTWARE": f"SlimDiffSR {__version__}",
            "SLIMDIFFSR_VERSION": __version__,
            "SLIMDIFFSR_MODEL": up.model_name,
            "SLIMDIFFSR_MODEL_HASH": up.model_hash,
            "SLIMDIFFSR_SCALE": str(up.scale),
            "SLIMDIFFSR_TILE": str(up.tile),
            "SLIMDIFFSR_OVERLAP": str(up.overlap),
            "SLIMDIFFSR_HALO": str(up.halo),
            "SLIMDIFFSR_PRECISION": up.precision,
            "SLIMDIFFSR_LR_CONSISTENCY": "enforced" if up.consistency else "off",
            "SLIMDIFFSR_BANDS": ",".join(str(b) for b in bands),
            "SLIMDIFFSR_VALUE_CONTRACT": json.dumps(contract.to_dict()),
            "SLIMDIFFSR_SOURCE": inp.name,
            "SLIMDIFFSR_ROI": f"{r.col_off},{r.row_off},{r.width},{r.height}",
        }
    )
    return tags
