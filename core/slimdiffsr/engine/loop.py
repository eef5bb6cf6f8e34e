"""One run of the engine: the tile loop, writing finished rows, QA (finishing: ``finish``).

The loop, per column chunk and in row-major tile order: read a tile's LR window with its halo
(mirrored at the raster edge), fill nodata from valid neighbours, map the model's bands to model
units with the plan's value mapping, run a batch through the model step, upsample the other bands
bicubically, and add each tile's HR core times its blending weight to a strip of output rows. When a tile row is done, the output blocks no
later tile touches are converted back to raster values, masked, written and measured (QA).
Memory is bounded by the strip (``memory_mb``), the batch and GDAL's block cache.

The model step is whatever ``engine`` object is passed in (``run.Upscaler`` for torch): the loop
only calls its ``predict(x, halo, (h, w))`` on numpy arrays, so this module never imports torch.

Nothing is clipped (residual transfer): the model sees its input clipped to its domain [-1, 1],
and what the clipping removed comes back upsampled bicubically,
``SR = M(clip(x)) + bicubic(x - clip(x))`` = ``bicubic(x) + [M(clip(x)) - bicubic(clip(x))]``
(bicubic is linear). Identical to ``M(x)`` where the input is in range; highlights and shadows
keep their values and the model adds detail on top.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError

from slimdiffsr import protocol
from slimdiffsr.engine import raster_io as rio_io
from slimdiffsr.engine.blend import StripAccumulator
from slimdiffsr.engine.finish import UpscaleResult, finish
from slimdiffsr.engine.lock import OutputLock, check_replaceable, unique_temp
from slimdiffsr.engine.manifest import Manifest, fsync_path, settings_key
from slimdiffsr.engine.plan import RunOptions
from slimdiffsr.engine.preflight import preflight
from slimdiffsr.engine.qa import (
    ConsistencyStats,
    SeamStats,
    consistency_map,
    window_sums,
)
from slimdiffsr.engine.resample import bicubic_upsample_np
from slimdiffsr.engine.tiling import Tile, Window, aligned_end
from slimdiffsr.engine.writer import Writer, fill_invalid
from slimdiffsr.errors import (
    CancelledError,
    DiskSpaceError,
    InputError,
    OutOfMemoryError,
    OutputExistsError,
)

GDAL_CACHE_MB = 128  # GDAL's block cache (input and output blocks) during a run
WRITE_COLS = 2048  # HR columns converted and written at a time (bounds the temporaries)


class Engine(Protocol):
    """What the loop needs from a loaded model (``run.Upscaler`` is the torch one)."""

    card: Any
    in_bands: int | None
    scale: int
    halo: int
    tile: int
    overlap: int
    margin: int
    batch_size: int
    memory_mb: int
    precision: str
    consistency: bool
    consistency_iterations: int
    model_name: str
    model_hash: str
    device: Any

    def predict(
        self, x: np.ndarray, halo: int | tuple[int, int, int, int], size: tuple[int, int]
    ) -> np.ndarray:
        """(B, C, h, w) model units with ``halo`` context (every side, or top, bottom, left,
        right) -> the HR cores (B, C, s*size[0], s*size[1]), float32."""
        ...


# -- one job -----------------------------------------------------------------------------------
class Job:
    """State of one run: input, plan, output files, statistics. Use :meth:`execute` once."""

    def __init__(self, up: Engine, inp: Path, out: Path, options: RunOptions) -> None:
        self.up = up
        self.inp, self.out = inp, out
        self.o = options
        # temporary files get unique names when the run starts (or come from the journal)
        self.partial: Path | None = None
        self.qa_partial: Path | None = None
        self.cog_partial: Path | None = None
        self.temps: list[Path] = []
        self.manifest_path = out.with_name(protocol.journal_name(out.name))
        self.lock = OutputLock(out)
        self.dst: Any = None
        self.qa_dst: Any = None
        self.qa_out = out.with_name(f"{out.stem}_qa.tif") if options.qa else None
        self.qa_json = out.with_name(f"{out.stem}_qa.json") if options.qa else None
        self._weights: dict[tuple[int, int], np.ndarray] = {}

    # -- checks before any work --------------------------------------------------------------
    def _check_paths(self) -> None:
        if not self.inp.exists():
            raise InputError(f"input not found: {self.inp}")
        if self.out.suffix.lower() not in (".tif", ".tiff"):
            raise InputError(
                f"{self.out}: the output is a GeoTIFF, so its name must end in .tif or .tiff "
                "(convert afterwards with gdal_translate for other formats)"
            )
        targets = [self.out] + ([self.qa_out, self.qa_json] if self.qa_out else [])
        for t in targets:
            if t.resolve() == self.inp.resolve():
                raise OutputExistsError(f"refusing to overwrite the input {self.inp}")
            if t.exists() and not self.o.overwrite:
                raise OutputExistsError(f"{t} exists; pass overwrite (--overwrite) to replace it")
            check_replaceable(t, self.out.parent, raster=t.suffix != ".json")
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DiskSpaceError(f"cannot create the output folder {self.out.parent}: {e}") from e

    def _report(self, done: int, total: int, message: str) -> None:
        if self.o.progress is not None:
            self.o.progress(done, total, message)

    def _check_cancel(self) -> None:
        if self.o.cancel is not None and self.o.cancel():
            raise CancelledError("cancelled")

    # -- per tile ----------------------------------------------------------------------------
    def _prepare(self, src: Any, tile: Tile) -> np.ndarray | None:
        """LR tile with halo (C, h, w): the model's bands in model units (model order first),
        then the interpolated bands in raster units; None when its core has no valid pixel."""
        p, h = self.plan, self.up.halo
        top, _, left, _ = p.grid.halo_sides(tile, h)  # no halo beyond the raster's edges
        data, valid = rio_io.read_padded(src, p.bands, p.grid.read_window(tile, h))
        th, tw = tile.window.shape
        if not valid[top : top + th, left : left + tw].any():
            return None
        if not valid.all():
            data = fill_invalid(data, valid, p.fill_values, iterations=h)
        x = p.contract.to_model(data[p.sr_pos])
        if not p.interp_pos:
            return x
        return np.concatenate([x, data[p.interp_pos].astype(np.float32)])

    def _weight(self, tile: Tile) -> np.ndarray:
        """The tile's 2D blending weight (HR). Interior tiles share a handful of profiles."""
        wr, wc = self.plan.grid.row_weight(tile.row), self.plan.grid.col_weight(tile.col)
        key = (hash(wr.tobytes()), hash(wc.tobytes()))
        w = self._weights.get(key)
        if w is None:
            if len(self._weights) > 64:
                self._weights.clear()
            w = np.outer(wr, wc).astype(np.float32)
            self._weights[key] = w
        return w

    def _bicubic_core(
        self, x: np.ndarray, size: tuple[int, int], sides: tuple[int, int, int, int]
    ) -> np.ndarray:
        """Bicubic HR cores of (B, C, h, w) tiles with context ``sides`` (top, bottom, left,
        right); reads only 2 LR px around the core (the kernel's reach), so the result equals
        upsampling the whole tile."""
        s = self.up.scale
        top, bottom, left, right = sides
        th, tw = size
        mt, mb, ml, mr = (min(2, v) for v in sides)
        part = x[:, :, top - mt : top + th + mb, left - ml : left + tw + mr]
        up = bicubic_upsample_np(part, s)
        return up[:, :, mt * s : (mt + th) * s, ml * s : (ml + tw) * s]

    def _run_batch(
        self, tiles: list[Tile], prepared: list[np.ndarray | None]
    ) -> dict[Tile, np.ndarray]:
        """The model step on the non-empty tiles: each one's HR core (C, sh, sw), in the plan's
        output band order (model bands in model units, interpolated bands in raster units).

        Tiles at the raster's edges have less context (no mirrored halo), so the batch runs as
        groups of equal shape."""
        groups: dict[tuple[int, int, int, int], list[int]] = {}
        for i, t in enumerate(tiles):
            if prepared[i] is not None:
                groups.setdefault(self.plan.grid.halo_sides(t, self.up.halo), []).append(i)
        out: dict[Tile, np.ndarray] = {}
        for sides, idx in groups.items():
            out.update(self._run_group([tiles[i] for i in idx], [prepared[i] for i in idx], sides))
        return out

    def _run_group(
        self, tiles: list[Tile], prepared: list[np.ndarray], sides: tuple[int, int, int, int]
    ) -> dict[Tile, np.ndarray]:
        """:meth:`_run_batch` for tiles of one shape and context."""
        p = self.plan
        idx = list(range(len(tiles)))
        size = tiles[0].window.shape
        batch = np.stack([prepared[i] for i in idx])
        n_sr = len(p.sr_pos)
        x = batch[:, :n_sr]
        xc = np.clip(x, -1.0, 1.0) if p.clip_to_domain else x
        cores = self.up.predict(np.ascontiguousarray(xc), sides, size)
        if xc is not x and (rest := x - xc).any():  # residual transfer: nothing is clipped
            cores = cores + self._bicubic_core(rest, size, sides)
        if p.interp_pos:
            out = np.empty((len(idx), p.C, *cores.shape[-2:]), np.float32)
            out[:, p.sr_pos] = cores
            out[:, p.interp_pos] = self._bicubic_core(batch[:, n_sr:], size, sides)
            cores = out
        elif p.sr_pos != list(range(p.C)):
            out = np.empty_like(cores)
            out[:, p.sr_pos] = cores
            cores = out
        return {tiles[i]: cores[j] for j, i in enumerate(idx)}

    # -- writing finished rows ---------------------------------------------------------------
    def _write_piece(
        self, src: Any, dst: Any, qa_dst: Any, chunk: int, x0: int, y0: int, data: np.ndarray
    ) -> None:
        """Convert finished rows (model units) to raster values, mask, write, update the QA."""
        p, s = self.plan, self.up.scale
        _, hh, ww = data.shape
        lr_win = Window(
            row_off=p.region.row_off + y0 // s,
            col_off=p.region.col_off + x0 // s,
            height=hh // s,
            width=ww // s,
        )
        lr, valid_lr = rio_io.read_region(src, p.bands, lr_win)
        out = self.writer.to_dn(data)
        valid = None if valid_lr.all() else np.repeat(np.repeat(valid_lr, s, axis=0), s, axis=1)
        self.writer.write(
            dst, out, valid, rio_io.to_rio(Window(row_off=y0, col_off=x0, height=hh, width=ww))
        )
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
        s, C = self.up.scale, self.plan.C
        diff = consistency_map(out, lr, s, None if valid_lr.all() else valid_lr)
        self.cons_stats.update(diff)
        ly0, lx0 = y0 // s, x0 // s
        if qa_dst is not None:
            win = Window(row_off=ly0, col_off=lx0, height=diff.shape[1], width=diff.shape[2])
            qa_dst.write(diff, window=rio_io.to_rio(win))
        self.seam_stats.update(out, y0, x0, valid)
        # per-tile sums over the tiles' cores (LR, region-relative)
        grid, (_, h, w) = self.plan.grid, diff.shape
        keys, wins = [], []
        for r, rs in enumerate(grid.row_starts):
            r0, r1 = max(rs, ly0), min(rs + grid.tile_height, ly0 + h)
            if r1 <= r0:
                continue
            for c in self.plan.chunks[chunk].cols:
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
            acc = self.tile_acc.setdefault(key, [0.0] * (C + 1))
            for b in range(C):
                acc[b] += sums[b]
            acc[C] += n

    def _qa_from_partial(self, src: Any, dst: Any) -> None:
        """On resume: QA of the rows already on disk, read back from the partial (no model)."""
        p, s = self.plan, self.up.scale
        for ch in p.chunks:
            done = self.manifest.rows(ch.index)
            for y0 in range(0, done, p.block):
                hh = min(p.block, done - y0)
                win = Window(row_off=y0, col_off=ch.x0, height=hh, width=ch.x1 - ch.x0)
                out = dst.read(list(range(1, p.C + 1)), window=rio_io.to_rio(win))
                lr_win = Window(
                    row_off=p.region.row_off + y0 // s,
                    col_off=p.region.col_off + ch.x0 // s,
                    height=hh // s,
                    width=win.width // s,
                )
                lr, valid_lr = rio_io.read_region(src, p.bands, lr_win)
                valid = None
                if not valid_lr.all():
                    valid = np.repeat(np.repeat(valid_lr, s, axis=0), s, axis=1)
                self._qa_rows(ch.index, out, lr, valid_lr, y0, ch.x0, None, valid)

    # -- main --------------------------------------------------------------------------------
    def execute(self) -> UpscaleResult:
        try:
            return self._execute()
        except RasterioIOError as e:
            raise self._io_error(e) from e

    def _io_error(self, e: Exception) -> Exception:
        """A GDAL I/O failure -> a damaged input (named) or a failed write."""
        text = " ".join(f"{e} {e.__cause__ or ''}".split())
        reading = ("Read failed", "IReadBlock", "TIFFRead", str(self.inp), self.inp.name)
        if any(r in text for r in reading):
            return InputError(
                f"{self.inp}: cannot read the raster, it may be truncated or damaged ({text[:200]})"
            )
        return DiskSpaceError(f"writing {self.out} failed: {text[:300]}")

    def _execute(self) -> UpscaleResult:
        t0 = time.perf_counter()
        self._check_paths()
        self._check_input_readable()
        with (
            self.lock,
            # an int is bytes to rasterio (GDALSetCacheMax64), not GDAL's "<100000 = MB" rule: 128
            # alone meant a 128-byte cache, and a decimated read of a compressed scene took 30 s
            rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20),
            rio_io.open_input(self.inp) as src,
        ):
            self.pf = pf = preflight(src, self.inp, self.out, self.up, self.o)
            for category, message in pf.warnings:
                warnings.warn(message, category, stacklevel=4)
            if self.o.on_preflight is not None:
                self.o.on_preflight(pf)
            self.plan = plan = pf.plan
            self.writer = Writer(plan)
            key = settings_key(plan.settings)
            manifest = self._resumable(key) if self.o.resume else None
            self._remove_stale(manifest)
            if manifest is None:
                self.partial = self._temp(".partial.tif")
                self.qa_partial = self._temp(".qa.partial.tif") if self.qa_out else None
                files = {
                    "partial": self.partial.name,
                    "qa_partial": self.qa_partial.name if self.qa_partial else None,
                }
                manifest = Manifest.create(self.manifest_path, key, plan.settings, files)
            self.manifest = manifest
            self.qa_prof = rio_io.qa_profile(
                src, region=plan.region, count=plan.C, block=plan.block // self.up.scale
            )
            self.cons_stats = ConsistencyStats(plan.value_range)
            self.seam_stats = SeamStats(*plan.grid.tile_borders())
            self.tile_acc: dict[str, list[float]] = {}
            self.counts = {"computed": 0, "skipped": 0, "reused": 0}
            dst = qa_dst = None
            ok = False
            try:
                resuming = bool(manifest.rows_done)
                try:
                    if resuming:
                        self.dst = dst = rasterio.open(self.partial, "r+")
                    else:
                        self.dst = dst = rasterio.open(
                            self.partial, "w", **self._sparse(plan.profile)
                        )
                        dst.update_tags(**plan.tags)
                        rio_io.apply_band_meta(dst, plan.meta, plan.alpha)
                        rio_io.write_gcps(dst, src, plan.region, self.up.scale)
                        for i, band_tags in enumerate(plan.band_tags):
                            dst.update_tags(i + 1, **band_tags)
                    if self.qa_partial is not None:
                        if resuming:
                            self.qa_dst = qa_dst = rasterio.open(self.qa_partial, "r+")
                        else:
                            qa_prof = rio_io.qa_profile(
                                src,
                                region=plan.region,
                                count=plan.C,
                                block=plan.block // self.up.scale,
                            )
                            self.qa_dst = qa_dst = rasterio.open(
                                self.qa_partial, "w", **self._sparse(qa_prof)
                            )
                            qa_dst.update_tags(
                                SLIMDIFFSR_QA="|down(SR) - LR| per band, input units"
                            )
                            rio_io.write_gcps(qa_dst, src, plan.region, 1)
                except RasterioIOError as e:
                    raise DiskSpaceError(f"cannot write {self.partial}: {e}") from e
                if resuming:
                    self._qa_from_partial(src, dst)
                self._loop(src, dst, qa_dst)
                ok = True
            except RasterioIOError as e:
                raise self._io_error(e) from e
            except MemoryError as e:
                if isinstance(e, OutOfMemoryError):
                    raise
                raise OutOfMemoryError(
                    "out of memory; lower memory_mb (--memory-mb), --tile or --batch-size"
                ) from e
            finally:
                closed = True
                for d in (self.dst, self.qa_dst):
                    if d is not None:
                        try:
                            d.close()
                        except Exception:  # noqa: BLE001 - a failed close means a broken partial
                            closed = False
                if not ok:
                    if self.o.resume and closed and manifest.rows_done:
                        manifest.save()
                    else:
                        self._cleanup()
            return finish(self, t0)

    def _loop(self, src: Any, dst: Any, qa_dst: Any) -> None:
        p, s, man = self.plan, self.up.scale, self.manifest
        grid = p.grid
        n_rows = grid.shape[0]
        total = sum(n_rows * len(ch.cols) for ch in p.chunks)
        done = 0
        self._report(0, total, "starting")
        for ch in p.chunks:
            y_done = man.rows(ch.index)
            todo: list[Tile] = []
            for r in range(n_rows):
                # rows past the region's end are never written: the tile is done at its end
                bottom = min((grid.row_starts[r] + grid.tile_height) * s, grid.hr_shape()[0])
                for c in ch.cols:
                    if bottom <= y_done:  # finished in an earlier run: never recomputed
                        self.counts["reused"] += 1
                        done += 1
                    else:
                        todo.append(grid.tile_at(r, c))
            if not todo:
                continue
            strip = StripAccumulator(p.C, ch.x0, ch.x1, y_done, p.strip_rows, p.block)
            last_col = ch.cols[-1]
            for i in range(0, len(todo), self.up.batch_size):
                self._check_cancel()
                batch = todo[i : i + self.up.batch_size]
                results = self._run_batch(batch, [self._prepare(src, t) for t in batch])
                for t in batch:
                    if t in results:
                        strip.add(grid.hr_window(t), results.pop(t), self._weight(t))
                        self.counts["computed"] += 1
                    else:
                        self.counts["skipped"] += 1
                    done += 1
                    if t.col == last_col:
                        self._finalize_rows(src, self.dst, self.qa_dst, ch.index, strip, t.row)
                self._report(done, total, f"tile row {batch[-1].row + 1}/{n_rows}")

    def _finalize_rows(
        self, src: Any, dst: Any, qa_dst: Any, chunk: int, strip: StripAccumulator, row: int
    ) -> None:
        """Write the block rows no later tile touches; record finished tiles in the manifest.

        Written block by block and in pieces of ``WRITE_COLS`` columns, so the conversion's
        temporaries stay small however wide the chunk is.
        """
        p = self.plan
        hr_h = p.grid.hr_shape()[0]
        y0 = strip.y0
        y_end = aligned_end(p.grid.row_final_after(row), y0, p.block, hr_h)
        if y_end <= y0:
            return
        piece = max(p.block, WRITE_COLS // p.block * p.block)
        for y in range(y0, y_end, p.block):
            rows = strip.rows(y, min(y + p.block, y_end))
            for x in range(strip.x0, strip.x1, piece):
                x_end = min(x + piece, strip.x1)
                part = rows[:, :, x - strip.x0 : x_end - strip.x0]
                self._write_piece(src, dst, qa_dst, chunk, x, y, part)
        strip.release(y_end)
        finished: dict[str, list[float] | None] = {}
        s = self.up.scale
        prefix = f"{chunk}:"
        for r, rs in enumerate(p.grid.row_starts):
            if min((rs + p.grid.tile_height) * s, hr_h) > y_end:
                break
            for c in p.chunks[chunk].cols:
                key = prefix + p.grid.tile_at(r, c).window.key()
                if key not in self.manifest.tiles and key not in finished:
                    finished[key] = self.tile_acc.pop(key, [0.0] * (p.C + 1))
        self._checkpoint()
        self.manifest.record(chunk, y_end, finished)

    # -- crash safety ------------------------------------------------------------------------
    def _checkpoint(self) -> None:
        """Put the written rows on disk: close the partials (GDAL writes the blocks and the TIFF
        directory), fsync them and reopen them for update. Only then is the journal appended."""
        for attr, path in (("dst", self.partial), ("qa_dst", self.qa_partial)):
            d = getattr(self, attr)
            if d is None:
                continue
            setattr(self, attr, None)
            d.close()
            fsync_path(path)
            setattr(self, attr, rasterio.open(path, "r+"))

    @staticmethod
    def _sparse(profile: dict[str, Any]) -> dict[str, Any]:
        """Partials are uncompressed (the final copy compresses once) and leave unwritten blocks
        empty (no blank blocks written at each checkpoint)."""
        raw = {k: v for k, v in profile.items() if k not in ("compress", "predictor")}
        return {**raw, "SPARSE_OK": True}

    def _temp(self, suffix: str) -> Path:
        path = unique_temp(self.out, suffix)
        self.temps.append(path)
        return path

    def _check_input_readable(self) -> None:
        """A file the output lock or journal would shadow is still the input: refuse early."""
        if self.inp.name.startswith(protocol.temp_prefix(self.out.name)):
            raise InputError(f"{self.inp} is a temporary file of a run writing {self.out}")

    def _resumable(self, key: str) -> Manifest | None:
        """The journal of an interrupted run with the same settings, with its partials on disk."""
        old = Manifest.read(self.manifest_path)
        if old is None:
            return None
        prefix = protocol.temp_prefix(self.out.name)
        paths: dict[str, Path | None] = {}
        for role in ("partial", "qa_partial"):
            name = old.files.get(role)
            ok = isinstance(name, str) and name.startswith(prefix) and "/" not in name
            ok = ok and "\\" not in name
            paths[role] = self.out.with_name(name) if ok else None
        part, qa = paths["partial"], paths["qa_partial"]
        usable = (
            old.key == key
            and old.rows_done
            and part is not None
            and part.is_file()
            and (qa is not None and qa.is_file()) == (self.qa_out is not None)
        )
        if not usable:
            if old.key != key and old.rows_done:
                warnings.warn(
                    f"{self.out.name}: the interrupted run was made with other settings; "
                    "starting over",
                    UserWarning,
                    stacklevel=4,
                )
            return None
        self.partial, self.qa_partial = part, qa
        return old

    def _remove_stale(self, keep: Manifest | None) -> None:
        """Delete temporary files of earlier runs on this output (we hold its lock, so no live
        run owns them), except the journal and partials being resumed."""
        import glob

        keep_paths = {self.lock.path}
        if keep is not None:
            keep_paths |= {self.manifest_path, self.partial, self.qa_partial}
        pattern = (
            glob.escape(str(self.out.parent))
            + os.sep
            + protocol.temp_glob(glob.escape(self.out.name))
        )
        for name in glob.glob(pattern, include_hidden=True):
            p = Path(name)
            if (
                protocol.is_temp_of(self.out.name, p.name)
                and p not in keep_paths
                and p.with_name(p.name.removesuffix(".aux.xml")) not in keep_paths
            ):
                rio_io.remove_quietly(p)

    def _cleanup(self) -> None:
        rio_io.remove_quietly(self.partial, self.qa_partial, self.manifest_path, *self.temps)
