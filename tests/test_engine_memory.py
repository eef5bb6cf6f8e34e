"""Memory does not grow with the raster: a 2.1 GB output from a 133 MB input (bicubic, slow).

Bound asserted: peak RSS - resident RSS after importing the engine (importing torch alone takes
~650 MB here) <= memory_mb (the blending strip, 128) + GDAL's block cache (128) + 256 MB for
the tile batch, the write pieces and allocator slack = 512 MB. Measured on the development
machine (2 shared CPU cores): growth 275 MB, 2.12 GB written in about 110 s.
The strip budget forces two column chunks here, so the chunked path is exercised at scale.
Takes about one to two minutes on two CPU cores (most of it writing 2.1 GB).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import rasterio
from engine_util import TRANSFORM, UTM

from slimdiffsr.engine.run import GDAL_CACHE_MB

N = 11520  # LR side: x4 gives 46080 x 46080 = 2.12 GB of uint8
MEMORY_MB = 128

SCRIPT = textwrap.dedent(
    """
    import json, os, resource, sys, time
    import torch
    from slimdiffsr.engine.run import upscale
    # warm up torch's lazily loaded kernels: their resident size is not the run's growth
    torch.nn.functional.interpolate(torch.zeros(1, 1, 8, 8), scale_factor=4, mode="bicubic")
    try:  # resident now (Linux); the import's own transient peak must not hide the run's growth
        with open("/proc/self/statm") as f:
            base = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    r = upscale(sys.argv[1], sys.argv[2], model="bicubic", tile=256, overlap=32,
                compress="none", memory_mb=int(sys.argv[3]))
    # VmHWM is this process image's peak; ru_maxrss would carry the forking parent's RSS over exec
    try:
        with open("/proc/self/status") as f:
            peak = next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"baseline_mb": base, "peak_mb": peak, "time_s": time.perf_counter() - t,
                      "summary": r.summary}))
    """
)


def write_large_input(path, n: int) -> None:
    """A smooth-plus-pattern uint8 raster, written strip by strip (the test stays small too)."""
    profile = {
        "driver": "GTiff",
        "width": n,
        "height": n,
        "count": 1,
        "dtype": "uint8",
        "crs": UTM,
        "transform": TRANSFORM,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
    }
    xx = np.arange(n)
    with rasterio.open(path, "w", **profile) as dst:
        for y in range(0, n, 512):
            yy = np.arange(y, min(y + 512, n))[:, None]
            a = (
                np.sin(xx / 37.0)[None] * 60
                + np.cos(yy / 23.0) * 60
                + 128
                + (xx * 7 + yy * 13) % 17
            )
            dst.write(a.astype(np.uint8)[None], window=rasterio.windows.Window(0, y, n, a.shape[0]))


@pytest.mark.slow
def test_peak_rss_bounded_on_multi_gb_output(tmp_path):
    src, out = tmp_path / "large.tif", tmp_path / "large_x4.tif"
    write_large_input(src, N)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(src), str(out), str(MEMORY_MB)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    size = out.stat().st_size
    assert size > 2.0e9  # several GB written ...
    growth = res["peak_mb"] - res["baseline_mb"]
    bound = MEMORY_MB + GDAL_CACHE_MB + 256
    print(f"output {size / 1e9:.2f} GB in {res['time_s']:.0f} s; peak RSS growth {growth:.0f} MB")
    assert growth <= bound, (
        f"peak RSS grew by {growth:.0f} MB (bound {bound} MB)"
    )  # ... in bounded memory
    s = res["summary"]
    assert s["output_size"] == [N * 4, N * 4] and s["tiles_computed"] == s["tiles"]
    with rasterio.open(out) as d:
        assert (d.width, d.height) == (N * 4, N * 4)
        # spot-check the far corner (last chunk, last block row) holds real values
        corner = d.read(1, window=rasterio.windows.Window(N * 4 - 64, N * 4 - 64, 64, 64))
    assert corner.std() > 1


MODEL_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np
    from slimdiffsr.engine.run import Upscaler
    up = Upscaler("default", runtime=sys.argv[3], device="cpu", threads=1,
                  tile_memory_mb=int(sys.argv[4]), memory_mb=128)
    up.forward(np.zeros((1, 3, 8, 8), np.float32))  # lazy kernels and arenas of a tiny call
    with open("/proc/self/statm") as f:
        base = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    t = time.perf_counter()
    r = up.run(sys.argv[1], sys.argv[2], compress="none")
    with open("/proc/self/status") as f:
        peak = next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
    print(json.dumps({"baseline_mb": base, "peak_mb": peak, "time_s": time.perf_counter() - t,
                      "tile": r.summary["tile"], "tiles": r.summary["tiles"],
                      "bytes_per_pixel": up.runner.bytes_per_pixel}))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for the peak")
def test_default_model_peak_bounded_by_the_tile_budget(tmp_path):
    """The default model at tiles sized from a 768 MB budget (several tiles, each near the
    largest that fits): peak growth stays within that budget + the strip + GDAL's cache +
    256 MB slack. This checks that the model's declared bytes per pixel are an upper bound."""
    from engine_util import texture, write_raster

    from slimdiffsr.engine.runtime import available_runtimes

    runtime = "onnx" if "onnx" in available_runtimes() else "torch"
    budget = 768
    src = write_raster(tmp_path / "in.tif", (texture(3, 192, 256, seed=2) * 255).astype(np.uint8))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            MODEL_SCRIPT,
            str(src),
            str(tmp_path / "o.tif"),
            runtime,
            str(budget),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    growth = res["peak_mb"] - res["baseline_mb"]
    bound = budget + 128 + GDAL_CACHE_MB + 256
    print(f"{runtime}: {res['tiles']} tiles of {res['tile']} px, peak growth {growth:.0f} MB")
    assert res["tiles"] > 1 and res["tile"] > 64  # several large tiles, not the old 128 grid
    assert growth <= bound, f"peak RSS grew by {growth:.0f} MB (bound {bound} MB)"
