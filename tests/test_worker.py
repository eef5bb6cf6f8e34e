"""The JSON-lines worker, driven like the QGIS plugin drives it: a real subprocess and pipes."""

from __future__ import annotations

import ast
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from engine_util import texture, write_raster

from slimdiffsr import protocol as P

ROOT = Path(__file__).resolve().parents[1]


class WorkerProc:
    """``python -m slimdiffsr.worker`` with a line queue on stdout (every line must be protocol)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "slimdiffsr.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # drain the log

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, msg: dict) -> None:
        self.proc.stdin.write(P.encode(msg))
        self.proc.stdin.flush()

    def next(self, timeout: float = 120.0) -> dict | None:
        line = self.lines.get(timeout=timeout)
        return None if line is None else P.decode(line)  # raises if not a protocol line

    def until(self, types: tuple[str, ...], timeout: float = 120.0) -> tuple[dict, list[dict]]:
        events = []
        while True:
            msg = self.next(timeout)
            assert msg is not None, "worker closed stdout"
            if msg["type"] in types:
                return msg, events
            events.append(msg)

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait(10)


@pytest.fixture
def worker():
    w = WorkerProc()
    yield w
    w.close()


@pytest.fixture
def raster(tmp_path):
    data = (texture(3, 96, 96, seed=51) * 255).astype(np.uint8)
    return write_raster(tmp_path / "in.tif", data)


def job(rid, src, out, **params):
    return {
        "type": "upscale",
        "id": rid,
        "params": {"input": str(src), "output": str(out), **params},
    }


def test_session_hello_info_models_upscale_errors_shutdown(worker, raster, tmp_path):
    hello = worker.next(timeout=60)
    assert hello["type"] == "hello" and hello["protocol"] == P.PROTOCOL_VERSION
    assert hello["version"] and hello["python"].count(".") == 2

    worker.send({"type": "info", "id": "i"})
    info, _ = worker.until(("info",))
    assert info["id"] == "i" and isinstance(info["cuda"], bool) and info["torch"]
    assert any(d["kind"] == "cpu" for d in info["devices"]) and info["executable"]

    worker.send({"type": "models", "id": "m"})
    models, _ = worker.until(("models",))
    assert {"bicubic-x4", "bicubic-x8"} <= {m["name"] for m in models["models"]}

    out = tmp_path / "sr.tif"
    worker.send(job("u", raster, out, model="bicubic", tile=32, overlap=16, qa=True))
    result, events = worker.until(("result", "error"))
    assert result["type"] == "result", result
    assert result["output"] == str(out) and out.exists()
    assert result["qa_output"] == str(tmp_path / "sr_qa.tif")
    assert (
        result["summary"]["output_size"] == [384, 384] and result["summary"]["tiles_computed"] == 25
    )
    assert events and all(e["type"] == "progress" and e["id"] == "u" for e in events)
    assert events[-1]["done"] == events[-1]["total"] == 25 and events[-1]["fraction"] == 1.0

    worker.send(job("again", raster, out, model="bicubic"))  # exists, no overwrite
    err, _ = worker.until(("error",))
    assert err["id"] == "again" and err["kind"] == "input" and "exists" in err["message"]
    worker.send(job("m2", raster, tmp_path / "x.tif", model="no-such-model"))
    err, _ = worker.until(("error",))
    assert err["kind"] == "model"
    worker.send(
        {"type": "upscale", "id": "p", "params": {"input": "a.tif", "output": "b.tif", "colour": 1}}
    )
    err, _ = worker.until(("error",))
    assert err["kind"] == "input" and "colour" in err["message"]
    worker.proc.stdin.write("this is not json\n")
    worker.proc.stdin.flush()
    err, _ = worker.until(("error",))
    assert err["id"] is None and err["kind"] == "input"

    worker.send({"type": "shutdown"})
    assert worker.proc.wait(30) == 0


def test_cancel_stops_the_job_and_leaves_no_file(worker, tmp_path):
    data = (texture(3, 256, 256, seed=52) * 255).astype(np.uint8)
    src = write_raster(tmp_path / "big.tif", data)
    out = tmp_path / "out.tif"
    assert worker.next(timeout=60)["type"] == "hello"
    worker.send(job(7, src, out, model="bicubic", tile=32, overlap=16))
    first = worker.next()
    assert first["type"] == "progress"
    worker.send({"type": "cancel", "id": 7})
    err, events = worker.until(("error", "result"))
    assert err["type"] == "error" and err["kind"] == "cancelled" and err["id"] == 7
    assert events[-1]["done"] < events[-1]["total"] if events else True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tif"]  # no output, no temp
    # the worker is still usable afterwards
    worker.send(job(8, src, out, model="bicubic", roi_window=[0, 0, 32, 32], tile=32, overlap=16))
    ok, _ = worker.until(("result", "error"))
    assert ok["type"] == "result" and out.exists()


@pytest.mark.parametrize("how", ["eof", "sigterm"])
def test_eof_or_sigterm_cancel_and_exit(worker, tmp_path, how):
    data = (texture(3, 256, 256, seed=53) * 255).astype(np.uint8)
    src = write_raster(tmp_path / "big.tif", data)
    assert worker.next(timeout=60)["type"] == "hello"
    worker.send(job(1, src, tmp_path / "out.tif", model="bicubic", tile=32, overlap=16))
    assert worker.next()["type"] == "progress"
    if how == "eof":
        worker.proc.stdin.close()
    else:
        worker.proc.send_signal(signal.SIGTERM)
    err, _ = worker.until(("error", "result"))
    assert err["type"] == "error" and err["kind"] == "cancelled"
    assert worker.proc.wait(30) == 0
    time.sleep(0.1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tif"]


def test_protocol_module_is_stdlib_only_and_shared_with_the_plugin():
    path = ROOT / "core" / "slimdiffsr" / "protocol.py"
    tree = ast.parse(path.read_text())
    mods = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    mods |= {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    }
    assert mods <= set(sys.stdlib_module_names) | {"__future__"}
    link = ROOT / "qgis_plugin" / "protocol.py"
    assert link.is_symlink() and link.resolve() == path.resolve()


def test_worker_imports_no_torch_before_hello():
    """Module-level imports of the worker are stdlib and the light slimdiffsr modules only."""
    tree = ast.parse((ROOT / "core" / "slimdiffsr" / "worker.py").read_text())
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in top if isinstance(n, ast.ImportFrom) and n.module}
    assert not {
        m for m in names if m.startswith(("torch", "numpy", "rasterio", "slimdiffsr.engine"))
    }


def test_protocol_helpers():
    msg = P.progress("a", 3, 4, "tile row 1/2")
    assert P.decode(P.encode(msg)) == msg and msg["fraction"] == 0.75
    assert P.encode({"type": "result", "x": float("nan")}).endswith("\n")
    assert json.loads(P.encode({"type": "result", "x": float("nan")}))["x"] is None
    with pytest.raises(ValueError):
        P.decode("[1, 2]")
    with pytest.raises(P.ProtocolError, match="missing"):
        P.validate_upscale_params({"input": "a.tif"})
    p = P.validate_upscale_params({"input": "a.tif", "output": "b.tif", "cog": True})
    assert p["model"] == "default" and p["tile"] == P.AUTO_TILE and p["cog"] is True
    assert P.error(1, "weird", "x")["kind"] == "internal"
    assert set(P.ERROR_KINDS) == {
        "input",
        "model",
        "device",
        "memory",
        "disk",
        "cancelled",
        "internal",
    }


def test_one_worker_serves_many_jobs_loading_the_model_once(tmp_path, raster):
    """A kept worker (the plugin's) pays model loading once per settings, not once per job."""
    log = tmp_path / "worker.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "slimdiffsr.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        try:
            assert P.decode(proc.stdout.readline())["type"] == "hello"
            for i, model in enumerate(["bicubic", "bicubic", "bicubic", "bicubic-x8"]):
                proc.stdin.write(P.encode(job(i, raster, tmp_path / f"o{i}.tif", model=model)))
                proc.stdin.flush()
                while (msg := P.decode(proc.stdout.readline()))["type"] == "progress":
                    pass
                assert msg["type"] == "result" and msg["id"] == i, msg
                assert (tmp_path / f"o{i}.tif").exists()
            proc.stdin.write(P.encode({"type": "shutdown"}))
            proc.stdin.flush()
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    loads = [line for line in log.read_text().splitlines() if line.startswith("loaded ")]
    assert len(loads) == 2, loads  # three x4 jobs on one engine, then the x8 model
