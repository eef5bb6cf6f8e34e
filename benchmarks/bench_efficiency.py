"""Efficiency per model at one output size: parameters, MACs, latency and peak memory.

Every number is also given as a ratio to a baseline measured in the same run (default: the first
model), because absolute CPU timings on a shared machine mean little. Each model is measured in a
fresh subprocess so peak memory is its own: CUDA uses ``torch.cuda.max_memory_allocated``; CPU
reports the growth of the process's peak RSS during inference (activations + workspace, not the
weights). MACs come from ``torch.utils.flop_counter`` (1 MAC = 2 FLOPs; convolutions and matrix
products only, so bicubic counts 0). Latency is the median of ``--runs`` timed forwards after one
warm-up, fp32 batch 1 unless ``--precision`` says otherwise (method.md section 7 uses 512x512
output, median of 100 runs).

    python benchmarks/bench_efficiency.py                               # bicubic, nano, paper
    python benchmarks/bench_efficiency.py --models default,bicubic --output 256 --runs 5
    python benchmarks/bench_efficiency.py --device cuda --runs 100 --json eff.json

Model specs: ``bicubic``, an installed model name or ``.safetensors`` path (``default``), or
``preset:NAME`` for a randomly initialised student preset (``preset:nano``, ``preset:paper``);
``rrdbnet`` adds the ESRGAN generator from ``rrdbnet.py``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def build(spec: str, scale: int, device: str) -> Any:
    """A model in eval mode from a spec (see the module docstring)."""
    import torch

    if spec.startswith("preset:"):
        from slimdiffsr.models.student import SlimDiffSRStudent

        torch.manual_seed(0)
        return SlimDiffSRStudent.from_preset(spec.split(":", 1)[1], scale=scale).to(device).eval()
    if spec == "rrdbnet":
        sys.path.insert(0, str(HERE))
        from rrdbnet import RRDBNet

        return RRDBNet().to(device).eval()
    from slimdiffsr.models.registry import load_model

    return load_model(spec, device=device, scale=scale if spec.startswith("bicubic") else None)


def _max_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2**20


def measure(spec: str, output: int, scale: int, device: str, runs: int, precision: str) -> dict:
    """All numbers for one model; runs in its own process (see :func:`main`)."""
    import torch

    sys.path.insert(0, str(HERE))
    from bench_student import count, n_params

    with torch.no_grad():
        return _measure(torch, spec, output, scale, device, runs, precision, count, n_params)


def _measure(torch, spec, output, scale, device, runs, precision, count, n_params) -> dict:  # noqa: ANN001
    model = build(spec, scale, device)
    lr = torch.rand(1, 3, output // scale, output // scale, device=device) * 2 - 1
    params = n_params(model)
    dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    cuda = lr.is_cuda
    rss0 = _max_rss_mb()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    with torch.inference_mode():
        for i in range(runs + 1):
            if cuda:
                torch.cuda.synchronize()
            t = time.perf_counter()
            with torch.autocast(lr.device.type, dtype=dtype, enabled=dtype is not None):
                out = model(lr)
            if cuda:
                torch.cuda.synchronize()
            if i:  # the first run is warm-up
                times.append(time.perf_counter() - t)
            del out
    if cuda:
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = max(0.0, _max_rss_mb() - rss0)
    macs = count(model, lr) // 2  # after timing: its forward must not set the memory peak
    return {
        "model": spec,
        "name": getattr(getattr(model, "card", None), "name", spec),
        "params": params,
        "macs": macs,
        "latency_s": statistics.median(times),
        "latency_runs": runs,
        "peak_mem_mb": peak,
        "peak_mem_kind": "cuda allocated" if cuda else "cpu peak RSS growth",
    }


def _worker(q: Any, *args: Any) -> None:
    try:
        q.put(measure(*args))
    except Exception as e:  # report it in the table instead of killing the run
        q.put({"model": args[0], "error": f"{type(e).__name__}: {e}"})


def run_isolated(spec: str, *args: Any) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_worker, args=(q, spec, *args))
    p.start()
    res = q.get()
    p.join()
    return res


def format_rows(rows: list[dict], baseline: dict) -> str:
    head = f"{'model':24s} {'params M':>9s} {'x':>7s} {'GMACs':>9s} {'x':>7s} {'latency s':>10s} {'x':>7s} {'peak MB':>9s} {'x':>7s}"
    lines = [head, "-" * len(head)]

    def ratio(a: float, b: float) -> str:
        return f"{a / b:7.2f}" if b else f"{'-':>7s}"

    for r in rows:
        if "error" in r:
            lines.append(f"{r['model']:24s} failed: {r['error']}")
            continue
        lines.append(
            f"{r['name'][:24]:24s} {r['params'] / 1e6:9.3f} {ratio(r['params'], baseline['params'])} "
            f"{r['macs'] / 1e9:9.2f} {ratio(r['macs'], baseline['macs'])} "
            f"{r['latency_s']:10.4f} {ratio(r['latency_s'], baseline['latency_s'])} "
            f"{r['peak_mem_mb']:9.1f} {ratio(r['peak_mem_mb'], baseline['peak_mem_mb'])}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="bicubic,preset:nano,preset:paper")
    p.add_argument("--baseline", help="model spec the ratios refer to (default: first)")
    p.add_argument("--output", type=int, default=512, help="output side in pixels")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    p.add_argument("--json", help="write the rows (and the setup) here")
    a = p.parse_args(argv)
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    if a.output % a.scale:
        p.error("--output must be a multiple of --scale")
    specs = [s.strip() for s in a.models.split(",") if s.strip()]
    base_spec = a.baseline or specs[0]
    if base_spec not in specs:
        specs.insert(0, base_spec)
    rows = [run_isolated(s, a.output, a.scale, device, a.runs, a.precision) for s in specs]
    baseline = next(r for r in rows if r["model"] == base_spec)
    if "error" in baseline:
        print(f"baseline {base_spec} failed: {baseline['error']}", file=sys.stderr)
        return 1
    setup = {
        "output": a.output,
        "scale": a.scale,
        "device": torch.cuda.get_device_name()
        if device == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)",
        "precision": a.precision,
        "runs": a.runs,
        "torch": torch.__version__,
        "baseline": base_spec,
    }
    print(
        f"output {a.output}x{a.output} (x{a.scale}), {setup['device']}, {a.precision}, "
        f"median of {a.runs} runs, ratios to {baseline.get('name', base_spec)}"
    )
    print(format_rows(rows, baseline))
    if a.json:
        Path(a.json).write_text(json.dumps({"setup": setup, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
