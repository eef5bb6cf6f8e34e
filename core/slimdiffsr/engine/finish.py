"""Finishing an engine run: the final files (canonical copy or COG, replaced atomically), the run
summary and the QA report, returned as an :class:`UpscaleResult`."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rasterio.errors import RasterioIOError

from slimdiffsr import __version__
from slimdiffsr.engine import raster_io as rio_io
from slimdiffsr.engine.qa import write_json_atomic
from slimdiffsr.errors import DiskSpaceError

if TYPE_CHECKING:
    from slimdiffsr.engine.loop import Job


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
            f"({s['tiles_per_s']:.2f} tiles/s), {cons}; values: {s['value_mapping']}"
        )


def finish(job: Job, t0: float) -> UpscaleResult:
    """Turn the partials into the final files (atomically), then summarise and write the QA report."""
    try:
        if job.o.cog:
            job.cog_partial = job._temp(".cog.tif")
            # continuous imagery: averaged overviews whatever the dtype
            rio_io.write_cog(job.partial, job.cog_partial, job.o.compress, "AVERAGE")
            rio_io.remove_quietly(job.partial)
            rio_io.replace_atomic(job.cog_partial, job.out)
        else:  # canonical block order: a resumed run gives the same bytes
            final = job._temp(".final.tif")
            rio_io.copy_canonical(job.partial, final, job.plan.profile)
            rio_io.remove_quietly(job.partial)
            rio_io.replace_atomic(final, job.out)
        if job.qa_partial is not None and job.qa_out is not None:
            qa_final = job._temp(".qa.final.tif")
            rio_io.copy_canonical(job.qa_partial, qa_final, job.qa_prof)
            rio_io.remove_quietly(job.qa_partial)
            rio_io.replace_atomic(qa_final, job.qa_out)
    except (OSError, RasterioIOError) as e:
        job._cleanup()
        raise DiskSpaceError(f"could not finish {job.out}: {e}") from e
    except BaseException:  # Ctrl-C / SIGTERM during the final copy: no half-made files
        if job.o.resume:  # the partial and the journal stay for the next run
            keep = {job.partial, job.qa_partial}
            rio_io.remove_quietly(*(t for t in job.temps if t not in keep))
        else:
            job._cleanup()
        raise
    rio_io.remove_quietly(job.manifest_path)
    elapsed = time.perf_counter() - t0
    summary = run_summary(job, elapsed)
    if job.qa_json is not None:
        write_json_atomic(job.qa_json, qa_report(job, summary))
    return UpscaleResult(job.out, job.qa_out, job.qa_json, summary)


def tile_flags(job: Job) -> tuple[int, int]:
    """Tiles whose mean consistency exceeds the threshold (fraction of the value range)."""
    C = job.plan.C
    merged: dict[str, list[float]] = {}
    for key, acc in job.manifest.tiles.items():
        m = merged.setdefault(key.split(":", 1)[1], [0.0] * (C + 1))
        for i, v in enumerate(acc):
            m[i] += v
    flagged = total = 0
    for acc in merged.values():
        n = acc[C]
        if n <= 0:  # no valid pixel: skipped as nodata
            continue
        total += 1
        rel = np.asarray(acc[:C]) / n / job.plan.value_range
        flagged += int(float(rel.mean()) > job.o.qa_threshold)
    return flagged, total


def run_summary(job: Job, elapsed: float) -> dict[str, Any]:
    """The run's summary: what ``UpscaleResult.summary`` and the CLI print."""
    up, p = job.up, job.plan
    r = p.region
    crs = p.profile["crs"]
    crs_text = "no CRS"
    if crs is not None:
        epsg = crs.to_epsg()
        crs_text = f"EPSG:{epsg}" if epsg else (crs.to_string()[:60])
    cons = job.cons_stats.summary()
    flagged, n_tiles = tile_flags(job)
    computed = job.counts["computed"]
    return {
        "input": str(job.inp),
        "output": str(job.out),
        "qa_output": str(job.qa_out) if job.qa_out else None,
        "model": up.model_name,
        "model_hash": up.model_hash,
        "scale": up.scale,
        "bands": p.bands,
        "bands_sr": p.sr_bands,
        "bands_interpolated": p.interp_bands,
        "dtype": p.out_dtype,
        "input_size": [r.width, r.height],
        "output_size": [p.profile["width"], p.profile["height"]],
        "roi": [r.col_off, r.row_off, r.width, r.height],
        "crs": crs_text,
        "value_mapping": job.pf.describe(),
        "value_contract": p.contract.describe(),
        "warnings": job.pf.messages,
        "device": str(up.device),
        "runtime": str(getattr(up, "runtime", "torch")),
        "precision": up.precision,
        "ensemble": up.ensemble,
        "tile": p.grid.tile,
        "overlap": p.grid.overlap,
        "halo": up.halo,
        "tiles": computed + job.counts["skipped"] + job.counts["reused"],
        "tiles_computed": computed,
        "tiles_skipped_nodata": job.counts["skipped"],
        "tiles_reused": job.counts["reused"],
        "time_s": elapsed,
        "tiles_per_s": computed / elapsed if elapsed > 0 else 0.0,
        "mean_consistency": cons["mean"],
        "consistency_per_band": [b["mean"] for b in cons["per_band"]],
        "tiles_flagged_fraction": flagged / n_tiles if n_tiles else 0.0,
        "seam_ratio": job.seam_stats.summary()["ratio"],
    }


def qa_report(job: Job, summary: dict[str, Any]) -> dict[str, Any]:
    """The ``--qa-json`` document: consistency per band, flagged tiles, seams, provenance."""
    flagged, n_tiles = tile_flags(job)
    return {
        "slimdiffsr_version": __version__,
        "output": str(job.out),
        "qa_output": str(job.qa_out),
        "definition": "|mean over each scale x scale block of SR - LR|, per band, input units",
        "model": summary["model"],
        "model_hash": summary["model_hash"],
        "scale": summary["scale"],
        "bands": job.plan.bands,
        "bands_sr": job.plan.sr_bands,
        "bands_interpolated": job.plan.interp_bands,
        "value_mapping": job.plan.mapping.to_dict(),
        "value_contract": job.plan.contract.to_dict(),
        "consistency": job.cons_stats.summary(),
        "tiles": {
            "total": n_tiles,
            "flagged": flagged,
            "fraction_flagged": flagged / n_tiles if n_tiles else 0.0,
            "threshold_fraction_of_range": job.o.qa_threshold,
        },
        "seams": job.seam_stats.summary(),
        "lr_consistency_enforced": job.up.consistency,
    }
