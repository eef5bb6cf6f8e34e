"""``python -m slimdiffsr.worker``: the engine behind a JSON-lines pipe, for the QGIS plugin.

The protocol is in docs/ARCHITECTURE.md and ``slimdiffsr.protocol``. The hello line goes out
before torch is imported, so the plugin learns within a second whether it found a SlimDiffSR
environment. Jobs run on the main thread; a reader thread keeps listening, so a ``cancel``
(or EOF on stdin, or SIGTERM) stops the job at the next tile and its temporary file is removed.

stdout carries protocol lines only: the real stdout is kept for them and file descriptor 1 is
pointed at stderr, so stray prints (ours or a C library's) land in the log, not in the protocol.
"""

from __future__ import annotations

import json
import os
import platform
import queue
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator
from typing import Any, TextIO

from slimdiffsr import __version__
from slimdiffsr import protocol as P
from slimdiffsr.errors import CancelledError, error_kind, one_line

_STOP = object()  # queued on EOF, SIGTERM or shutdown
_IDLE = object()  # Worker.running when no request runs
_TOO_LONG = b"\x00too long"  # stands for a line over MAX_LINE_BYTES (never a real line)


class _Channel:
    """Thread-safe writer of protocol lines."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def send(self, msg: dict[str, Any]) -> None:
        line = P.encode(msg)
        with self.lock:
            self.stream.write(line)
            self.stream.flush()


class Worker:
    """Reads requests, runs them one at a time, answers on the channel.

    The reader thread never dies on bad input: every line it cannot use (too long, too deep, not
    JSON, wrong types) is answered with an ``input`` error and reading goes on, so ``shutdown``
    and EOF always work. A ``cancel`` names the job it stops; one for an unknown or finished id is
    a no-op, one without an id stops the running job (if any).
    """

    def __init__(self, channel: _Channel, stdin: Any) -> None:
        self.out = channel
        self.stdin = stdin
        self.requests: queue.Queue[Any] = queue.Queue()
        self.cancel_all = threading.Event()  # EOF / SIGTERM / shutdown: cancel whatever runs
        self.cancelled: set[Any] = set()  # ids (running or queued) whose cancel arrived
        self.queued: set[Any] = set()  # ids of requests read but not finished
        self.running: Any = _IDLE
        self.lock = threading.Lock()
        self.engine: tuple[str, Any] | None = None  # (settings key, Upscaler) kept between jobs

    def _engine(self, model: str, settings: dict[str, Any]) -> Any:
        """The loaded engine for these settings, kept between requests: a second job with the
        same model and device pays no model loading (one engine is kept; others replace it)."""
        from slimdiffsr.engine.run import Upscaler

        key = json.dumps([model, sorted(settings.items())], default=str)
        if self.engine is None or self.engine[0] != key:
            self.engine = None  # free the old model before loading the next
            up = Upscaler(model, **settings)
            print(f"loaded {up.model_name} ({up.runtime} on {up.device})", file=sys.stderr)
            self.engine = (key, up)
        return self.engine[1]

    # -- reader thread -----------------------------------------------------------------------
    def lines(self) -> Iterator[bytes]:
        """Lines of stdin as bytes, each at most ``MAX_LINE_BYTES`` (longer ones: ``_TOO_LONG``)."""
        stream = getattr(self.stdin, "buffer", self.stdin)
        limit = P.MAX_LINE_BYTES
        while True:
            line = stream.readline(limit + 1)
            if not line:
                return
            if isinstance(line, str):
                line = line.encode("utf-8", errors="replace")
            if len(line) > limit and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):  # skip the rest of the long line
                    line = stream.readline(limit + 1)
                yield _TOO_LONG
                continue
            yield line

    def read_loop(self) -> None:
        try:
            for line in self.lines():
                try:
                    self.take(line)
                except Exception as e:  # noqa: BLE001 - the reader must survive anything
                    self.out.send(P.error(None, P.ERROR_INPUT, f"unreadable request: {e}"[:500]))
        except (OSError, ValueError):
            pass  # stdin closed under us: same as EOF
        finally:
            self.stop()

    def take(self, line: bytes) -> None:
        """Handle one raw line: answer errors at once, note cancels, queue the rest."""
        if line is _TOO_LONG:
            raise P.ProtocolError(f"line longer than {P.MAX_LINE_BYTES} bytes skipped")
        if not line.strip():
            return
        try:
            msg = P.validate_request(P.decode(line))
            if msg["type"] == P.UPSCALE:  # answered now, even while another job runs
                P.validate_upscale_params(msg.get("params"))
            elif msg["type"] == P.PREFLIGHT:
                P.validate_preflight_params(msg.get("params"))
        except P.ProtocolError as e:
            rid = None
            try:
                rid = P.safe_id(json.loads(line)) if len(line) < 65536 else None
            except (ValueError, RecursionError):
                pass
            self.out.send(P.error(rid, P.ERROR_INPUT, str(e)))
            return
        rid = msg.get("id")
        if msg["type"] == P.CANCEL:
            with self.lock:
                if rid is None:
                    target = self.running
                    if target is not _IDLE:
                        self.cancelled.add(target)
                elif rid in self.queued:
                    self.cancelled.add(rid)
            return  # unknown or finished id: nothing to cancel
        if msg["type"] == P.SHUTDOWN:
            self.stop()  # cancel the running job; queued requests are answered, then exit 0
            return
        with self.lock:
            if rid is not None:
                self.queued.add(rid)
        self.requests.put(msg)

    def stop(self, *_: Any) -> None:
        """EOF on stdin, SIGTERM or shutdown: cancel the running job, then exit."""
        self.cancel_all.set()
        self.requests.put(_STOP)

    def is_cancelled(self, rid: Any) -> bool:
        if self.cancel_all.is_set():
            return True
        with self.lock:
            return rid in self.cancelled

    # -- main loop ---------------------------------------------------------------------------
    def serve(self) -> int:
        while True:
            msg = self.requests.get()
            if msg is _STOP:
                return 0
            rid = msg.get("id")
            with self.lock:
                self.running = rid
            try:
                handler = {
                    P.INFO: self.info,
                    P.MODELS: self.models,
                    P.UPSCALE: self.upscale,
                    P.PREFLIGHT: self.preflight,
                }.get(msg["type"])
                if handler is None:
                    raise P.ProtocolError(
                        f"unknown request type {msg['type']!r}; expected one of {P.REQUEST_TYPES}"
                    )
                if msg["type"] == P.UPSCALE and self.is_cancelled(rid):
                    raise CancelledError("cancelled before it started")
                self.out.send(handler(msg))
            except Exception as e:  # noqa: BLE001 - every failure becomes one error line
                self.out.send(error_message(rid, e))
            finally:
                with self.lock:
                    self.running = _IDLE
                    self.cancelled.discard(rid)
                    self.queued.discard(rid)

    # -- requests ----------------------------------------------------------------------------
    def info(self, msg: dict[str, Any]) -> dict[str, Any]:
        from slimdiffsr.engine.runtime import available_runtimes, onnx_providers

        runtimes = available_runtimes()
        devices = []
        if "torch" not in runtimes:  # the light backend: ONNX Runtime only
            providers = onnx_providers()
            if "CUDAExecutionProvider" in providers:
                devices.append({"name": "CUDA (ONNX Runtime)", "kind": "cuda", "memory_gb": None})
            devices.append({"name": _cpu_name(), "kind": "cpu", "memory_gb": _ram_gb()})
            return {
                "type": P.INFO,
                "id": msg.get("id"),
                "torch": None,
                "cuda": "CUDAExecutionProvider" in providers,
                "devices": devices,
                "runtimes": runtimes,
                "onnx_providers": providers,
                "python": platform.python_version(),
                "executable": sys.executable,
                "version": __version__,
            }
        import torch

        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(i)
                devices.append(
                    {"name": props.name, "kind": "cuda", "memory_gb": _gb(props.total_memory)}
                )
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            devices.append({"name": "Apple MPS", "kind": "mps", "memory_gb": None})
        devices.append({"name": _cpu_name(), "kind": "cpu", "memory_gb": _ram_gb()})
        return {
            "type": P.INFO,
            "id": msg.get("id"),
            "torch": torch.__version__,
            "cuda": bool(torch.cuda.is_available()),
            "devices": devices,
            "runtimes": runtimes,
            "onnx_providers": onnx_providers(),
            "python": platform.python_version(),
            "executable": sys.executable,
            "version": __version__,
        }

    def models(self, msg: dict[str, Any]) -> dict[str, Any]:
        from slimdiffsr.models.registry import list_models

        return {
            "type": P.MODELS,
            "id": msg.get("id"),
            "models": [e.as_dict() for e in list_models()],
        }

    def upscale(self, msg: dict[str, Any]) -> dict[str, Any]:
        rid = msg.get("id")
        p = P.validate_upscale_params(msg.get("params"))
        import inspect

        from slimdiffsr.engine.run import Upscaler

        def progress(done: int, total: int, message: str) -> None:
            self.out.send(P.progress(rid, done, total, message))

        kwargs = {k: p[k] for k in P.OPTIONAL_UPSCALE_PARAMS if k in p}
        for k in ("roi_window",):
            if k in kwargs:
                kwargs[k] = tuple(kwargs[k])
        engine_keys = set(inspect.signature(Upscaler.__init__).parameters) - {"self", "model"}
        settings = {k: p[k] for k in ("tile", "overlap", "device", "precision")}
        settings.update({k: kwargs.pop(k) for k in list(kwargs) if k in engine_keys})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                up = self._engine(str(p["model"]), settings)
                result = up.run(
                    p["input"],
                    p["output"],
                    bands=p["bands"],
                    roi_bounds=tuple(p["roi_bounds"]) if p["roi_bounds"] else None,
                    qa=bool(p["qa"]),
                    overwrite=bool(p["overwrite"]),
                    value_contract=p["value_contract"],
                    out_dtype=p["out_dtype"],
                    progress=progress,
                    cancel=lambda: self.is_cancelled(rid),
                    **kwargs,
                )
            finally:
                for w in caught:  # user-facing warnings go to the log (stderr)
                    if not issubclass(w.category, DeprecationWarning | PendingDeprecationWarning):
                        print(f"warning: {w.message}", file=sys.stderr, flush=True)
        return P.result(
            rid,
            str(result.output),
            str(result.qa_output) if result.qa_output else None,
            result.summary,
        )

    def preflight(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Plan an upscale without running it: the sentence the dock shows before Run."""
        rid = msg.get("id")
        p = P.validate_preflight_params(msg.get("params"))
        from slimdiffsr.engine.run import Upscaler

        up = Upscaler(
            p["model"],
            scale=p.get("scale"),
            device=p["device"],
            tile=p["tile"],
            overlap=p["overlap"],
            halo=p.get("halo"),
        )
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            pf = up.preflight(
                p["input"],
                p["output"],
                bands=p["bands"],
                roi_window=tuple(p["roi_window"]) if p.get("roi_window") else None,
                roi_bounds=tuple(p["roi_bounds"]) if p["roi_bounds"] else None,
                roi_crs=p.get("roi_crs"),
                value_contract=p["value_contract"],
                out_dtype=p["out_dtype"],
            )
        return P.preflight(rid, pf.describe(), pf.to_dict())


def error_message(rid: Any, e: BaseException) -> dict[str, Any]:
    """An exception -> a protocol error line with the right kind (traceback only for bugs)."""
    if isinstance(e, P.ProtocolError):
        return P.error(rid, P.ERROR_INPUT, str(e))
    kind = error_kind(e)
    if kind is not None:
        return P.error(rid, kind, one_line(e))
    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    print(tb, file=sys.stderr, flush=True)
    return P.error(rid, P.ERROR_INTERNAL, f"{type(e).__name__}: {e}", traceback=tb)


def _gb(n: int | float) -> float:
    return round(float(n) / 2**30, 1)


def _ram_gb() -> float | None:
    try:
        return _gb(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _cpu_name() -> str:
    return platform.processor() or platform.machine() or "CPU"


def main() -> int:
    """Serve requests from stdin until shutdown, EOF or SIGTERM; returns the exit status."""
    out = _Channel(os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1))
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # fd 1 -> stderr for everybody else
    sys.stdout = sys.stderr
    out.send(P.hello(__version__, platform.python_version()))
    worker = Worker(out, sys.stdin)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, worker.stop)
    threading.Thread(target=worker.read_loop, name="slimdiffsr-stdin", daemon=True).start()
    return worker.serve()


if __name__ == "__main__":
    sys.exit(main())
