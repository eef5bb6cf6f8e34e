"""Engine throughput vs the bare model forward on the same tiles: overhead ratio and tiles/s.

The engine run includes everything a user waits for: reading windows with halo, nodata checks,
the value contract, the model, blending, conversion, masking, QA statistics and the compressed
GeoTIFF write. The bare forward runs the model alone on exactly the same tile tensors (same
shapes, same batches, already on the device). Overhead ratio = engine time / bare time (goal
<= 1.15 with a real network). Bicubic is reported too: there the "model" costs almost nothing,
so the ratio shows the engine's fixed cost per pixel, not a target.

This compares against the same padded tiles, so it cannot see work spent on halos and overlaps;
``bench_runtime.py`` measures the engine against one bare forward of the raster's own pixels
(the delivered pixels), with the default tile geometry, per runtime.

    python benchmarks/bench_engine.py                          # nano student + bicubic on the CPU
    python benchmarks/bench_engine.py --device cuda --precision fp32,fp16 --size 1024
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine

from slimdiffsr.engine import raster_io
from slimdiffsr.engine.run import Upscaler
from slimdiffsr.engine.tiling import TileGrid


def make_raster(path: Path, size: int, bands: int = 3) -> Path:
    """Smooth random imagery, uint8, UTM, tiled: stands in for an aerial orthophoto."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    data = np.zeros((bands, size, size), np.float32)
    for b in range(bands):
        for _ in range(6):
            fy, fx = rng.uniform(0.01, 0.2, 2)
            data[b] += np.sin(fy * yy + fx * xx + rng.uniform(0, 6.3))
        data[b] += rng.normal(0, 0.2, (size, size))
    data = (data - data.min()) / (data.max() - data.min()) * 255
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": bands,
        "dtype": "uint8",
        "crs": "EPSG:32618",
        "transform": Affine(1.0, 0, 500000, 0, -1.0, 4500000),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(np.uint8))
    return path


def build_model(name: str) -> torch.nn.Module | str:
    if name == "nano":
        from slimdiffsr.models.student import SlimDiffSRStudent

        torch.manual_seed(0)
        return SlimDiffSRStudent.from_preset("nano", scale=4)
    return name


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def tile_batches(up: Upscaler, src_path: Path) -> list[torch.Tensor]:
    """The engine's tile inputs (model units, with halo), batched as the engine batches them."""
    with rasterio.open(src_path) as src:
        grid = TileGrid(raster_io.raster_window(src), up.tile, up.overlap, up.scale, up.margin)
        bands = list(range(1, src.count + 1))
        tiles = []
        for t in grid:
            data, _ = raster_io.read_padded(src, bands, t.read_window(up.halo))
            tiles.append(data.astype(np.float32) / 127.5 - 1.0)
    b = up.batch_size
    return [torch.from_numpy(np.stack(tiles[i : i + b])) for i in range(0, len(tiles), b)]


def bench(model_name: str, precision: str, a: argparse.Namespace, src: Path, tmp: Path) -> dict:
    up = Upscaler(
        build_model(model_name),
        device=a.device,
        precision=precision,
        tile=a.tile,
        overlap=a.overlap,
        batch_size=a.batch_size,
    )
    batches = [x.to(up.device) for x in tile_batches(up, src)]
    n_tiles = sum(x.shape[0] for x in batches)
    up.forward(batches[0])  # warm-up (allocator, cuDNN, lazy init)
    bare, engine = [], []
    for r in range(a.repeat):
        sync(up.device)
        t = time.perf_counter()
        for x in batches:
            up.forward(x)
        sync(up.device)
        bare.append(time.perf_counter() - t)
        out = tmp / f"{model_name}_{precision}_{r}.tif"
        t = time.perf_counter()
        res = up.run(src, out, overwrite=True)
        sync(up.device)
        engine.append(time.perf_counter() - t)
        assert res.summary["tiles_computed"] == n_tiles
    tb, te = min(bare), min(engine)
    return {
        "model": model_name,
        "device": str(up.device),
        "precision": precision,
        "size": a.size,
        "tile": a.tile,
        "overlap": a.overlap,
        "batch_size": a.batch_size,
        "tiles": n_tiles,
        "bare_s": round(tb, 3),
        "engine_s": round(te, 3),
        "overhead_ratio": round(te / tb, 3),
        "tiles_per_s": round(n_tiles / te, 2),
        "bare_tiles_per_s": round(n_tiles / tb, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="nano,bicubic", help="comma list: nano, bicubic, or names")
    p.add_argument("--size", type=int, default=384, help="LR raster side in pixels")
    p.add_argument("--tile", type=int, default=128)
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--precision", default="fp32", help="comma list: fp32,fp16,bf16 (GPU for 16-bit)"
    )
    p.add_argument("--repeat", type=int, default=2, help="runs per measurement (best is kept)")
    p.add_argument("--json", type=Path, help="also write the results here")
    a = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        src = make_raster(tmp / "bench.tif", a.size)
        for model_name in a.models.split(","):
            for precision in a.precision.split(","):
                row = bench(model_name, precision, a, src, tmp)
                rows.append(row)
                print(
                    f"{row['model']:>8} {row['device']:>6} {row['precision']}: {row['tiles']} tiles, "
                    f"bare {row['bare_s']:.2f} s, engine {row['engine_s']:.2f} s, "
                    f"overhead x{row['overhead_ratio']:.3f}, {row['tiles_per_s']:.2f} tiles/s",
                    flush=True,
                )
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
