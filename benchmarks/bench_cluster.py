"""Files/s of a Dask run with 1 and with 2 local worker processes, measured in the same run.

Each cluster is started and warmed up first (worker processes started, torch imported, model
loaded by the worker plugin, one raster done), so the timed part is what an archive run is made
of: scheduling, reading, the model, writing, the catalogue. The ratio (2 workers / 1 worker)
is the scaling; on a machine with fewer free cores than workers it cannot reach 2.

    python benchmarks/bench_cluster.py                       # 8 rasters of 256 px, bicubic, CPU
    python benchmarks/bench_cluster.py --files 16 --model default --workers 1,2,4
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine


def make_raster(path: Path, size: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    data = np.zeros((3, size, size), np.float32)
    for b in range(3):
        for _ in range(6):
            fy, fx = rng.uniform(0.01, 0.2, 2)
            data[b] += np.sin(fy * yy + fx * xx + rng.uniform(0, 6.3))
    data = (data - data.min()) / (np.ptp(data) + 1e-6) * 255
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32618",
        "transform": Affine(1.0, 0, 500000, 0, -1.0, 4500000),
        "tiled": True,
        "blockxsize": 128,
        "blockysize": 128,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(np.uint8))
    return path


def run(n_workers: int, inputs: list[Path], work: Path, args: argparse.Namespace) -> dict:
    from distributed import Client, LocalCluster

    from slimdiffsr.cluster import upscale_many

    kw = {"model": args.model, "device": args.device, "tile": args.tile, "stac": True}
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as lc,
        Client(lc) as client,
    ):
        client.wait_for_workers(n_workers, timeout=300)
        warm = upscale_many(inputs[:n_workers], work / f"warm{n_workers}", cluster=client, **kw)
        assert warm.ok, warm.failed
        t0 = time.perf_counter()
        res = upscale_many(inputs, work / f"out{n_workers}", cluster=client, **kw)
        dt = time.perf_counter() - t0
    assert res.ok, res.failed
    return {
        "workers": n_workers,
        "files": len(inputs),
        "time_s": dt,
        "files_per_s": len(inputs) / dt,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=8)
    p.add_argument("--size", type=int, default=256, help="input raster side in pixels")
    p.add_argument("--model", default="bicubic-x4")
    p.add_argument("--device", default="cpu")
    p.add_argument("--tile", type=int, default=128)
    p.add_argument("--workers", default="1,2", help="worker counts to compare (first is the base)")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    counts = [int(v) for v in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        (work / "in").mkdir()
        inputs = [make_raster(work / "in" / f"r{i}.tif", args.size, i) for i in range(args.files)]
        rows = [run(n, inputs, work, args) for n in counts]
    base = rows[0]["files_per_s"]
    for r in rows:
        r["ratio_vs_first"] = r["files_per_s"] / base
        print(
            f"{r['workers']} worker(s): {r['files']} files in {r['time_s']:.1f} s = "
            f"{r['files_per_s']:.2f} files/s (x{r['ratio_vs_first']:.2f})"
        )
    print(json.dumps({"benchmark": "cluster", "cpu_count": os.cpu_count(), "runs": rows}))


if __name__ == "__main__":
    main()
