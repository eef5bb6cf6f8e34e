"""What runs on the workers: one unit through the engine, the assembly of a split raster.

Every task returns a plain record (a dict) instead of raising for a raster's own failure
(``SlimDiffSRError``: unreadable, wrong bands, disk full), so Dask does not retry what cannot
succeed and the other files go on. Anything else (a bug, a lost worker) propagates and Dask
retries it; a retried unit runs the engine with ``resume=True``, which continues from the dead
attempt's partial file (or removes it and starts over).
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path
from typing import Any

from slimdiffsr.cluster.split import FilePlan, Unit, assemble, read_band_tags
from slimdiffsr.cluster.worker_plugin import get_upscaler
from slimdiffsr.errors import OutputBusyError, SlimDiffSRError

PROGRESS_EVERY_S = 0.25  # at most this often per task, tile progress goes to the client
BUSY_WAIT_S = 600.0  # how long a retry waits for a still-running earlier attempt's lock


def _worker() -> Any:
    try:
        from distributed import get_worker

        return get_worker()
    except ValueError:  # run in-process (tests, a plain call)
        return None


def _emit(worker: Any, topic: str | None, msg: dict[str, Any]) -> None:
    if worker is not None and topic:
        worker.log_event(topic, msg)


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def _finished_earlier(unit: Unit, run_started: float) -> bool:
    """The output is there, written during this run for this input: an earlier attempt of this
    task finished it before its worker died (or before its result reached the scheduler)."""
    out = unit.output
    try:
        if out.stat().st_mtime < run_started - 2.0:
            return False
        tags = read_band_tags(out)
    except (OSError, SlimDiffSRError, Exception):  # noqa: BLE001 - unreadable: not finished
        return False
    roi_ok = True
    if unit.roi_window is not None:
        c, r, w, h = unit.roi_window
        roi_ok = tags.get("SLIMDIFFSR_ROI") == f"{c},{r},{w},{h}"
    return roi_ok and Path(tags.get("SLIMDIFFSR_SOURCE", "")).name == unit.input.name


def run_unit(
    unit: Unit,
    model: str,
    upscaler_kwargs: dict[str, Any],
    run_kwargs: dict[str, Any],
    *,
    threads: int | None = None,
    topic: str | None = None,
    run_started: float = 0.0,
) -> dict[str, Any]:
    """Super-resolve one unit; a record with ``status`` ``ok`` or ``failed`` (and ``error``)."""
    worker = _worker()
    where = worker.address if worker is not None else "local"
    host = socket.gethostname()
    rec: dict[str, Any] = {"key": unit.key, "input": str(unit.input), "output": str(unit.output)}
    rec.update(worker=where, host=host, pid=os.getpid())
    _emit(worker, topic, {"key": unit.key, "event": "start", "worker": where})
    t0 = time.perf_counter()
    last = [0.0]

    def progress(done: int, total: int, message: str) -> None:
        now = time.perf_counter()
        if now - last[0] >= PROGRESS_EVERY_S or done >= total:
            last[0] = now
            _emit(worker, topic, {"key": unit.key, "event": "tiles", "done": done, "total": total})

    try:
        if _finished_earlier(unit, run_started):
            rec.update(status="ok", reused=True, time_s=0.0, summary=None)
            return describe(rec) if unit.band is None else rec
        up = get_upscaler(
            model, upscaler_kwargs, threads, str(worker.name) if worker is not None else None
        )
        kwargs = dict(run_kwargs)
        if unit.roi_window is not None:
            kwargs["roi_window"] = unit.roi_window
            kwargs.update(cog=False, qa=False, overwrite=True)  # band files are ours to replace
        deadline = time.monotonic() + BUSY_WAIT_S
        while True:
            try:
                result = up.run(unit.input, unit.output, resume=True, progress=progress, **kwargs)
                break
            except OutputBusyError:
                # an earlier attempt the scheduler gave up on is still writing (its worker was
                # cut off, not dead): wait for it, then use its output or resume after it
                if time.monotonic() > deadline:
                    raise
                time.sleep(2.0)
                if _finished_earlier(unit, run_started):
                    rec.update(status="ok", reused=True, time_s=0.0, summary=None)
                    return describe(rec) if unit.band is None else rec
    except SlimDiffSRError as e:
        rec.update(status="failed", error=str(e), kind=e.kind)
        rec["time_s"] = time.perf_counter() - t0
        _emit(worker, topic, {"key": unit.key, "event": "end"})
        return rec
    rec.update(status="ok", reused=False, summary=result.summary)
    rec["qa_output"] = str(result.qa_output) if result.qa_output else None
    rec["qa_json"] = str(result.qa_json) if result.qa_json else None
    rec["time_s"] = time.perf_counter() - t0
    _emit(worker, topic, {"key": unit.key, "event": "end"})
    return describe(rec) if unit.band is None else rec


def _merge(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary for a split raster: sums, and means weighted by each band's pixels."""
    sums = [r["summary"] for r in records if r.get("summary")]
    if not sums:
        return {}
    out = dict(sums[0])
    px = [s["input_size"][0] * s["input_size"][1] for s in sums]
    for k in ("tiles", "tiles_computed", "tiles_skipped_nodata", "tiles_reused"):
        out[k] = sum(s.get(k, 0) for s in sums)
    for k in ("mean_consistency", "tiles_flagged_fraction", "seam_ratio"):
        vals = [(s.get(k), p) for s, p in zip(sums, px) if isinstance(s.get(k), int | float)]
        if vals:
            out[k] = sum(v * p for v, p in vals) / sum(p for _, p in vals)
    out["time_s"] = sum(s.get("time_s", 0.0) for s in sums)
    out["input_size"] = [sums[0]["input_size"][0], sum(s["input_size"][1] for s in sums)]
    out["output_size"] = [sums[0]["output_size"][0], sum(s["output_size"][1] for s in sums)]
    out["devices"] = sorted({str(s.get("device")) for s in sums})
    return out


def assemble_file(plan: FilePlan, compress: str, *records: dict[str, Any]) -> dict[str, Any]:
    """After all bands of a split raster: the VRT (and COG), or the first band's failure."""
    t0 = time.perf_counter()
    rec: dict[str, Any] = {"key": plan.units[0].key.rsplit("-band", 1)[0]}
    rec.update(input=str(plan.input), output=str(plan.output), bands=len(records))
    rec["time_s"] = sum(r.get("time_s", 0.0) for r in records)
    rec["worker"] = ", ".join(sorted({r.get("worker", "?") for r in records}))
    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        rec.update(status="failed", error=failed[0].get("error"), kind=failed[0].get("kind"))
        return rec
    try:
        assemble([Path(r["output"]) for r in records], plan.output, cog=plan.cog, compress=compress)
    except (SlimDiffSRError, OSError) as e:
        rec.update(status="failed", error=f"assembling {plan.output.name}: {e}", kind="disk")
        return rec
    rec.update(status="ok", summary=_merge(records), parts=[r["output"] for r in records])
    rec["time_s"] += time.perf_counter() - t0
    return describe(rec)


def describe(rec: dict[str, Any]) -> dict[str, Any]:
    """Add what the catalogue needs (footprint, grid, tags, source checksum) to a finished record.

    Runs on the worker next to the files; the source checksum comes from the output's tags when
    the engine recorded one, else it is computed here.
    """
    if rec.get("status") != "ok":
        return rec
    from slimdiffsr.cluster.stac import output_facts

    try:
        facts = output_facts(Path(rec["output"]))
        tags = facts["tags"]
        sha = next((v for k, v in tags.items() if "SHA256" in k.upper()), None)
        facts["source_sha256"] = sha or file_sha256(Path(rec["input"]))
        rec["facts"] = facts
    except Exception as e:  # noqa: BLE001 - a catalogue problem must not fail the raster
        rec["facts_error"] = str(e)
    return rec
