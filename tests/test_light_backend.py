"""The torch-free light backend: upscale, models list and the worker with ONNX Runtime only.

Two checks (both slow): the package in this environment with torch made unimportable (a
``sitecustomize`` that blocks it), and the real ``.venv-onnx`` built by
``scripts/setup_backend.sh --runtime onnx`` (reused when present, built otherwise), which must
not contain torch. Both outputs are compared with the torch runtime's in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from engine_util import texture, write_raster

from slimdiffsr.engine.run import upscale
from slimdiffsr.engine.runtime import installed

ROOT = Path(__file__).resolve().parents[1]
LIGHT_VENV = ROOT / ".venv-onnx"
BLOCK = "import sys\nfor m in ('torch', 'diffusers', 'torchvision'):\n    sys.modules[m] = None\n"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not installed("onnxruntime"), reason="onnxruntime not installed"),
]


@pytest.fixture(scope="module")
def raster_and_reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("light")
    data = (texture(3, 48, 40, seed=11) * 255).astype(np.uint8)
    src = write_raster(d / "in.tif", data)
    ref = upscale(src, d / "torch.tif", runtime="torch", device="cpu")
    with rasterio.open(ref.output) as f:
        return src, f.read().astype(np.int32)


def run(python: str, args: list[str], env: dict[str, str], stdin: str | None = None):
    proc = subprocess.run(
        [python, *args], capture_output=True, text=True, env=env, input=stdin, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def worker_session(python: str, env: dict[str, str], requests: list[dict]) -> list[dict]:
    """Send requests to one worker, wait for each final answer, then shut it down."""
    proc = subprocess.Popen(
        [python, "-m", "slimdiffsr.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    msgs = [json.loads(proc.stdout.readline())]  # hello
    try:
        for req in requests:
            proc.stdin.write(json.dumps(req) + "\n")
            proc.stdin.flush()
            while True:
                msg = json.loads(proc.stdout.readline())
                msgs.append(msg)
                if msg.get("id") == req["id"] and msg["type"] != "progress":
                    break
        proc.stdin.write(json.dumps({"type": "shutdown"}) + "\n")
        proc.stdin.flush()
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    return msgs


def check_backend(python: str, env: dict[str, str], src: Path, ref: np.ndarray, out: Path):
    cli = ["-m", "slimdiffsr.cli"]
    listing = run(python, [*cli, "models", "list"], env)
    assert "slimdiffsr-nano-x4" in listing and "bicubic-x4" in listing
    run(python, [*cli, "upscale", str(src), str(out), "-q", "--threads", "1"], env)
    with rasterio.open(out) as f:
        got = f.read().astype(np.int32)
        tags = f.tags()
    assert np.abs(got - ref).max() <= 1  # the same image as the torch runtime
    assert tags["SLIMDIFFSR_MODEL"] == "slimdiffsr-nano-x4"
    msgs = worker_session(
        python,
        env,
        [
            {"type": "info", "id": 1},
            {"type": "models", "id": 2},
            {
                "type": "upscale",
                "id": 3,
                "params": {"input": str(src), "output": str(out), "overwrite": True, "tile": 0},
            },
        ],
    )
    info = next(m for m in msgs if m["type"] == "info")
    assert info["runtimes"] == ["onnx"] and info["torch"] is None
    result = next(m for m in msgs if m.get("id") == 3 and m["type"] in ("result", "error"))
    assert result["type"] == "result", result
    assert result["summary"]["runtime"] == "onnx"


def test_package_runs_with_torch_unimportable(tmp_path, raster_and_reference):
    src, ref = raster_and_reference
    (tmp_path / "sitecustomize.py").write_text(BLOCK)
    env = dict(os.environ, PYTHONPATH=str(tmp_path), OMP_NUM_THREADS="1")
    probe = run(
        sys.executable, ["-c", "import importlib.util as u; print(u.find_spec('torch'))"], env
    )
    assert probe.strip() == "None"  # the block works: torch cannot be imported here
    check_backend(sys.executable, env, src, ref, tmp_path / "blocked.tif")


def test_light_venv_has_no_torch_and_upscales(tmp_path, raster_and_reference):
    src, ref = raster_and_reference
    python = LIGHT_VENV / "bin" / "python"
    if not python.exists():
        proc = subprocess.run(
            ["bash", str(ROOT / "scripts" / "setup_backend.sh"), "--runtime", "onnx"],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    probe = run(str(python), ["-c", "import importlib.util as u; print(u.find_spec('torch'))"], env)
    assert probe.strip() == "None"
    size = sum(
        p.stat().st_size for p in LIGHT_VENV.rglob("*") if p.is_file() and not p.is_symlink()
    )
    assert size < 350 * 2**20, f".venv-onnx is {size / 2**20:.0f} MB"
    check_backend(str(python), env, src, ref, tmp_path / "light.tif")
