"""One prepared GPU check: CUDA correctness of student and engine, fp16/bf16, and speed.

Run on a machine with CUDA (one command, a few minutes):

    python benchmarks/gpu_check.py --out gpu_report.json

1. Student (paper and nano, random weights) on CUDA in fp32/fp16/bf16 vs the CPU fp32 result
   (max and mean abs error in [-1, 1] units).
2. The engine on a real GeoTIFF: CUDA fp32 and fp16 vs CPU fp32 (max DN difference) and tiles/s.
3. Latency at 512x512 output (median of N), student vs teacher-size network vs RRDBNet, ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_student import TeacherSize  # noqa: E402
from rrdbnet import RRDBNet  # noqa: E402

from slimdiffsr.models.student import SlimDiffSRStudent  # noqa: E402

DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def run(model: torch.nn.Module, x: torch.Tensor, precision: str) -> torch.Tensor:
    dtype = DTYPES[precision]
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
        return model(x).float()


def median_time(model: torch.nn.Module, x: torch.Tensor, precision: str, runs: int) -> float:
    times = []
    for i in range(runs + 3):
        torch.cuda.synchronize()
        t = time.perf_counter()
        run(model, x, precision)
        torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def check_student(report: dict) -> None:
    torch.manual_seed(0)
    lr = torch.rand(1, 3, 64, 64) * 2 - 1
    for preset in ("paper", "nano"):
        m = SlimDiffSRStudent.from_preset(preset).eval()
        if preset == "nano":  # leave the bicubic start point so the network matters
            with torch.no_grad():
                m.vae.decoder.layers[-1].weight.normal_(0, 0.02)
        with torch.no_grad():
            ref = m(lr)
        m = m.cuda()
        for p in DTYPES:
            out = run(m, lr.cuda(), p).cpu()
            err = (out - ref).abs()
            report[f"student_{preset}_{p}"] = {
                "max_abs": float(err.max()),
                "mean_abs": float(err.mean()),
                "finite": bool(torch.isfinite(out).all()),
            }


def check_engine(report: dict, raster: Path) -> None:
    import rasterio

    from slimdiffsr.engine.run import upscale

    with tempfile.TemporaryDirectory() as d:
        outs = {}
        for device, p in (("cpu", "fp32"), ("cuda", "fp32"), ("cuda", "fp16"), ("cuda", "bf16")):
            out = Path(d) / f"{device}_{p}.tif"
            t = time.perf_counter()
            res = upscale(raster, out, model="default", device=device, precision=p)
            dt = time.perf_counter() - t
            with rasterio.open(out) as src:
                outs[(device, p)] = src.read().astype(np.int32)
            report[f"engine_{device}_{p}_seconds"] = dt
            report[f"engine_{device}_{p}_summary"] = res.summary_line()
        ref = outs[("cpu", "fp32")]
        for key, arr in outs.items():
            report[f"engine_{key[0]}_{key[1]}_max_dn_vs_cpu"] = int(np.abs(arr - ref).max())


def check_speed(report: dict, runs: int) -> None:
    lr = torch.rand(1, 3, 128, 128, device="cuda") * 2 - 1
    nets = {
        "student_paper": SlimDiffSRStudent.from_preset("paper"),
        "rrdbnet": RRDBNet(),
        "teacher_size": TeacherSize(),
    }
    for name, net in nets.items():
        net = net.cuda().eval()
        for p in ("fp32", "fp16"):
            report[f"latency_512_{name}_{p}"] = median_time(net, lr, p, runs)
        del net
        torch.cuda.empty_cache()
    for p in ("fp32", "fp16"):
        base = report[f"latency_512_student_paper_{p}"]
        for name in ("rrdbnet", "teacher_size"):
            report[f"ratio_{name}_over_student_{p}"] = report[f"latency_512_{name}_{p}"] / base


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu_report.json")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--raster", default=None, help="GeoTIFF for the engine check (default: demo)")
    a = p.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: this check needs a GPU", file=sys.stderr)
        return 2
    from slimdiffsr.demo import demo_path

    report: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    check_student(report)
    check_engine(report, Path(a.raster) if a.raster else demo_path())
    check_speed(report, a.runs)
    Path(a.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
