"""Plan a run, submit it to a Dask cluster, follow it, report it: :func:`upscale_many`.

Dask does the scheduling: one task per raster (``tasks.run_unit``), or one per row band plus an
assembly task depending on them. A worker that dies costs only its running task, which the
scheduler gives to another worker (the engine resumes from the dead attempt's partial file);
other exceptions are retried ``retries`` times; a raster's own failure comes back as a record.
Progress travels as worker events (``Worker.log_event``) to a handler on the client.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimdiffsr.cluster.split import DEFAULT_SPLIT_PIXELS, FilePlan, plan_file
from slimdiffsr.errors import InputError, SlimDiffSRError

__all__ = ["RunResult", "connect", "format_summary", "upscale_many"]

# engine keywords the cluster sets itself
_RESERVED = {"input", "output", "resume", "progress", "cancel", "feedback", "self"}


class ClusterError(SlimDiffSRError):
    """The cluster cannot be reached or started."""

    kind = "internal"


@dataclass
class RunResult:
    """One record per input, in input order, plus where to look (dashboard, catalogue)."""

    records: list[dict[str, Any]]
    elapsed_s: float
    dashboard: str | None = None
    collection: Path | None = None
    workers: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("status") != "ok"]

    @property
    def ok(self) -> bool:
        return not self.failed


# -- cluster -----------------------------------------------------------------------------------
def connect(cluster: Any, *, device: str = "auto", timeout: float = 30.0) -> tuple[Any, Any]:
    """``(client, owned)``: ``owned`` is a cluster this call started (close it when done).

    ``cluster`` is a scheduler address (``tcp://host:8786``), ``local:N`` (N worker processes
    here; with dask-cuda installed and a GPU, a ``LocalCUDACluster`` of N GPUs), a
    ``distributed.Client`` or a cluster object (``SLURMCluster``, ``LocalCluster``, ...).
    """
    from distributed import Client, LocalCluster

    if isinstance(cluster, Client):
        return cluster, None
    if not isinstance(cluster, str):  # a cluster object (dask-jobqueue, dask-kubernetes, ...)
        return Client(cluster, timeout=timeout), None
    spec = cluster.strip()
    if spec == "local" or spec.startswith("local:"):
        try:
            n = int(spec.split(":", 1)[1]) if ":" in spec else max(1, (os.cpu_count() or 2) // 2)
        except ValueError:
            raise InputError(f"--cluster local:N needs a number of workers, got {spec!r}") from None
        if n < 1:
            raise InputError(f"--cluster local:N needs N >= 1, got {n}")
        owned = None
        if device != "cpu":
            owned = _local_cuda(n)
        if owned is None:
            owned = LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                silence_logs=logging.ERROR,
            )
        return Client(owned, timeout=timeout), owned
    if "://" not in spec and ":" not in spec:
        raise InputError(f"--cluster: expected tcp://HOST:PORT or local:N, got {spec!r}")
    try:
        return Client(spec, timeout=timeout), None
    except (OSError, TimeoutError) as e:
        raise ClusterError(f"cannot reach the Dask scheduler at {spec}: {e}") from e


def _local_cuda(n: int) -> Any:
    """A dask-cuda ``LocalCUDACluster`` of ``n`` GPUs, when dask-cuda and GPUs are there."""
    try:
        import torch
        from dask_cuda import LocalCUDACluster  # type: ignore[import-not-found]
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    ids = ",".join(str(i) for i in range(min(n, torch.cuda.device_count())))
    return LocalCUDACluster(CUDA_VISIBLE_DEVICES=ids, threads_per_worker=1, dashboard_address=":0")


# -- planning ----------------------------------------------------------------------------------
def _model_scale(model: str, scale: int | None) -> int:
    """The model's scale without loading its weights (the card, or the bicubic name)."""
    if scale:
        return int(scale)
    from slimdiffsr.models.registry import resolve

    target = resolve(str(model))
    if isinstance(target, str):
        return int(target.split("-x")[1]) if "-x" in target else 4
    from slimdiffsr.models.card import read_card

    return int(read_card(target).scale)


def _split_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Engine keywords -> (``Upscaler(...)`` ones, ``Upscaler.run(...)`` ones)."""
    from slimdiffsr.engine.run import Upscaler

    up_keys = set(inspect.signature(Upscaler.__init__).parameters) - {"self", "model"}
    run_keys = set(inspect.signature(Upscaler.run).parameters) - _RESERVED
    up_kw, run_kw = {}, {}
    for k, v in kwargs.items():
        if k in _RESERVED:
            raise InputError(f"upscale_many sets {k!r} itself")
        if k in up_keys:
            up_kw[k] = v
        elif k in run_keys:
            run_kw[k] = v
        else:
            raise InputError(f"unknown upscale option {k!r}")
    return up_kw, run_kw


def output_name(inp: Path, out_dir: Path, scale: int) -> Path:
    """``OUT/<stem>_x<scale>.tif`` (the CLI's naming for several inputs)."""
    return out_dir / f"{inp.stem}_x{scale}.tif"


def plan(
    inputs: Sequence[Path],
    out_dir: Path,
    *,
    scale: int,
    tile: int,
    split_pixels: int,
    cog: bool,
    overwrite: bool,
    allow_split: bool,
    run_id: str,
) -> list[FilePlan]:
    plans: list[FilePlan] = []
    seen: dict[Path, Path] = {}
    for i, inp in enumerate(inputs):
        out = output_name(inp, out_dir, scale)
        key = f"slimdiffsr-{run_id}-{i:05d}-{inp.stem}"
        p = plan_file(
            inp,
            out,
            scale=scale,
            tile=tile,
            split_pixels=split_pixels,
            cog=cog,
            key=key,
            allow_split=allow_split,
        )
        if p.output in seen:
            p.error = f"{inp} and {seen[p.output]} both become {p.output.name}; rename one"
        elif Path(inp).resolve() == p.output.resolve():
            p.error = f"refusing to overwrite the input {inp}"
        elif p.output.exists() and not overwrite:
            p.error = f"{p.output} exists; pass overwrite (--overwrite) to replace it"
        seen.setdefault(p.output, Path(inp))
        plans.append(p)
    return plans


# -- progress ----------------------------------------------------------------------------------
class _Tracker:
    """Per-task tile counts and attempts from worker events; drives an optional tqdm bar."""

    def __init__(self, n_files: int, show: bool) -> None:
        self.lock = threading.Lock()
        self.tiles: dict[str, tuple[int, int]] = {}
        self.starts: dict[str, int] = {}
        self.workers: dict[str, list[str]] = {}
        self.files_done = 0
        self.n_files = n_files
        self.bar = None
        if show:
            from tqdm import tqdm

            # disable=None: shown on a terminal only, as the single-process bar
            self.bar = tqdm(total=0, unit="tile", desc="tiles", disable=None, leave=True)
            self._postfix()

    def _postfix(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"files {self.files_done}/{self.n_files}", refresh=False)

    def __call__(self, event: Any) -> None:
        msg = event[1] if isinstance(event, tuple | list) and len(event) == 2 else event
        if not isinstance(msg, dict) or "key" not in msg:
            return
        with self.lock:
            key = msg["key"]
            if msg.get("event") == "start":
                self.starts[key] = self.starts.get(key, 0) + 1
                self.workers.setdefault(key, []).append(str(msg.get("worker")))
            elif msg.get("event") == "tiles":
                self.tiles[key] = (int(msg["done"]), int(msg["total"]))
            self._refresh()

    def _refresh(self) -> None:
        if self.bar is None:
            return
        total = sum(t for _, t in self.tiles.values())
        done = sum(d for d, _ in self.tiles.values())
        self.bar.total = total
        self.bar.n = done
        self._postfix()
        self.bar.refresh()

    def file_done(self) -> None:
        with self.lock:
            self.files_done += 1
            self._refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- the run -----------------------------------------------------------------------------------
def upscale_many(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    cluster: Any = "local:1",
    model: str | Path = "default",
    split_pixels: int = DEFAULT_SPLIT_PIXELS,
    retries: int = 2,
    threads: int | None = None,
    stac: bool = True,
    progress: bool = False,
    timeout: float | None = None,
    on_dashboard: Callable[[str], None] | None = None,
    **upscale_kwargs: Any,
) -> RunResult:
    """Super-resolve ``inputs`` into ``out_dir/<stem>_x<scale>.tif`` on a Dask cluster.

    - ``cluster``: see :func:`connect` (``tcp://host:8786``, ``local:N``, a Client or cluster).
    - ``upscale_kwargs``: the keywords of :func:`slimdiffsr.engine.run.upscale` (``scale``,
      ``tile``, ``device``, ``bands``, ``value_contract``, ``cog``, ``qa``, ...). ``resume`` is
      always on: it is how a retried task continues.
    - Rasters over ``split_pixels`` input pixels (and without an ROI) are split into row bands
      of whole tiles, written to ``<stem>_x<scale>.bands/`` and mosaicked by
      ``<stem>_x<scale>.vrt`` (with ``cog=True``: one COG ``<stem>_x<scale>.tif`` instead).
    - ``stac``: write ``out_dir/collection.json`` with an item per output.
    - ``timeout``: seconds for the whole run (None: no limit); raises ``TimeoutError``.
    Returns a :class:`RunResult`; it never raises for one raster's failure.
    """
    from distributed import as_completed

    from slimdiffsr.cluster.tasks import assemble_file, run_unit
    from slimdiffsr.cluster.worker_plugin import ModelPlugin
    from slimdiffsr.engine.tiling import DEFAULT_TILE

    t0 = time.perf_counter()
    started = time.time()
    paths = [Path(p) for p in inputs]
    out = Path(out_dir)
    up_kw, run_kw = _split_kwargs(upscale_kwargs)
    model = str(model)
    scale = _model_scale(model, up_kw.get("scale"))
    run_id = uuid.uuid4().hex[:8]
    allow_split = run_kw.get("roi_window") is None and run_kw.get("roi_bounds") is None
    plans = plan(
        paths,
        out,
        scale=scale,
        tile=int(up_kw.get("tile") or DEFAULT_TILE),
        split_pixels=int(split_pixels),
        cog=bool(run_kw.get("cog", False)),
        overwrite=bool(run_kw.get("overwrite", False)),
        allow_split=allow_split,
        run_id=run_id,
    )
    records: list[dict[str, Any] | None] = [None] * len(plans)
    for i, p in enumerate(plans):
        if p.error:
            records[i] = {"input": str(p.input), "output": str(p.output), "status": "failed"}
            records[i].update(error=p.error, kind="input", time_s=0.0)
    client, owned = connect(cluster, device=str(up_kw.get("device", "auto")))
    topic = f"slimdiffsr-{run_id}"
    tracker = _Tracker(len(plans), progress)
    dashboard = None
    n_workers = 0
    try:
        out.mkdir(parents=True, exist_ok=True)
        try:
            dashboard = client.dashboard_link
        except Exception:  # noqa: BLE001 - no dashboard (bokeh not installed)
            dashboard = None
        if dashboard and on_dashboard is not None:
            on_dashboard(dashboard)
        n_workers = len(client.scheduler_info(n_workers=-1).get("workers", {}))
        client.subscribe_topic(topic, tracker)
        try:
            client.register_plugin(ModelPlugin(model, up_kw, threads), name="slimdiffsr-model")
        except Exception as e:  # noqa: BLE001 - the tasks load (and report) the model themselves
            logging.getLogger(__name__).warning("model preload failed: %s", e)
        common = {"threads": threads, "topic": topic, "run_started": started}
        futures: dict[Any, int] = {}
        for i, p in enumerate(plans):
            if p.error:
                continue
            if not p.split:
                u = p.units[0]
                f = client.submit(
                    run_unit, u, model, up_kw, run_kw, **common, key=u.key, retries=retries
                )
            else:
                bands = [
                    client.submit(
                        run_unit, u, model, up_kw, run_kw, **common, key=u.key, retries=retries
                    )
                    for u in p.units
                ]
                f = client.submit(
                    assemble_file,
                    p,
                    str(run_kw.get("compress", "deflate")),
                    *bands,
                    key=p.units[0].key.rsplit("-band", 1)[0] + "-assemble",
                    retries=retries,
                )
            futures[f] = i
        for f in as_completed(list(futures), timeout=timeout):
            i = futures[f]
            p = plans[i]
            try:
                rec = f.result()
            except Exception as e:  # noqa: BLE001 - KilledWorker, a bug: reported for this file
                rec = {"input": str(p.input), "output": str(p.output), "status": "failed"}
                rec.update(error=f"{type(e).__name__}: {e}", kind="internal")
            with tracker.lock:
                starts = [tracker.starts.get(u.key, 0) for u in p.units]
                rec["attempts"] = max(starts) if starts else 0
                rec["retried"] = any(s > 1 for s in starts)
            records[i] = rec
            tracker.file_done()
        try:
            client.unsubscribe_topic(topic)
        except Exception:  # noqa: BLE001
            pass
    finally:
        tracker.close()
        if owned is not None:
            client.close()
            owned.close()
    done: list[dict[str, Any]] = [r for r in records if r is not None]
    collection = None
    if stac:
        from slimdiffsr.cluster.stac import write_collection

        collection = write_collection(done, out)
    return RunResult(
        done, time.perf_counter() - t0, dashboard, collection, n_workers, {"run_id": run_id}
    )


# -- report ------------------------------------------------------------------------------------
def format_summary(result: RunResult) -> list[str]:
    """One line per file (status, time, device, consistency), then the totals."""
    lines = []
    for r in result.records:
        name = Path(r["input"]).name
        if r.get("status") != "ok":
            lines.append(f"FAILED {name}: {r.get('error')}")
            continue
        s = r.get("summary") or {}
        dev = ",".join(s.get("devices") or [str(s.get("device", "?"))])
        mc = s.get("mean_consistency")
        cons = f"mean |down(SR)-LR| {mc:.3g}" if isinstance(mc, int | float) else "consistency n/a"
        extra = []
        if r.get("bands"):
            extra.append(f"{r['bands']} row bands")
        if r.get("retried"):
            extra.append(f"retried ({r.get('attempts')} attempts)")
        if s.get("tiles_reused"):
            extra.append(f"{s['tiles_reused']} tiles resumed from a partial file")
        if r.get("reused"):
            extra.append("finished by an earlier attempt")
        note = f" [{', '.join(extra)}]" if extra else ""
        lines.append(
            f"ok     {name} -> {Path(r['output']).name}  {r.get('time_s', 0.0):.1f} s  "
            f"{dev} on {r.get('worker', '?')}  {cons}{note}"
        )
    n, bad = len(result.records), len(result.failed)
    rate = n / result.elapsed_s if result.elapsed_s > 0 else 0.0
    lines.append(
        f"{n} file{'s' if n != 1 else ''}: {n - bad} ok, {bad} failed in {result.elapsed_s:.1f} s "
        f"({rate:.2f} files/s, {result.workers} worker{'s' if result.workers != 1 else ''})"
    )
    if result.collection:
        lines.append(f"STAC collection: {result.collection}")
    return lines


def run_cli(args: Any, inputs: Sequence[Path], output: Path) -> int:
    """``slimdiffsr upscale ... --cluster``: the run, the dashboard link, the summary; exit 2
    when any file failed."""
    import sys

    if (output.exists() and not output.is_dir()) or output.suffix.lower() in (".tif", ".tiff"):
        raise InputError(f"--cluster writes into a folder, but {output} is a file name")
    kwargs: dict[str, Any] = {
        "scale": args.scale,
        "device": args.device,
        "precision": args.precision,
        "tile": args.tile,
        "overlap": args.overlap,
        "halo": args.halo,
        "batch_size": args.batch_size,
        "consistency": args.consistency,
        "memory_mb": args.memory_mb,
        "bands": args.bands,
        "roi_window": args.roi_window,
        "roi_bounds": args.roi,
        "roi_crs": args.roi_crs,
        "value_contract": args.value_contract,
        "out_dtype": None if args.dtype == "same" else args.dtype,
        "qa": args.qa,
        "cog": args.cog,
        "overwrite": args.overwrite,
        "compress": args.compress,
    }
    for name in (
        "detail",
        "runtime",
        "tile_memory_mb",
    ):  # newer engine options, when the CLI has them
        if getattr(args, name, None) is not None:
            kwargs[name] = getattr(args, name)
    result = upscale_many(
        inputs,
        output,
        cluster=args.cluster,
        model=args.model,
        split_pixels=args.split_pixels,
        retries=args.retries,
        threads=args.threads,
        stac=not args.no_stac,
        progress=not args.quiet,
        on_dashboard=lambda link: print(f"Dask dashboard: {link}", file=sys.stderr, flush=True),
        **kwargs,
    )
    for line in format_summary(result):
        print(line, flush=True)
    return 2 if result.failed else 0
