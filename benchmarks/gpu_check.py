"""One prepared GPU check: CUDA correctness of student and engine, fp16/bf16, and speed.

Run on a machine with CUDA (one command, a few minutes):

    python benchmarks/gpu_check.py --out gpu_report.json

1. Student (paper and nano, random weights) on CUDA in fp32/fp16/bf16 vs the CPU fp32 result
   (max and mean abs error in [-1, 1] units).
2. The engine on a real GeoTIFF: CUDA fp32 and fp16 vs CPU fp32 (max DN difference) and tiles/s.
3. Latency at 512x512 output (median of N), student vs teacher-size network vs RRDBNet, ratios.
4. Output megapixels per second of the shipped default model: torch eager (fp32/fp16/bf16) and
   ONNX Runtime's CUDA and TensorRT execution providers (fp32/fp16, TensorRT also bf16) at
   512x512 (batch 4) and 2048x2048 (batch 1) output, with each one's largest error against the
   CPU fp32 result (needs onnxruntime-gpu for the ONNX rows; they are skipped otherwise).
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


def mp_per_s(fn, x, runs: int, sync=None) -> float:
    """Output megapixels per second of ``fn(x)`` (median of ``runs`` after 3 warm-ups)."""
    times = []
    for i in range(runs + 3):
        if sync:
            sync()
        t = time.perf_counter()
        y = fn(x)
        if sync:
            sync()
        if i >= 3:
            times.append(time.perf_counter() - t)
    return y.shape[0] * y.shape[-2] * y.shape[-1] / statistics.median(times) / 1e6


def check_throughput(report: dict, runs: int) -> None:
    from slimdiffsr.engine.runtime import OnnxRunner, onnx_providers, onnx_twin
    from slimdiffsr.models.registry import load_model, resolve

    rng = np.random.default_rng(0)
    shapes = {"512": (4, 3, 128, 128), "2048": (1, 3, 512, 512)}
    small = rng.uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)
    net = load_model("default").eval()
    with torch.no_grad():
        ref = net(torch.from_numpy(small)).numpy()
    net = net.cuda()
    for p in DTYPES:
        fn = lambda x, p=p, m=net: run(m, x, p)  # noqa: E731
        err = float(np.abs(fn(torch.from_numpy(small).cuda()).cpu().numpy() - ref).max())
        report[f"mp_s_torch_{p}_max_err"] = err
        for name, shape in shapes.items():
            x = torch.from_numpy(rng.uniform(-1, 1, shape).astype(np.float32)).cuda()
            report[f"mp_s_torch_{p}_{name}"] = mp_per_s(fn, x, runs, torch.cuda.synchronize)
    del net
    torch.cuda.empty_cache()
    providers = onnx_providers()
    report["onnx_providers"] = providers
    if "CUDAExecutionProvider" not in providers:
        report["onnx_gpu"] = "skipped: this onnxruntime has no CUDA execution provider"
        return
    path = onnx_twin(resolve("default"))
    for ep in ("cuda", "tensorrt"):
        if ep == "tensorrt" and "TensorrtExecutionProvider" not in providers:
            report["onnx_tensorrt"] = "skipped: no TensorRT execution provider"
            continue
        for p in ("fp32", "fp16", "bf16"):
            if p == "bf16" and ep != "tensorrt":
                continue
            key = f"mp_s_onnx_{ep}_{p}"
            try:
                r = OnnxRunner(path, device="cuda", precision=p, provider=ep)
                report[f"{key}_providers"] = r.providers
                report[f"{key}_max_err"] = float(np.abs(r(small) - ref).max())
                for name, shape in shapes.items():
                    x = rng.uniform(-1, 1, shape).astype(np.float32)
                    report[f"{key}_{name}"] = mp_per_s(r, x, max(3, runs // 5))
            except Exception as e:  # noqa: BLE001 - one provider failing must not hide the rest
                report[f"{key}_error"] = f"{type(e).__name__}: {e}"[:500]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu_report.json")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--raster", default=None, help="GeoTIFF for the engine check (default: demo)")
    p.add_argument("--only-throughput", action="store_true", help="run only check 4")
    a = p.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: this check needs a GPU", file=sys.stderr)
        return 2
    from slimdiffsr.demo import demo_path

    report: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    if not a.only_throughput:
        check_student(report)
        check_engine(report, Path(a.raster) if a.raster else demo_path())
        check_speed(report, a.runs)
    check_throughput(report, a.runs)
    Path(a.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
