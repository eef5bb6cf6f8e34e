"""Planning a run: which bands, which value mapping, which output layout, decided once.

``make_plan`` looks at the open input and the model once, before any tile is read, and returns a
frozen :class:`Plan`: the output bands (every input band but alpha, in input order, or those of
``bands``), which of them the model super-resolves and which are upsampled bicubically, the value
mapping onto the model's domain chosen raster-wide (from an overview, never per tile), the tile
grid and column chunks, the output profile, tags and the settings that key a resumable run. The
tile loop (``engine.loop``) and the writer (``engine.writer``) only read it. No torch here:
planning runs the same for every backend.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.enums import ColorInterp

from slimdiffsr import __version__
from slimdiffsr.contract import (
    ANY,
    ContractError,
    Domain,
    ValueContract,
    ValueMapping,
    choose_mapping,
    override_mapping,
)
from slimdiffsr.engine import raster_io as rio_io
from slimdiffsr.engine.manifest import input_identity
from slimdiffsr.engine.tiling import Chunk, TileGrid, Window, column_chunks, output_block_size
from slimdiffsr.errors import InputError, ModelError

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
    value_contract: str | dict[str, Any] | ValueContract | None = None  # None/"auto": chosen
    out_dtype: str | None = None
    qa: bool = False
    qa_threshold: float = QA_THRESHOLD
    cog: bool = False
    overwrite: bool = False
    resume: bool = False
    compress: str = "deflate"
    progress: ProgressFn | None = None
    cancel: CancelFn | None = None
    on_preflight: Callable[[Any], None] | None = None  # gets the Preflight before the first tile


@dataclass(frozen=True, eq=False)
class Plan:
    """Everything decided before the first tile; read-only for the loop and the writer."""

    bands: list[int]  # 1-based input bands read and written, in output order
    sr_bands: list[int]  # the bands the model takes, in model order
    sr_pos: list[int]  # their positions in ``bands``
    interp_pos: list[int]  # positions in ``bands`` upsampled bicubically instead
    in_dtype: str
    out_dtype: str
    mask_kind: str  # "none" | "nodata" | "alpha" | "mask"
    region: Window
    domain: Domain
    mapping: ValueMapping  # raster values <-> model units, chosen and fitted raster-wide
    value_range: np.ndarray  # per output band, raster units of its typical range (QA scale)
    dn_scale: np.ndarray  # (C, 1, 1): model units -> raster values, times ...
    dn_offset: np.ndarray  # (C, 1, 1): ... plus (1 and 0 for interpolated bands)
    fill_values: np.ndarray  # per output band, for pixels with no valid neighbour
    grid: TileGrid
    block: int
    strip_rows: int
    chunks: list[Chunk]
    nodata: float | None
    alpha: bool
    meta: rio_io.BandMeta
    band_tags: list[dict[str, str]]
    profile: dict[str, Any]
    tags: dict[str, str]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def contract(self) -> ValueContract:
        return self.mapping.contract

    @property
    def interp_bands(self) -> list[int]:
        return [self.bands[i] for i in self.interp_pos]

    @property
    def clip_to_domain(self) -> bool:
        """Whether model inputs outside [-1, 1] go through residual transfer (see loop)."""
        return self.domain.kind != ANY

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
            f"{Path(str(src.name)).name} has {len(candidates)} usable band(s) but the model "
            f"super-resolves {n} ({', '.join(card_bands) or 'any'}); choose {n} with --bands "
            "(a band may repeat) or use the bicubic model"
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


def choose_bands(
    src: Any, bands: Sequence[int] | None, card_bands: Sequence[str], needed: int | None
) -> tuple[list[int], list[int]]:
    """(output bands, model bands): every band but alpha in input order, the model's among them;
    or the requested ``bands`` in their order, the first ``needed`` of them to the model."""
    if bands:
        bad = [b for b in bands if not 1 <= b <= src.count]
        if bad:
            raise InputError(f"band(s) {bad} requested but {src.name} has {src.count} bands")
        out = list(bands)
        if needed is not None and len(out) < needed:
            raise ModelError(
                f"the model super-resolves {needed} bands ({', '.join(card_bands) or 'any'}), "
                f"but only {len(out)} were selected with --bands"
            )
        return out, out[:needed] if needed is not None else out
    alpha = rio_io.alpha_band(src)
    sr = select_bands(src, None, card_bands, needed)
    out = [b for b in range(1, src.count + 1) if b != alpha]
    return out, sr


def _band_scale(src: Any, bands: list[int]) -> tuple[float | None, float | None]:
    """The raster's own ``DN * scale + offset`` when all model bands share one."""
    scales = {float(src.scales[b - 1]) for b in bands}
    offsets = {float(src.offsets[b - 1]) for b in bands}
    if len(scales) == 1 and len(offsets) == 1:
        return scales.pop(), offsets.pop()
    return None, None


def _mapping(
    src: Any, o: RunOptions, card: Any, domain: Domain, in_dtype: str, sample: Any
) -> ValueMapping:
    vc = o.value_contract
    if vc is None or (isinstance(vc, str) and vc.strip().lower() in ("", "auto")):
        scale, offset = _band_scale(src, sample[2])
        try:
            return choose_mapping(in_dtype, sample[0], sample[1], domain, scale, offset)
        except ContractError as e:
            raise ContractError(f"{Path(str(src.name)).name}: {e}") from e
    contract = resolve_contract(vc, card, in_dtype)
    if not contract.fitted:
        contract = contract.fit(sample[0], sample[1])
    return override_mapping(contract, in_dtype)


def make_plan(src: Any, inp: Path, out: Path | None, up: Any, o: RunOptions) -> Plan:
    """Decide bands, value mapping and output layout for ``src`` (open) with the engine ``up``.

    ``out`` None plans without checking the output folder's free space (a preflight).
    """
    in_dtype = rio_io.check_dtype(src)
    card = up.card
    domain = Domain.of_card(card)
    bands, sr_bands = choose_bands(src, o.bands, card.bands if card else [], up.in_bands)
    C = len(bands)
    sr_pos = [bands.index(b) for b in sr_bands]
    interp_pos = [i for i in range(C) if i not in sr_pos]
    mask_kind = rio_io.mask_kind(src, bands)
    out_dtype = _out_dtype(o.out_dtype, in_dtype)
    region = _region(src, o)
    # the value mapping, chosen once per raster from an overview; fill values from the same
    data, valid = rio_io.read_overview(src, bands)
    mapping = _mapping(src, o, card, domain, in_dtype, (data[sr_pos], valid, sr_bands))
    lo = np.zeros(C, np.float64)
    hi = np.zeros(C, np.float64)
    ones = np.ones((len(sr_pos), 1, 1), np.float32)
    lo[sr_pos] = mapping.contract.from_model(-ones, "float32").ravel()
    hi[sr_pos] = mapping.contract.from_model(ones, "float32").ravel()
    dn_scale = np.ones(C, np.float32)
    dn_offset = np.zeros(C, np.float32)
    dn_scale[sr_pos] = (hi[sr_pos] - lo[sr_pos]) / 2
    dn_offset[sr_pos] = (hi[sr_pos] + lo[sr_pos]) / 2
    fill_values = (lo + hi) / 2
    value_range = hi - lo
    if valid.any():
        for b in range(C):
            v = data[b][valid].astype(np.float64)
            v = v[np.isfinite(v)]
            if v.size:
                fill_values[b] = float(v.mean())
                if b in interp_pos:
                    p1, p99 = np.percentile(v, [1, 99])
                    value_range[b] = p99 - p1
    # output layout
    s = up.scale
    tile, overlap = up.geometry(region.height, region.width)  # from the memory budget if unset
    grid = TileGrid(region, tile, overlap, s, up.margin, bounds=rio_io.raster_window(src))
    block = output_block_size(s)
    strip_rows = -(-(grid.tile_height * s + block) // block) * block
    max_cols = max(block, up.memory_mb * 2**20 // (C * 4 * strip_rows))
    chunks = column_chunks(grid, max_cols, block)
    nodata = src.nodata if mask_kind == "nodata" else None
    if nodata is None and mask_kind == "none" and in_dtype[0] == "f" and out_dtype[0] == "f":
        nodata = float("nan")  # NaN/inf pixels are invalid on read: they stay NaN, declared
    alpha = mask_kind == "alpha"
    meta = rio_io.BandMeta.of(src, bands)
    methods = ["bicubic" if i in interp_pos else "super-resolved" for i in range(C)]
    meta = rio_io.BandMeta(
        tuple(d or f"band {b} ({m})" for d, b, m in zip(meta.descriptions, bands, methods)),
        meta.colorinterp,
        meta.scales,
        meta.offsets,
        meta.units,
    )
    band_tags = [
        {"SLIMDIFFSR_METHOD": m, "SLIMDIFFSR_SOURCE_BAND": str(b)} for b, m in zip(bands, methods)
    ]
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
    if out is not None:
        unc = rio_io.estimate_bytes(profile["width"], profile["height"], count, out_dtype)
        rio_io.check_free_space(out.parent, unc, o.compress != "none", o.cog)
    settings = {
        "input": input_identity(inp),
        "model": up.model_name,
        "model_hash": up.model_hash,
        "scale": s,
        "bands": bands,
        "bands_sr": sr_bands,
        "tile": grid.tile,
        "overlap": grid.overlap,
        "halo": up.halo,
        "margin": up.margin,
        "precision": up.precision,
        "ensemble": up.ensemble,
        "consistency": [up.consistency, up.consistency_iterations],
        "region": region.key(),
        "mapping": mapping.to_dict(),
        "out_dtype": out_dtype,
        "compress": o.compress,
        "chunks": [(c.x0, c.x1) for c in chunks],
        "qa": bool(o.qa),
        "version": __version__,
    }
    interp = [bands[i] for i in interp_pos]
    tags = _tags(src, inp, up, bands, sr_bands, interp, mapping, region, grid)
    return Plan(
        bands=bands,
        sr_bands=sr_bands,
        sr_pos=sr_pos,
        interp_pos=interp_pos,
        in_dtype=in_dtype,
        out_dtype=out_dtype,
        mask_kind=mask_kind,
        region=region,
        domain=domain,
        mapping=mapping,
        value_range=np.maximum(value_range, 1e-12),
        dn_scale=dn_scale.reshape(-1, 1, 1),
        dn_offset=dn_offset.reshape(-1, 1, 1),
        fill_values=fill_values,
        grid=grid,
        block=block,
        strip_rows=strip_rows,
        chunks=chunks,
        nodata=nodata,
        alpha=alpha,
        meta=meta,
        band_tags=band_tags,
        profile=profile,
        tags=tags,
        settings=settings,
    )


def _tags(
    src: Any,
    inp: Path,
    up: Any,
    bands: list[int],
    sr_bands: list[int],
    interp: list[int],
    mapping: ValueMapping,
    r: Window,
    grid: TileGrid,
) -> dict[str, str]:
    join = lambda bs: ",".join(str(b) for b in bs)  # noqa: E731
    tags = {k: v for k, v in src.tags().items() if not k.startswith("TIFFTAG_")}
    tags.update(
        {
            "TIFFTAG_SOFTWARE": f"SlimDiffSR {__version__}",
            "SLIMDIFFSR_VERSION": __version__,
            "SLIMDIFFSR_MODEL": up.model_name,
            "SLIMDIFFSR_MODEL_HASH": up.model_hash,
            "SLIMDIFFSR_SCALE": str(up.scale),
            "SLIMDIFFSR_TILE": str(grid.tile),
            "SLIMDIFFSR_OVERLAP": str(grid.overlap),
            "SLIMDIFFSR_HALO": str(up.halo),
            "SLIMDIFFSR_PRECISION": up.precision,
            "SLIMDIFFSR_ENSEMBLE": str(up.ensemble),
            "SLIMDIFFSR_LR_CONSISTENCY": "enforced" if up.consistency else "off",
            "SLIMDIFFSR_BANDS": join(bands),
            "SLIMDIFFSR_BANDS_SR": join(sr_bands),
            "SLIMDIFFSR_BANDS_INTERPOLATED": join(interp),
            "SLIMDIFFSR_VALUE_MAPPING": mapping.sentence,
            "SLIMDIFFSR_VALUE_CONTRACT": json.dumps(mapping.contract.to_dict()),
            "SLIMDIFFSR_SOURCE": inp.name,
            "SLIMDIFFSR_ROI": f"{r.col_off},{r.row_off},{r.width},{r.height}",
        }
    )
    return tags
