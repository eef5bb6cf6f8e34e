"""One run of the engine: setup, the tile loop, writing finished rows, finishing the files.

The loop, per column chunk and in row-major tile order: read a tile's LR window with its halo
(mirrored at the raster edge), fill nodata from valid neighbours, map values to [-1, 1] with the
raster's value contract, run a batch through the model, crop the halo, and add the tile times
its blending weight to a strip of output rows. When a tile row is done, the output blocks no
later tile touches are converted back to raster values, masked, written and measured (QA).
Memory is bounded by the strip (``memory_mb``), the batch and GDAL's block cache.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
import torch
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioIOError

from slimdiffsr import __version__
from slimdiffsr.contract import ValueContract
from slimdiffsr.engine import raster_io as rio_io
from slimdiffsr.engine.blend import StripAccumulator
from slimdiffsr.engine.manifest import Manifest, input_identity, settings_key
from slimdiffsr.engine.qa import (
    ConsistencyStats,
    SeamStats,
    consistency_map,
    enforce_lr_consistency,
    window_sums,
    write_json_atomic,
)
from slimdiffsr.engine.tiling import (
    Tile,
    TileGrid,
    Window,
    aligned_end,
    column_chunks,
    output_block_size,
)
from slimdiffsr.errors import (
    CancelledError,
    DiskSpaceError,
    GeographicCRSWarning,
    InputError,
    ModelError,
    OutOfMemoryError,
    OutputExistsError,
)

if TYPE_CHECKING:  # pragma: no cover
    from slimdiffsr.engine.run import Upscaler

ProgressFn = Callable[[int, int, str], None]
CancelFn = Callable[[], bool]

GDAL_CACHE_MB = 128  # GDAL's block cache (input and output blocks) during a run
WRITE_COLS = 2048  # HR columns converted and written at a time (bounds the temporaries)
QA_THRESHOLD = 0.02  # a tile is flagged when its mean consistency exceeds 2 % of the value range

_COLORINTERP_NAMES = {
    "red": ColorInterp.red,
    "green": ColorInterp.green,
    "blue": ColorInterp.blue,
    "gray": ColorInterp.gray,
    "grey": ColorInterp.gray,
    "alpha": ColorInterp.alpha,
}


def _model_band_count(model: Any) -> int | None:
    """Bands the model needs: its card's band list, else its config's ``in_channels``."""
    card = getattr(model, "card", None)
    if card is not None and card.bands:
        return len(card.bands)
    cfg = getattr(model, "config", None)
    n = getattr(cfg, "in_channels", None)
    if n is None and isinstance(cfg, dict):
        n = cfg.get("in_channels")
    return int(n) if n else None


# -- nodata filling ----------------------------------------------------------------------------
def fill_invalid(
    data: np.ndarray, valid: np.ndarray, fallback: np.ndarray, iterations: int
) -> np.ndarray:
    """Give invalid pixels the mean of their valid 8-neighbours, growing ``iterations`` rings.

    A pixel's fill depends only on pixels within its distance to valid data, so it does not
    depend on where the tile was cut. Pixels still empty get ``fallback`` (raster-wide band means).
    Returns float32 (bands, h, w).
    """
    out = data.astype(np.float32, copy=True)
    out[:, ~valid] = 0.0
    filled = valid.copy()
    h, w = valid.shape
    for _ in range(iterations):
        holes = ~filled
        if not holes.any():
            break
        f = filled.astype(np.float32)
        vp = np.pad(out * f, ((0, 0), (1, 1), (1, 1)))
        fp = np.pad(f, 1)
        s = np.zeros_like(out)
        n = np.zeros_like(f)
        for dy in range(3):
            for dx in range(3):
                s += vp[:, dy : dy + h, dx : dx + w]
                n += fp[dy : dy + h, dx : dx + w]
        new = holes & (n > 0)
        if not new.any():
            break
        out[:, new] = s[:, new] / n[new]
        filled |= new
    if not filled.all():
        out[:, ~filled] = fallback.astype(np.float32)[:, None]
    return out


# -- results -----------------------------------------------------------------------------------
@dataclass
class UpscaleResult:
    """Where the output went, and a summary (sizes, CRS, timing, consistency, seams)."""

    output: Path
    qa_output: Path | None
    qa_json: Path | None
    summary: dict[str, Any]

    def summary_line(self) -> str:
        s = self.summary
        w, h = s["input_size"]
        W, H = s["output_size"]
        mc, n = s.get("mean_consistency"), s["tiles_computed"]
        cons = (
            f"mean |down(SR)-LR| {mc:.3g}"
            if mc is not None and math.isfinite(mc)
            else "no valid pixels"
        )
        return (
            f"{w}x{h} -> {W}x{H} px, {len(s['bands'])} bands {s['dtype']}, {s['crs']}, "
            f"x{s['scale']} {s['model']}, {n} tile{'' if n == 1 else 's'} in {s['time_s']:.1f} s "
            f"({s['tiles_per_s']:.2f} tiles/s), {cons}"
        )


# -- one job -----------------------------------------------------------------------------------
def select_bands(
    src: Any, bands: list[int] | None, card_bands: Sequence[str], needed: int | None
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
        picked = []
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
    if isinstance(value_contract, ValueContract):
        return value_contract
    if isinstance(value_contract, dict):
        return ValueContract.from_dict(value_contract)
    if isinstance(value_contract, str) and value_contract.strip():
        return ValueContract.parse(value_contract)
    if card is not None and card.value_contract:
        return ValueContract.from_dict(card.value_contract)
    return ValueContract.for_dtype(dtype)


class Job:
    """State of one run: input, grid, output files, statistics. Use :meth:`execute` once."""

    def __init__(self, up: Upscaler, inp: Path, out: Path, **opts: Any) -> None:
        self.up = up
        self.inp, self.out = inp, out
        self.o = opts
        self.progress: ProgressFn | None = opts["progress"]
        self.cancel: CancelFn | None = opts["cancel"]
        self.partial = rio_io.partial_path(out)
        self.manifest_path = rio_io.partial_path(out, ".partial.json")
        self.qa_out = out.with_name(f"{out.stem}_qa.tif") if opts["qa"] else None
        self.qa_json = out.with_name(f"{out.stem}_qa.json") if opts["qa"] else None
        self.qa_partial = rio_io.partial_path(self.qa_out) if self.qa_out else None
        self.cog_partial = rio_io.partial_path(out, ".cog.tif")

    # -- checks before any work --------------------------------------------------------------
    def _check_paths(self) -> None:
        if not self.inp.exists():
            raise InputError(f"input not found: {self.inp}")
        targets = [self.out] + ([self.qa_out, self.qa_json] if self.qa_out else [])
        for t in targets:
            if t.resolve() == self.inp.resolve():
                raise OutputExistsError(f"refusing to overwrite the input {self.inp}")
            if t.exists() and not self.o["overwrite"]:
                raise OutputExistsError(f"{t} exists; pass overwrite (--overwrite) to replace it")
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DiskSpaceError(f"cannot create the output folder {self.out.parent}: {e}") from e

    def _report(self, done: int, total: int, message: str) -> None:
        if self.progress is not None:
            self.progress(done, total, message)

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel():
            raise CancelledError("cancelled")

    # -- setup -------------------------------------------------------------------------------
    def _setup(self, src: Any) -> None:
        up, o = self.up, self.o
        self.in_dtype = rio_io.check_dtype(src)
        card = up.card
        needed = _model_band_count(up.model)
        self.bands = select_bands(src, o["bands"], card.bands if card else [], needed)
        self.C = len(self.bands)
        self.mask_kind = rio_io.mask_kind(src, self.bands)
        out_dtype = o["out_dtype"]
        if out_dtype in (None, "", "same"):
            out_dtype = self.in_dtype if self.in_dtype in rio_io.OUTPUT_DTYPES else "float32"
        out_dtype = np.dtype(out_dtype).name
        if out_dtype not in rio_io.OUTPUT_DTYPES:
            raise InputError(f"output dtype must be one of {rio_io.OUTPUT_DTYPES}, got {out_dtype}")
        self.out_dtype = out_dtype
        # region of interest
        if o["roi_window"] is not None and o["roi_bounds"] is not None:
            raise InputError("give a pixel ROI or map bounds, not both")
        if o["roi_window"] is not None:
            self.region = rio_io.window_from_pixels(src, o["roi_window"])
        elif o["roi_bounds"] is not None:
            self.region = rio_io.window_from_bounds(src, o["roi_bounds"], o["roi_crs"])
        else:
            self.region = rio_io.raster_window(src)
        if src.crs is not None and src.crs.is_geographic:
            warnings.warn(
                f"{self.inp.name} is in a geographic CRS ({src.crs.to_string()}): its pixels are "
                "not square on the ground; consider reprojecting to a projected CRS first",
                GeographicCRSWarning,
                stacklevel=4,
            )
        # value contract, fitted once per raster; nodata fill values from the same overview
        contract = resolve_contract(o["value_contract"], card, self.in_dtype)
        need_sample = not contract.fitted or self.mask_kind != "none" or self.in_dtype[0] == "f"
        sample = rio_io.read_overview(src, self.bands) if need_sample else None
        if sample is not None and not contract.fitted:
            contract = contract.fit(sample[0], sample[1])
        self.contract = contract
        lo = contract.from_model(-np.ones((self.C, 1, 1), np.float32), "float32").ravel()
        hi = contract.from_model(np.ones((self.C, 1, 1), np.float32), "float32").ravel()
        self.value_range = np.maximum(hi - lo, 1e-12)
        self._dn_scale = ((hi - lo) / 2).astype(np.float32).reshape(-1, 1, 1)
        self._dn_offset = ((hi + lo) / 2).astype(np.float32).reshape(-1, 1, 1)
        self.fill_values = (lo + hi) / 2
        if sample is not None and sample[1].any():
            self.fill_values = np.array(
                [float(sample[0][b][sample[1]].astype(np.float64).mean()) for b in range(self.C)]
            )
        # output layout
        s = up.scale
        self.grid = TileGrid(self.region, up.tile, up.overlap, s, up.margin)
        self.block = output_block_size(s)
        strip_rows = -(-(self.grid.tile_height * s + self.block) // self.block) * self.block
        max_cols = max(self.block, up.memory_mb * 2**20 // (self.C * 4 * strip_rows))
        self.chunks = column_chunks(self.grid, max_cols, self.block)
        self.strip_rows = strip_rows
        self.nodata = src.nodata if self.mask_kind == "nodata" else None
        self.alpha = self.mask_kind == "alpha"
        self.meta = rio_io.BandMeta.of(src, self.bands)
        count = self.C + (1 if self.alpha else 0)
        self.profile = rio_io.output_profile(
            src,
            region=self.region,
            scale=s,
            count=count,
            dtype=self.out_dtype,
            nodata=self.nodata,
            block=self.block,
            compress=o["compress"],
            photometric=rio_io.photometric_for(self.meta, self.out_dtype),
            alpha=self.alpha,
        )
        unc = rio_io.estimate_bytes(
            self.profile["width"], self.profile["height"], count, self.out_dtype
        )
        rio_io.check_free_space(self.out.parent, unc, o["compress"] != "none", o["cog"])
        self.settings = {
            "input": input_identity(self.inp),
            "model": up.model_name,
            "model_hash": up.model_hash,
            "scale": s,
            "bands": self.bands,
            "tile": up.tile,
            "overlap": up.overlap,
            "halo": up.halo,
            "margin": up.margin,
            "precision": up.precision,
            "consistency": [up.consistency, up.consistency_iterations],
            "region": self.region.key(),
            "contract": contract.to_dict(),
            "out_dtype": self.out_dtype,
            "compress": o["compress"],
            "chunks": [(c.x0, c.x1) for c in self.chunks],
            "qa": bool(self.qa_out),
            "version": __version__,
        }

    def _tags(self, src: Any) -> dict[str, str]:
        up = self.up
        tags = {k: v for k, v in src.tags().items() if not k.startswith("TIFFTAG_")}
        r = self.region
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
                "SLIMDIFFSR_BANDS": ",".join(str(b) for b in self.bands),
                "SLIMDIFFSR_VALUE_CONTRACT": json.dumps(self.contract.to_dict()),
                "SLIMDIFFSR_SOURCE": self.inp.name,
                "SLIMDIFFSR_ROI": f"{r.col_off},{r.row_off},{r.width},{r.height}",
            }
        )
        return tags

    # -- per tile ----------------------------------------------------------------------------
    def _prepare(self, src: Any, tile: Tile) -> np.ndarray | None:
        """LR tile with halo in model units (C, h, w); None when its core has no valid pixel."""
        h = self.up.halo
        data, valid = rio_io.read_padded(src, self.bands, tile.read_window(h))
        th, tw = tile.window.shape
        if not valid[h : h + th, h : h + tw].any():
            return None
        if not valid.all():
            data = fill_invalid(data, valid, self.fill_values, iterations=h)
        return self.contract.to_model(data)

    def _weight(self, tile: Tile, device: torch.device | None = None) -> Any:
        """The tile's 2D blending weight (HR, numpy; a tensor on ``device`` if given).

        Interior tiles share a handful of weight profiles, so a small cache serves them all.
        """
        wr, wc = self.grid.row_weight(tile.row), self.grid.col_weight(tile.col)
        key = (hash(wr.tobytes()), hash(wc.tobytes()), str(device))
        w = self._weights.get(key)
        if w is None:
            if len(self._weights) > 64:
                self._weights.clear()
            w = np.outer(wr, wc).astype(np.float32)
            if device is not None:
                w = torch.from_numpy(w).to(device)
            self._weights[key] = w
        return w

    def _run_batch(
        self, tiles: list[Tile], prepared: list[np.ndarray | None]
    ) -> dict[Tile, tuple[np.ndarray, np.ndarray | None]]:
        """Model on the non-empty tiles: each one's HR core (C, sh, sw) and its weight.

        On the CPU the weight is applied while adding to the strip; on a GPU it is applied there
        and only the weighted core is copied back (weight None).
        """
        up, s, h = self.up, self.up.scale, self.up.halo
        idx = [i for i, p in enumerate(prepared) if p is not None]
        if not idx:
            return {}
        x = np.stack([prepared[i] for i in idx])
        sr = up.forward(x)
        if sr.shape[-2:] != (x.shape[-2] * s, x.shape[-1] * s) or sr.shape[1] != self.C:
            raise ModelError(
                f"model returned {tuple(sr.shape)} for input {tuple(x.shape)} at scale x{s}"
            )
        out: dict[Tile, tuple[np.ndarray, np.ndarray | None]] = {}
        with torch.inference_mode():
            if up.consistency:
                lr = torch.from_numpy(x).to(sr.device)
                sr = enforce_lr_consistency(sr, lr, s, up.consistency_iterations)
            th, tw = tiles[idx[0]].window.shape
            core = sr[:, :, h * s : (h + th) * s, h * s : (h + tw) * s]
            on_cpu = sr.device.type == "cpu"
            for j, i in enumerate(idx):
                t = tiles[i]
                if on_cpu:
                    out[t] = (core[j].numpy(), self._weight(t))
                else:
                    out[t] = ((core[j] * self._weight(t, sr.device)).cpu().numpy(), None)
        return out

    # -- writing finished rows ---------------------------------------------------------------
    def _to_dn(self, x: np.ndarray) -> np.ndarray:
        """Model units -> output values, in place on the (released) strip rows: the contract's
        ``from_model`` as one affine map, then rounding and the output dtype's range."""
        if self.contract.clip:
            np.clip(x, -1.0, 1.0, out=x)
        x *= self._dn_scale
        x += self._dn_offset
        dt = np.dtype(self.out_dtype)
        if dt.kind in "ui":
            info = np.iinfo(dt)
            np.rint(x, out=x)
            np.clip(x, info.min, info.max, out=x)
        return x.astype(dt)

    def _write_piece(
        self, src: Any, dst: Any, qa_dst: Any, chunk: int, x0: int, y0: int, data: np.ndarray
    ) -> None:
        """Convert finished rows (model units) to raster values, mask, write, update the QA."""
        s = self.up.scale
        _, hh, ww = data.shape
        lr_win = Window(
            self.region.row_off + y0 // s, self.region.col_off + x0 // s, hh // s, ww // s
        )
        lr, valid_lr = rio_io.read_region(src, self.bands, lr_win)
        out = self._to_dn(data)
        all_valid = bool(valid_lr.all())
        valid = None if all_valid else np.repeat(np.repeat(valid_lr, s, axis=0), s, axis=1)
        if self.nodata is not None:
            nd = self.nodata
            if np.isnan(nd):
                if valid is not None:
                    out[:, ~valid] = np.nan
            else:
                clash = out == nd
                if valid is not None:
                    clash &= valid[None]
                if clash.any():  # a valid pixel must not read as nodata: move it by one step
                    if out.dtype.kind in "ui":
                        nudged = nd - 1 if nd >= np.iinfo(out.dtype).max else nd + 1
                    else:
                        nudged = np.nextafter(out.dtype.type(nd), out.dtype.type(np.inf))
                    out[clash] = nudged
                if valid is not None:
                    out[:, ~valid] = nd
        hr_win = rio_io.to_rio(Window(y0, x0, hh, ww))
        if self.alpha:
            amax = np.iinfo(out.dtype).max if out.dtype.kind in "ui" else 255
            a = np.full((1, hh, ww), amax, dtype=out.dtype)
            if valid is not None:
                a[0, ~valid] = 0
            dst.write(np.concatenate([out, a]), window=hr_win)
        else:
            dst.write(out, window=hr_win)
        if self.mask_kind == "mask":
            m = np.full((hh, ww), 255, np.uint8) if valid is None else np.where(valid, 255, 0)
            dst.write_mask(m.astype(np.uint8), window=hr_win)
        self._qa_rows(chunk, out, lr, valid_lr, y0, x0, qa_dst, valid)

    def _qa_rows(
        self,
        chunk: int,
        out: np.ndarray,
        lr: np.ndarray,
        valid_lr: np.ndarray,
        y0: int,
        x0: int,
        qa_dst: Any,
        valid: np.ndarray | None,
    ) -> None:
        """Consistency map, its statistics, per-tile sums and seam statistics for written rows."""
        s = self.up.scale
        diff = consistency_map(out, lr, s, None if valid_lr.all() else valid_lr)
        self.cons_stats.update(diff)
        ly0, lx0 = y0 // s, x0 // s
        if qa_dst is not None:
            win = Window(ly0, lx0, diff.shape[1], diff.shape[2])
            qa_dst.write(diff, window=rio_io.to_rio(win))
        self.seam_stats.update(out, y0, x0, valid)
        # per-tile sums over the tiles' cores (LR, region-relative)
        grid, (_, h, w) = self.grid, diff.shape
        keys, wins = [], []
        for r, rs in enumerate(grid.row_starts):
            r0, r1 = max(rs, ly0), min(rs + grid.tile_height, ly0 + h)
            if r1 <= r0:
                continue
            for c in self.chunks[chunk].cols:
                cs = grid.col_starts[c]
                c0, c1 = max(cs, lx0), min(cs + grid.tile_width, lx0 + w)
                if c1 <= c0:
                    continue
                keys.append((r, c))
                wins.append((r0 - ly0, r1 - ly0, c0 - lx0, c1 - lx0))
        for (r, c), (sums, n) in zip(keys, window_sums(diff, wins)):
            key = self.manifest.tile_key(chunk, grid.tile_at(r, c).window.key())
            if key in self.manifest.tiles:
                continue
            acc = self.tile_acc.setdefault(key, [0.0] * (self.C + 1))
            for b in range(self.C):
                acc[b] += sums[b]
            acc[self.C] += n

    def _qa_from_partial(self, src: Any, dst: Any) -> None:
        """On resume: QA of the rows already on disk, read back from the partial (no model)."""
        s = self.up.scale
        for ch in self.chunks:
            done = self.manifest.rows(ch.index)
            for y0 in range(0, done, self.block):
                hh = min(self.block, done - y0)
                win = Window(y0, ch.x0, hh, ch.x1 - ch.x0)
                out = dst.read(list(range(1, self.C + 1)), window=rio_io.to_rio(win))
                lr_win = Window(
                    self.region.row_off + y0 // s,
                    self.region.col_off + ch.x0 // s,
                    hh // s,
                    win.width // s,
                )
                lr, valid_lr = rio_io.read_region(src, self.bands, lr_win)
                valid = None
                if not valid_lr.all():
                    valid = np.repeat(np.repeat(valid_lr, s, axis=0), s, axis=1)
                self._qa_rows(ch.index, out, lr, valid_lr, y0, ch.x0, None, valid)

    # -- main --------------------------------------------------------------------------------
    def execute(self) -> UpscaleResult:
        t0 = time.perf_counter()
        self._check_paths()
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), rio_io.open_input(self.inp) as src:
            self._setup(src)
            key = settings_key(self.settings)
            manifest = None
            if self.o["resume"] and self.partial.exists():
                manifest = Manifest.load(self.manifest_path, key)
                if manifest is None:
                    warnings.warn(
                        f"{self.partial.name} was made with other settings; starting over",
                        UserWarning,
                        stacklevel=3,
                    )
            if manifest is None or (self.qa_partial and not self.qa_partial.exists()):
                rio_io.remove_quietly(self.partial, self.manifest_path)
                if self.qa_partial:
                    rio_io.remove_quietly(self.qa_partial)
                manifest = Manifest(self.manifest_path, key, self.settings)
            self.manifest = manifest
            self.cons_stats = ConsistencyStats(self.value_range)
            self.seam_stats = SeamStats(*self.grid.tile_borders())
            self.tile_acc: dict[str, list[float]] = {}
            self._weights: dict[tuple[int, int, str], Any] = {}
            self.counts = {"computed": 0, "skipped": 0, "reused": 0}
            dst = qa_dst = None
            ok = False
            try:
                resuming = bool(manifest.rows_done)
                try:
                    if resuming:
                        dst = rasterio.open(self.partial, "r+")
                    else:
                        dst = rasterio.open(self.partial, "w", **self.profile)
                        dst.update_tags(**self._tags(src))
                        rio_io.apply_band_meta(dst, self.meta, self.alpha)
                    if self.qa_partial is not None:
                        if resuming:
                            qa_dst = rasterio.open(self.qa_partial, "r+")
                        else:
                            qa_prof = rio_io.qa_profile(
                                src,
                                region=self.region,
                                count=self.C,
                                block=self.block // self.up.scale,
                            )
                            qa_dst = rasterio.open(self.qa_partial, "w", **qa_prof)
                            qa_dst.update_tags(
                                SLIMDIFFSR_QA="|down(SR) - LR| per band, input units"
                            )
                except RasterioIOError as e:
                    raise DiskSpaceError(f"cannot write {self.partial}: {e}") from e
                if resuming:
                    self._qa_from_partial(src, dst)
                self._loop(src, dst, qa_dst)
                ok = True
            except RasterioIOError as e:
                raise DiskSpaceError(f"writing {self.partial} failed: {e}") from e
            except MemoryError as e:
                if isinstance(e, OutOfMemoryError):
                    raise
                raise OutOfMemoryError(
                    "out of memory; lower memory_mb (--memory-mb), --tile or --batch-size"
                ) from e
            finally:
                closed = True
                for d in (dst, qa_dst):
                    if d is not None:
                        try:
                            d.close()
                        except Exception:  # noqa: BLE001 - a failed close means a broken partial
                            closed = False
                if not ok:
                    if self.o["resume"] and closed and manifest.rows_done:
                        manifest.save()
                    else:
                        self._cleanup()
            return self._finish(t0)

    def _loop(self, src: Any, dst: Any, qa_dst: Any) -> None:
        grid, s, man = self.grid, self.up.scale, self.manifest
        n_rows = grid.shape[0]
        total = sum(n_rows * len(ch.cols) for ch in self.chunks)
        done = 0
        self._report(0, total, "starting")
        for ch in self.chunks:
            y_done = man.rows(ch.index)
            todo: list[Tile] = []
            for r in range(n_rows):
                bottom = (grid.row_starts[r] + grid.tile_height) * s
                for c in ch.cols:
                    if bottom <= y_done:  # finished in an earlier run: never recomputed
                        self.counts["reused"] += 1
                        done += 1
                    else:
                        todo.append(grid.tile_at(r, c))
            if not todo:
                continue
            strip = StripAccumulator(self.C, ch.x0, ch.x1, y_done, self.strip_rows, self.block)
            last_col = ch.cols[-1]
            for i in range(0, len(todo), self.up.batch_size):
                self._check_cancel()
                batch = todo[i : i + self.up.batch_size]
                results = self._run_batch(batch, [self._prepare(src, t) for t in batch])
                for t in batch:
                    if t in results:
                        strip.add(grid.hr_window(t), *results.pop(t))
                        self.counts["computed"] += 1
                    else:
                        self.counts["skipped"] += 1
                    done += 1
                    if t.col == last_col:
                        self._finalize_rows(src, dst, qa_dst, ch.index, strip, t.row)
                self._report(done, total, f"tile row {batch[-1].row + 1}/{n_rows}")

    def _finalize_rows(
        self, src: Any, dst: Any, qa_dst: Any, chunk: int, strip: StripAccumulator, row: int
    ) -> None:
        """Write the block rows no later tile touches; record finished tiles in the manifest.

        Written block by block and in pieces of ``WRITE_COLS`` columns, so the conversion's
        temporaries stay small however wide the chunk is.
        """
        hr_h = self.grid.hr_shape()[0]
        y0 = strip.y0
        y_end = aligned_end(self.grid.row_final_after(row), y0, self.block, hr_h)
        if y_end <= y0:
            return
        piece = max(self.block, WRITE_COLS // self.block * self.block)
        for y in range(y0, y_end, self.block):
            rows = strip.rows(y, min(y + self.block, y_end))
            for x in range(strip.x0, strip.x1, piece):
                x_end = min(x + piece, strip.x1)
                part = rows[:, :, x - strip.x0 : x_end - strip.x0]
                self._write_piece(src, dst, qa_dst, chunk, x, y, part)
        strip.release(y_end)
        self.manifest.rows_done[chunk] = y_end
        s = self.up.scale
        prefix = f"{chunk}:"
        for r, rs in enumerate(self.grid.row_starts):
            if (rs + self.grid.tile_height) * s > y_end:
                break
            for c in self.chunks[chunk].cols:
                key = prefix + self.grid.tile_at(r, c).window.key()
                if key not in self.manifest.tiles:
                    self.manifest.tiles[key] = self.tile_acc.pop(key, [0.0] * (self.C + 1))

    def _cleanup(self) -> None:
        rio_io.remove_quietly(self.partial, self.manifest_path, self.cog_partial)
        if self.qa_partial:
            rio_io.remove_quietly(self.qa_partial)

    def _finish(self, t0: float) -> UpscaleResult:
        o = self.o
        try:
            if o["cog"]:
                resampling = (
                    "NEAREST" if self.out_dtype != "float32" and self.nodata is None else "AVERAGE"
                )
                rio_io.write_cog(self.partial, self.cog_partial, o["compress"], resampling)
                rio_io.remove_quietly(self.partial)
                rio_io.replace_atomic(self.cog_partial, self.out)
            else:
                rio_io.replace_atomic(self.partial, self.out)
            if self.qa_partial is not None and self.qa_out is not None:
                rio_io.replace_atomic(self.qa_partial, self.qa_out)
        except (OSError, RasterioIOError) as e:
            self._cleanup()
            raise DiskSpaceError(f"could not finish {self.out}: {e}") from e
        rio_io.remove_quietly(self.manifest_path)
        elapsed = time.perf_counter() - t0
        summary = self._summary(elapsed)
        if self.qa_json is not None:
            write_json_atomic(self.qa_json, self._qa_report(summary))
        return UpscaleResult(self.out, self.qa_out, self.qa_json, summary)

    def _tile_flags(self) -> tuple[int, int]:
        """Tiles whose mean consistency exceeds the threshold (fraction of the value range)."""
        merged: dict[str, list[float]] = {}
        for key, acc in self.manifest.tiles.items():
            m = merged.setdefault(key.split(":", 1)[1], [0.0] * (self.C + 1))
            for i, v in enumerate(acc):
                m[i] += v
        flagged = total = 0
        thr = self.o["qa_threshold"]
        for acc in merged.values():
            n = acc[self.C]
            if n <= 0:  # no valid pixel: skipped as nodata
                continue
            total += 1
            rel = np.asarray(acc[: self.C]) / n / self.value_range
            flagged += int(float(rel.mean()) > thr)
        return flagged, total

    def _summary(self, elapsed: float) -> dict[str, Any]:
        up, r = self.up, self.region
        crs = self.profile["crs"]
        crs_text = "no CRS"
        if crs is not None:
            epsg = crs.to_epsg()
            crs_text = f"EPSG:{epsg}" if epsg else (crs.to_string()[:60])
        cons = self.cons_stats.summary()
        flagged, n_tiles = self._tile_flags()
        computed = self.counts["computed"]
        return {
            "input": str(self.inp),
            "output": str(self.out),
            "qa_output": str(self.qa_out) if self.qa_out else None,
            "model": up.model_name,
            "model_hash": up.model_hash,
            "scale": up.scale,
            "bands": self.bands,
            "dtype": self.out_dtype,
            "input_size": [r.width, r.height],
            "output_size": [self.profile["width"], self.profile["height"]],
            "roi": [r.col_off, r.row_off, r.width, r.height],
            "crs": crs_text,
            "value_contract": self.contract.describe(),
            "device": str(up.device),
            "precision": up.precision,
            "tile": up.tile,
            "overlap": up.overlap,
            "halo": up.halo,
            "tiles": computed + self.counts["skipped"] + self.counts["reused"],
            "tiles_computed": computed,
            "tiles_skipped_nodata": self.counts["skipped"],
            "tiles_reused": self.counts["reused"],
            "time_s": elapsed,
            "tiles_per_s": computed / elapsed if elapsed > 0 else 0.0,
            "mean_consistency": cons["mean"],
            "consistency_per_band": [b["mean"] for b in cons["per_band"]],
            "tiles_flagged_fraction": flagged / n_tiles if n_tiles else 0.0,
            "seam_ratio": self.seam_stats.summary()["ratio"],
        }

    def _qa_report(self, summary: dict[str, Any]) -> dict[str, Any]:
        flagged, n_tiles = self._tile_flags()
        return {
            "slimdiffsr_version": __version__,
            "output": str(self.out),
            "qa_output": str(self.qa_out),
            "definition": "|mean over each scale x scale block of SR - LR|, per band, input units",
            "model": summary["model"],
            "model_hash": summary["model_hash"],
            "scale": summary["scale"],
            "bands": self.bands,
            "value_contract": self.contract.to_dict(),
            "consistency": self.cons_stats.summary(),
            "tiles": {
                "total": n_tiles,
                "flagged": flagged,
                "fraction_flagged": flagged / n_tiles if n_tiles else 0.0,
                "threshold_fraction_of_range": self.o["qa_threshold"],
            },
            "seams": self.seam_stats.summary(),
            "lr_consistency_enforced": self.up.consistency,
        }
