"""Throughput of what a user waits for, against the network alone, per runtime, in one run.

Ratios are measured in the same process and run, interleaved (A B A B ...), so a drifting
machine moves both sides; the best of ``--repeat`` is kept for each.

1. Engine vs bare forward on the same delivered pixels: ``Upscaler.run`` on a ``size`` x ``size``
   GeoTIFF (reading, value mapping, tiling, model, blending, writing, QA statistics) against one
   bare forward of the raster's own pixels (no halo, no tiles). Efficiency = bare / engine
   (goal >= 0.7 at 256 x 256).
2. ONNX Runtime vs torch eager, end to end (the same engine, the same tiles), and their outputs'
   largest difference in DN (goal: >= 1.5x, <= 1 DN).
3. Output megapixels per second on this CPU (engine).
4. Warm worker vs cold start: a worker process answering two identical jobs; the first pays the
   start-up (imports, model load), the second is what a plugin with a kept worker waits for.

    python benchmarks/bench_runtime.py                     # 256 x 256, default model, 2 repeats
    python benchmarks/bench_runtime.py --size 384 --threads 2 --json runtime.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import make_raster  # noqa: E402

from slimdiffsr.engine.runtime import available_runtimes  # noqa: E402


def timed(fn) -> tuple[float, float, object]:
    """(wall s, process CPU s, result) of one call."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def model_input(path: Path) -> np.ndarray:
    """The raster's own pixels in model units (uint8 as is: the default model's domain)."""
    with rasterio.open(path) as src:
        return (src.read().astype(np.float32) / 127.5 - 1.0)[None]


def bench_engine(a: argparse.Namespace, src: Path, tmp: Path) -> dict:
    from slimdiffsr.engine.run import Upscaler

    runtimes = [r for r in a.runtimes.split(",") if r in available_runtimes()]
    ups = {
        rt: Upscaler(a.model, runtime=rt, device="cpu", threads=a.threads, tile_memory_mb=a.budget)
        for rt in runtimes
    }
    x = model_input(src)
    rows: dict[str, dict] = {
        rt: {"bare": [], "engine": [], "bare_cpu": [], "engine_cpu": [], "cli": []}
        for rt in runtimes
    }
    from slimdiffsr.cli import main as cli_main

    def cli(rt: str, out: Path) -> int:
        """The whole command in this process: model loading, engine, writing."""
        argv = ["upscale", str(src), str(out), "--overwrite", "-q", "--runtime", rt]
        return cli_main([*argv, "--threads", str(a.threads), "--device", "cpu"])

    for up in ups.values():  # warm-up: lazy kernels, allocator, ORT arena
        up.forward(x)
    outs = {}
    for r in range(a.repeat):
        for rt, up in ups.items():
            w, c, _ = timed(lambda up=up: up.forward(x))
            rows[rt]["bare"].append(w)
            rows[rt]["bare_cpu"].append(c)
            out = tmp / f"{rt}_{r}.tif"
            w, c, res = timed(lambda up=up, out=out: up.run(src, out, overwrite=True))
            rows[rt]["engine"].append(w)
            rows[rt]["engine_cpu"].append(c)
            rows[rt]["tiles"] = res.summary["tiles"]
            if a.cli:
                w, _, rc = timed(lambda rt=rt, out=out: cli(rt, out))
                assert rc == 0
                rows[rt]["cli"].append(w)
            rows[rt]["tile"] = res.summary["tile"]
            outs[rt] = out
    report: dict = {"size": a.size, "threads": a.threads, "model": a.model}
    mp = (a.size * ups[runtimes[0]].scale) ** 2 / 1e6
    for rt, d in rows.items():
        bare, eng = min(d["bare"]), min(d["engine"])
        report[rt] = {
            "tiles": d["tiles"],
            "tile": d["tile"],
            "bare_forward_s": round(bare, 3),
            "engine_s": round(eng, 3),
            "efficiency_bare_over_engine": round(bare / eng, 3),
            "efficiency_cpu_time": round(min(d["bare_cpu"]) / min(d["engine_cpu"]), 3),
            "output_mp_per_s": round(mp / eng, 4),
        }
        if d["cli"]:
            report[rt]["cli_in_process_s"] = round(min(d["cli"]), 3)
            report[rt]["efficiency_bare_over_cli"] = round(bare / min(d["cli"]), 3)
    if "onnx" in rows and "torch" in rows:
        report["onnx_speedup_end_to_end"] = round(
            min(rows["torch"]["engine"]) / min(rows["onnx"]["engine"]), 3
        )
        report["onnx_speedup_bare"] = round(
            min(rows["torch"]["bare"]) / min(rows["onnx"]["bare"]), 3
        )
        with rasterio.open(outs["onnx"]) as f1, rasterio.open(outs["torch"]) as f2:
            d = np.abs(f1.read().astype(np.int32) - f2.read().astype(np.int32))
        report["onnx_vs_torch_max_dn"] = int(d.max())
        report["onnx_vs_torch_fraction_differing"] = float((d > 0).mean())
    return report


def bench_worker(a: argparse.Namespace, tmp: Path) -> dict:
    """Two identical jobs through one worker: cold (first) vs warm (second) time to result."""
    small = make_raster(tmp / "worker_in.tif", a.worker_size)
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "slimdiffsr.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    t_start = time.perf_counter()
    assert proc.stdin is not None and proc.stdout is not None
    hello = json.loads(proc.stdout.readline())
    t_hello = time.perf_counter() - t_start
    times = []
    first_progress = []
    for i in range(2):
        params = {
            "input": str(small),
            "output": str(tmp / f"worker_out_{i}.tif"),
            "overwrite": True,
            "tile": 0,
            "overlap": 0,
            "runtime": a.worker_runtime,
            "threads": a.threads,
        }
        t = time.perf_counter()
        proc.stdin.write(json.dumps({"type": "upscale", "id": i, "params": params}) + "\n")
        proc.stdin.flush()
        fp = None
        while True:
            msg = json.loads(proc.stdout.readline())
            if msg["type"] == "progress" and fp is None and msg["done"] == 0:
                fp = time.perf_counter() - t
            if msg["type"] in ("result", "error"):
                if msg["type"] == "error":
                    raise RuntimeError(msg)
                break
        times.append(time.perf_counter() - t)
        first_progress.append(fp)
    proc.stdin.write(json.dumps({"type": "shutdown"}) + "\n")
    proc.stdin.flush()
    proc.wait(timeout=60)
    return {
        "raster": a.worker_size,
        "runtime": a.worker_runtime,
        "hello_s": round(t_hello, 3),
        "cold_first_job_s": round(times[0] + t_hello, 3),
        "warm_second_job_s": round(times[1], 3),
        "cold_over_warm": round((times[0] + t_hello) / times[1], 3),
        "time_to_first_tile_cold_s": round((first_progress[0] or 0) + t_hello, 3),
        "time_to_first_tile_warm_s": round(first_progress[1] or 0, 3),
        "hello_protocol": hello.get("protocol"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--size", type=int, default=256, help="LR raster side")
    p.add_argument("--runtimes", default="onnx,torch")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--budget", type=int, default=None, help="tile_memory_mb (default: automatic)")
    p.add_argument("--worker-size", type=int, default=64)
    p.add_argument("--worker-runtime", default="auto")
    p.add_argument("--skip-worker", action="store_true")
    p.add_argument("--cli", action="store_true", help="also time the CLI command in-process")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    try:
        import torch

        torch.set_num_threads(a.threads)
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        src = make_raster(tmp / "bench.tif", a.size)
        report = {"engine": bench_engine(a, src, tmp)}
        print(json.dumps(report["engine"], indent=2), flush=True)
        if not a.skip_worker:
            report["worker"] = bench_worker(a, tmp)
            print(json.dumps(report["worker"], indent=2), flush=True)
    if a.json:
        a.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
