"""The plugin's only door to the engine: find the backend Python and drive its worker subprocess.

QGIS's own Python must stay free of torch (numpy/Qt/DLL clashes are the top complaint about ML
plugins), so the heavy work runs in a separate SlimDiffSR environment as ``python -m
slimdiffsr.worker``, spoken to in JSON lines (see docs/ARCHITECTURE.md). Everything here is plain
Python that blocks the calling thread: the Processing algorithm calls it from its worker thread,
the dock only through the algorithm or through a QgsTask.

Every failure becomes a :class:`BackendError` whose message is a sentence a user can act on; the
algorithm turns it into a ``QgsProcessingException`` unchanged.
"""

from __future__ import annotations

import atexit
import itertools
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import protocol
from .translation import tr


def _plugin_version() -> str:
    """Version from metadata.txt: inside the installed plugin, or at the repository root."""
    import configparser

    here = Path(__file__).resolve().parent
    for meta in (here / "metadata.txt", here.parent / "metadata.txt"):
        if meta.is_file():
            cp = configparser.ConfigParser(interpolation=None)
            cp.read(meta, encoding="utf-8")
            return cp.get("general", "version", fallback="0")
    return "0"


PLUGIN_VERSION = _plugin_version()
ENV_PYTHON = "SLIMDIFFSR_PYTHON"
ENV_MODELS = "SLIMDIFFSR_MODELS"


def setup_hint() -> str:
    """How to get a working backend: the last sentence of every set-up message."""
    return tr(
        "Create the backend with `bash scripts/setup_backend.sh` in a SlimDiffSR checkout (or "
        "`bash scripts/setup_backend.sh --runtime onnx` for the light ONNX Runtime backend), then "
        "point the plugin at that environment's Python in Raster > SlimDiffSR > Backend settings "
        "and check..., or set the environment variable {}."
    ).format(ENV_PYTHON)


SETUP_HINT = setup_hint()  # English, for code that formats it without a QGIS application

HELLO_TIMEOUT_S = 60.0  # the worker answers before importing torch; this covers a cold disk
CANCEL_GRACE_S = 1.2  # time the worker gets to stop between tiles before it is killed
STOP_GRACE_S = 5.0
SHARED_WAIT_S = 10.0  # how long a run waits for the warm worker before starting its own

Log = Callable[[str], None]


class BackendError(Exception):
    """A failure with a sentence for the user; ``kind`` is the worker's error kind or ``backend``."""

    def __init__(self, message: str, kind: str = "backend", detail: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.detail = detail


class BackendCancelled(BackendError):
    """The run was cancelled; no output is left behind."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or tr("Cancelled; no output was written."), kind="cancelled")


# -- discovery ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendLocation:
    """A backend interpreter and how it was found (shown in messages and the check dialog)."""

    python: str
    source: str
    inherit_pythonpath: bool = False


def venv_python(venv: Path) -> Path:
    """The interpreter inside a virtual environment, on any OS."""
    if os.name == "nt":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def current_python() -> str | None:
    """A Python executable for the interpreter QGIS runs (sys.executable may be QGIS itself)."""
    exe = Path(sys.executable) if sys.executable else None
    if exe and exe.name.lower().startswith("python") and exe.is_file():
        return str(exe)
    prefix = Path(sys.exec_prefix)
    v = f"{sys.version_info.major}.{sys.version_info.minor}"
    for cand in (
        prefix / "bin" / f"python{v}",
        prefix / "bin" / "python3",
        prefix / "python.exe",
        prefix / "python3.exe",
    ):
        if cand.is_file():
            return str(cand)
    return None


_current_ok: dict[str, bool] = {}


def _imports_backend(python: str) -> bool:
    """True when ``python`` can import the worker (checked once per interpreter)."""
    if python not in _current_ok:
        try:
            r = subprocess.run(
                [python, "-c", "import slimdiffsr.worker"],
                cwd=tempfile.gettempdir(),  # not the plugins folder, whose package is `slimdiffsr`
                env=_child_env(inherit_pythonpath=True),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=120,
                **_popen_flags(),
            )
            _current_ok[python] = r.returncode == 0
        except (OSError, subprocess.SubprocessError):
            _current_ok[python] = False
    return _current_ok[python]


def _explicit(path: str, source: str) -> BackendLocation:
    p = Path(path).expanduser()
    if p.is_dir():  # a venv or a checkout given instead of the interpreter
        for cand in (venv_python(p), venv_python(p / ".venv")):
            if cand.is_file():
                return BackendLocation(str(cand), source)
    if not p.is_file():
        raise BackendError(
            tr("The SlimDiffSR backend Python set by {} does not exist: {}. {}").format(
                source, p, setup_hint()
            ),
            kind="setup",
        )
    if not os.access(p, os.X_OK):
        raise BackendError(
            tr("The SlimDiffSR backend Python set by {} is not executable: {}.").format(source, p),
            kind="setup",
        )
    return BackendLocation(str(p), source)


def find_backend(
    python_setting: str | None = None,
    project_setting: str | None = None,
    environ: dict[str, str] | None = None,
) -> BackendLocation:
    """Locate the backend: $SLIMDIFFSR_PYTHON, the plugin setting, <project>/.venv, QGIS's Python.

    An explicitly configured path that is wrong is an error (naming where it came from) rather
    than a silent fall-through to another interpreter.
    """
    env = os.environ if environ is None else environ
    if python_setting is None or project_setting is None:
        from . import settings

        python_setting = settings.backend_python() if python_setting is None else python_setting
        project_setting = settings.project_path() if project_setting is None else project_setting
    if env.get(ENV_PYTHON, "").strip():
        return _explicit(
            env[ENV_PYTHON].strip(), tr("the environment variable {}").format(ENV_PYTHON)
        )
    if python_setting:
        return _explicit(python_setting, tr("the plugin setting 'Backend Python'"))
    if project_setting:
        cand = venv_python(Path(project_setting).expanduser() / ".venv")
        if not cand.is_file():
            raise BackendError(
                tr(
                    "The SlimDiffSR project folder {} has no backend environment ({} is "
                    "missing). Run `bash scripts/setup_backend.sh` there."
                ).format(project_setting, cand),
                kind="setup",
            )
        return BackendLocation(str(cand), tr("the project folder {}").format(project_setting))
    here = current_python()
    if here and _imports_backend(here):
        return BackendLocation(here, tr("QGIS's own Python"), inherit_pythonpath=True)
    raise BackendError(
        tr("No SlimDiffSR backend is configured. {}").format(setup_hint()), kind="setup"
    )


# -- the worker process ------------------------------------------------------------------------


def _popen_flags() -> dict[str, Any]:
    if os.name == "nt":  # no console window flashing up behind QGIS
        return {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    return {"start_new_session": True}  # Ctrl-C in a terminal-started QGIS is not the worker's


def _child_env(inherit_pythonpath: bool, models_dir: str | None = None) -> dict[str, str]:
    """QGIS's environment minus what would point another Python at QGIS's own libraries."""
    env = dict(os.environ)
    if not inherit_pythonpath:
        for key in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE"):
            env.pop(key, None)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    if models_dir and not env.get(ENV_MODELS):
        env[ENV_MODELS] = models_dir
    return env


@dataclass
class _Line:
    stream: str  # "out" | "err" | "eof-out" | "eof-err"
    text: str = ""


@dataclass
class Worker:
    """One ``python -m slimdiffsr.worker`` process, spoken to in JSON lines.

    Use as a context manager: leaving it always stops the process (shutdown, then terminate,
    then kill), so no orphan keeps a GPU busy after QGIS forgot about it. The plugin keeps one
    started worker between runs (:func:`shared_worker`); ``log`` is swapped per run.
    """

    location: BackendLocation
    log: Log | None = None
    models_dir: str | None = None
    hello: dict[str, Any] = field(default_factory=dict)
    busy: bool = False  # a request was sent and its final answer has not arrived
    _proc: subprocess.Popen[str] | None = None
    _lines: queue.Queue[_Line] = field(default_factory=queue.Queue)
    _stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _pumps: list[threading.Thread] = field(default_factory=list)

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> Worker:
        cmd = [self.location.python, "-u", "-m", "slimdiffsr.worker"]
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                cwd=tempfile.gettempdir(),
                env=_child_env(self.location.inherit_pythonpath, self.models_dir),
                **_popen_flags(),
            )
        except OSError as e:
            raise BackendError(
                tr("Could not start the SlimDiffSR backend {} (found via {}): {}. {}").format(
                    self.location.python, self.location.source, e.strerror or e, setup_hint()
                ),
                kind="setup",
            ) from e
        for name, stream in (("out", self._proc.stdout), ("err", self._proc.stderr)):
            t = threading.Thread(
                target=self._pump, args=(name, stream), name=f"slimdiffsr-{name}", daemon=True
            )
            t.start()
            self._pumps.append(t)
        self._handshake()
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        """Ask the worker to exit, then make sure it did."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            if self.busy:  # it would finish its job first: nobody wants that result any more
                self.kill()
            else:
                try:
                    self._send({"type": "shutdown"})
                except BackendError:
                    pass
                self._close_stdin()
                try:
                    proc.wait(STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    self.terminate()
        for t in self._pumps:  # they end at EOF, which the exit just caused
            t.join(1.0)
        self._drain_stderr()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass

    def terminate(self) -> None:
        """Stop the worker now: SIGTERM (the worker cancels and cleans up), then SIGKILL."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self._close_stdin()
        proc.terminate()
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_GRACE_S)

    def kill(self) -> None:
        """Stop the worker at once (SIGKILL): a cancel it did not honour in time."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self._close_stdin()
        proc.kill()
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass

    def __enter__(self) -> Worker:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # plumbing --------------------------------------------------------------------------------
    def _pump(self, name: str, stream: Any) -> None:
        try:
            for line in stream:
                self._lines.put(_Line(name, line.rstrip("\r\n")))
        except (OSError, ValueError):
            pass
        finally:
            self._lines.put(_Line(f"eof-{name}"))

    def _close_stdin(self) -> None:
        if self._proc and self._proc.stdin and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except OSError:
                pass

    def _send(self, msg: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdin.closed or proc.poll() is not None:
            raise BackendError(tr("The SlimDiffSR backend is not running."))
        try:
            proc.stdin.write(protocol.encode(msg))
            proc.stdin.flush()
        except (OSError, ValueError) as e:  # broken pipe: the worker died
            raise BackendError(
                tr("The SlimDiffSR backend stopped accepting requests ({}).").format(e)
            ) from e

    def _emit_log(self, text: str) -> None:
        text = text.split("\r")[-1]  # progress bars redraw with \r: keep the last state
        self._stderr_tail.append(text)
        if self.log and text.strip():
            self.log(text)

    def _drain_stderr(self) -> None:
        """Forward stderr lines still queued (the last words of a dying worker)."""
        while True:
            try:
                item = self._lines.get_nowait()
            except queue.Empty:
                return
            if item.stream == "err":
                self._emit_log(item.text)

    def _next_message(self, timeout: float | None) -> dict[str, Any] | None:
        """Next protocol message; stderr goes to the log; None on timeout; raises on death."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._lines.get(timeout=wait)
            except queue.Empty:
                return None
            if item.stream == "err":
                self._emit_log(item.text)
            elif item.stream == "out":
                try:
                    msg = protocol.decode(item.text)
                except ValueError:
                    self._emit_log(item.text)  # stray print from a library: keep it as log
                    continue
                return msg
            elif item.stream == "eof-out":
                self._lines.put(item)  # every later read sees the death too
                raise self._death_error()

    def _death_error(self) -> BackendError:
        """Explain why the worker's stdout closed, reading its exit status."""
        proc = self._proc
        assert proc is not None
        try:
            code = proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.terminate()
            code = proc.returncode
        # give the stderr pump a moment to deliver the last lines
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            try:
                item = self._lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if item.stream == "err":
                self._emit_log(item.text)
            elif item.stream == "eof-err":
                break
        tail = "\n".join(t for t in self._stderr_tail if t.strip())
        last = next((t for t in reversed(self._stderr_tail) if t.strip()), "")
        if code is not None and code < 0 and os.name != "nt":
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            if -code == signal.SIGKILL:
                return BackendError(
                    tr(
                        "The SlimDiffSR backend was killed (SIGKILL) while working; this is most "
                        "likely the system running out of memory. Try a smaller tile size, fp16 "
                        "precision, or a smaller extent."
                    ),
                    kind="memory",
                    detail=tail,
                )
            return BackendError(
                tr("The SlimDiffSR backend was stopped by {}.").format(name),
                kind="backend",
                detail=tail,
            )
        if not self.hello:
            missing = missing_package(tail)
            if missing == "slimdiffsr":
                return BackendError(
                    tr(
                        "The Python at {} (found via {}) does not have SlimDiffSR installed. "
                        "Install it there (`{} -m pip install slimdiffsr`) or choose the Python "
                        "of a SlimDiffSR backend. {}"
                    ).format(
                        self.location.python,
                        self.location.source,
                        self.location.python,
                        setup_hint(),
                    ),
                    kind="setup",
                    detail=tail,
                )
            why = f": {last}" if last else ""
            return BackendError(
                tr(
                    "The SlimDiffSR backend at {} (found via {}) did not start (exit code {}){}. {}"
                ).format(self.location.python, self.location.source, code, why, setup_hint()),
                kind="setup",
                detail=tail,
            )
        why = tr(" Last message: {}").format(last) if last else ""
        return BackendError(
            tr("The SlimDiffSR backend stopped unexpectedly (exit code {}).{}").format(code, why),
            detail=tail,
        )

    def _handshake(self) -> None:
        msg = self._next_message(HELLO_TIMEOUT_S)
        if msg is None:
            self.terminate()
            raise BackendError(
                tr("The SlimDiffSR backend at {} did not answer within {:.0f} s. {}").format(
                    self.location.python, HELLO_TIMEOUT_S, setup_hint()
                ),
                kind="setup",
            )
        if msg.get("type") != "hello":
            self.terminate()
            raise BackendError(
                tr("{} does not speak the SlimDiffSR worker protocol (first message: {}).").format(
                    self.location.python, str(msg)[:200]
                ),
                kind="setup",
            )
        theirs = msg.get("protocol")
        if theirs != protocol.PROTOCOL_VERSION:
            self.terminate()
            raise BackendError(
                tr(
                    "The SlimDiffSR backend {} speaks worker protocol {}, but this plugin ({}) "
                    "needs protocol {}. Update the plugin and the backend to matching versions "
                    "(in the backend: `{} -m pip install --upgrade slimdiffsr`, or pull the "
                    "checkout and rerun `bash scripts/setup_backend.sh`)."
                ).format(
                    msg.get("version", "?"),
                    theirs,
                    PLUGIN_VERSION,
                    protocol.PROTOCOL_VERSION,
                    self.location.python,
                ),
                kind="version",
            )
        self.hello = msg
        if _minor(str(msg.get("version", ""))) != _minor(PLUGIN_VERSION) and self.log:
            self.log(
                tr(
                    "Note: backend version {} differs from plugin version {}; the protocol "
                    "matches, so they work together."
                ).format(msg.get("version"), PLUGIN_VERSION)
            )

    # requests --------------------------------------------------------------------------------
    def request(
        self,
        msg: dict[str, Any],
        on_event: Callable[[dict[str, Any]], None] | None = None,
        is_canceled: Callable[[], bool] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send one request and return its final answer; events go to ``on_event``.

        Cancellation: once ``is_canceled()`` turns true a cancel request is sent; the worker
        stops between tiles. If it has not answered within CANCEL_GRACE_S it is killed (the
        caller removes what it left). Either way BackendCancelled.
        """
        rid = str(next(self._ids))
        self._send({**msg, "id": rid})
        self.busy = True
        cancel_sent_at: float | None = None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if is_canceled is not None and cancel_sent_at is None and is_canceled():
                cancel_sent_at = time.monotonic()
                try:
                    self._send({"type": "cancel", "id": rid})
                except BackendError:
                    pass
            if cancel_sent_at is not None and time.monotonic() - cancel_sent_at > CANCEL_GRACE_S:
                self.kill()
                self.busy = False
                raise BackendCancelled()
            if deadline is not None and time.monotonic() > deadline:
                self.terminate()
                self.busy = False
                raise BackendError(
                    tr("The SlimDiffSR backend did not answer a {} request in time.").format(
                        msg.get("type")
                    )
                )
            try:
                reply = self._next_message(0.05)
            except BackendError:
                self.busy = False
                if cancel_sent_at is not None:
                    raise BackendCancelled() from None
                raise
            if reply is None or reply.get("id") not in (rid, None):
                continue
            kind = reply.get("type")
            if kind == "error":
                self.busy = False
                if reply.get("kind") == "cancelled" or cancel_sent_at is not None:
                    raise BackendCancelled()
                raise worker_error(reply, self.location)
            if kind in ("progress", "log"):
                if on_event is not None:
                    on_event(reply)
                continue
            if kind == "hello":
                continue
            self.busy = False
            return reply


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


_MISSING = re.compile(r"No module named '([A-Za-z0-9_]+)")


def missing_package(text: str) -> str | None:
    """The top-level package a ModuleNotFoundError in ``text`` names, if any."""
    hit = _MISSING.search(text or "")
    return hit.group(1).split(".")[0] if hit else None


def runtime_hint(location: BackendLocation | None) -> str:
    """What to install when the backend has no inference runtime (neither torch nor ORT)."""
    py = location.python if location else "python"
    return tr(
        "The SlimDiffSR backend{} has no inference runtime: neither PyTorch (package torch) nor "
        "ONNX Runtime (package onnxruntime) is installed. Install one: `bash "
        "scripts/setup_backend.sh` (PyTorch, GPU capable), `bash scripts/setup_backend.sh "
        "--runtime onnx` (light, CPU), or `{} -m pip install onnxruntime` into the backend."
    ).format(tr(" at {}").format(location.python) if location else "", py)


def _kind_text(kind: str) -> str:
    return {
        "input": tr("SlimDiffSR cannot run with this input or these settings: {}"),
        "model": tr("The model cannot be used: {}"),
        "device": tr(
            "The chosen device is not available: {} Choose Device 'auto' or 'cpu' (Advanced "
            "parameters), or check the GPU in Raster > SlimDiffSR > Backend settings and check..."
        ),
        "memory": tr(
            "The backend ran out of memory: {} Try a smaller tile size, fp16 precision, a "
            "smaller extent or the CPU."
        ),
        "disk": tr(
            "The output could not be written: {} Check the folder exists, is writable and has "
            "space."
        ),
        "internal": tr("The SlimDiffSR backend failed unexpectedly: {} See the log for details."),
    }.get(kind) or tr("The SlimDiffSR backend failed unexpectedly: {} See the log for details.")


def plugin_words(message: str) -> str:
    """The backend's CLI advice in the plugin's terms (its options have other names here)."""
    for cli, ours in (
        ("pass --value-contract fixed:LOW:HIGH", tr("choose Value mapping 'Fixed range'")),
        ("--value-contract", tr("Value mapping")),
        ("--device cpu", tr("Device 'cpu'")),
        ("--bands", tr("Bands")),
    ):
        message = message.replace(cli, ours)
    return message


def worker_error(reply: dict[str, Any], location: BackendLocation | None = None) -> BackendError:
    """Turn a worker ``error`` message into a BackendError with a user-facing sentence."""
    kind = str(reply.get("kind") or "internal")
    m = plugin_words(str(reply.get("message") or "no details").strip())
    detail = str(reply.get("traceback") or "")
    missing = missing_package(m)
    if missing in ("torch", "onnxruntime") or "neither onnxruntime nor torch" in m:
        return BackendError(runtime_hint(location), kind="runtime", detail=detail or m)
    if missing:
        py = location.python if location else "python"
        return BackendError(
            tr(
                "The SlimDiffSR backend{} is missing the Python package '{}'; it was installed "
                "without its dependencies. Recreate it with `bash scripts/setup_backend.sh` (or "
                "`bash scripts/setup_backend.sh --runtime onnx`), or run `{} -m pip install "
                "slimdiffsr` there."
            ).format(tr(" at {}").format(location.python) if location else "", missing, py),
            kind="runtime",
            detail=detail or m,
        )
    if kind == "device" and "cuda" in m.lower():
        return BackendError(
            tr(
                "CUDA was requested, but the backend sees no CUDA GPU ({}). Choose Device "
                "'auto' or 'cpu' (Advanced parameters), or install a CUDA build of PyTorch in "
                "the backend (`bash scripts/setup_backend.sh` on a machine with an NVIDIA "
                "driver) and check it in Raster > SlimDiffSR > Backend settings and check..."
            ).format(m.rstrip(".")),
            kind="device",
            detail=detail,
        )
    if not m.endswith((".", "!", "?")):
        m += "."
    return BackendError(_kind_text(kind).format(m), kind=kind, detail=detail)


# -- the warm worker ---------------------------------------------------------------------------


class _Shared:
    """The worker the plugin keeps between runs, and the lock that makes it one job at a time."""

    lock = threading.Lock()
    worker: Worker | None = None
    starts = 0  # how many processes were started (tests and the log read it)


def _resolve_models_dir(models_dir: str | None) -> str | None:
    if models_dir is not None:
        return models_dir
    try:
        from . import settings

        return str(settings.models_dir())
    except Exception:  # settings need a QGIS application; the worker works without
        return None


@contextmanager
def shared_worker(
    location: BackendLocation | None = None, log: Log | None = None, models_dir: str | None = None
) -> Iterator[Worker]:
    """The warm worker: started on first use, restarted if it died or the backend changed.

    Held exclusively for the ``with`` block. A short request (the dock's preflight) is waited
    for; when another run holds it longer (a parallel batch), a one-off worker serves this one. A worker left mid-request (an exception on our side) is
    killed, so the next run never reads a stale answer.
    """
    loc = location or find_backend()
    mdir = _resolve_models_dir(models_dir)
    if not _Shared.lock.acquire(timeout=SHARED_WAIT_S):
        with open_worker(loc, log, mdir) as w:
            yield w
        return
    try:
        w = _Shared.worker
        if w is not None and (not w.alive() or w.location != loc or w.models_dir != mdir):
            w.close()
            w = _Shared.worker = None
        if w is None:
            w = Worker(loc, log=log, models_dir=mdir)
            _Shared.starts += 1
            w.start()
            _Shared.worker = w
        w.log = log
        try:
            yield w
        finally:
            w.log = None
            if w.busy or not w.alive():
                w.close()
                _Shared.worker = None
    except BackendError:
        if _Shared.worker is not None and not _Shared.worker.alive():
            _Shared.worker = None
        raise
    finally:
        _Shared.lock.release()


def shared_worker_pid() -> int | None:
    """The warm worker's process id, or None when none is running."""
    w = _Shared.worker
    return w.pid if w is not None and w.alive() else None


def shutdown_shared() -> None:
    """Stop the warm worker (plugin unload, QGIS exit); a running job is killed, not awaited."""
    w = _Shared.worker
    if w is None:
        return
    if _Shared.lock.acquire(timeout=0.2):
        try:
            w.close()
        finally:
            _Shared.worker = None
            _Shared.lock.release()
    else:  # a run holds it: stop the process, the run ends with an error
        w.kill()
        _Shared.worker = None


atexit.register(shutdown_shared)


# -- high-level calls --------------------------------------------------------------------------


@contextmanager
def open_worker(
    location: BackendLocation | None = None, log: Log | None = None, models_dir: str | None = None
) -> Iterator[Worker]:
    """A fresh worker for the discovered (or given) backend, stopped on exit."""
    loc = location or find_backend()
    w = Worker(loc, log=log, models_dir=_resolve_models_dir(models_dir))
    try:
        w.start()
        yield w
    finally:
        w.close()


def describe(location: BackendLocation | None = None, log: Log | None = None) -> dict[str, Any]:
    """Backend facts for the check dialog and the dock: hello, info and installed models."""
    with shared_worker(location, log) as w:
        info = w.request({"type": "info"}, timeout=300)
        if "runtimes" in info and not info["runtimes"]:  # a backend that cannot run a model
            raise BackendError(runtime_hint(w.location), kind="runtime")
        models = w.request({"type": "models"}, timeout=120)
        loc, hello = w.location, dict(w.hello)
    return {"location": loc, "hello": hello, "info": info, "models": models.get("models", [])}


def list_models(location: BackendLocation | None = None, timeout: float = 120) -> list[dict]:
    """The backend's installed models (name, scale, bands, card facts)."""
    with shared_worker(location) as w:
        return list(w.request({"type": "models"}, timeout=timeout).get("models") or [])


def preflight(
    params: dict[str, Any], location: BackendLocation | None = None, timeout: float = 120
) -> dict[str, Any] | None:
    """What a run would do (sentence and plan), without running it; None if the backend is older.

    Raises BackendError when the backend says the run cannot work (bad bands, model...).
    """
    try:
        checked = protocol.validate_upscale_params(dict(params))
    except protocol.ProtocolError as e:
        raise BackendError(
            tr("Invalid parameters for the backend: {}.").format(e), kind="input"
        ) from e
    with shared_worker(location) as w:
        try:
            return w.request({"type": "preflight", "params": checked}, timeout=timeout)
        except BackendError as e:
            if "unknown request type" in str(e):
                return None
            raise


def upscale(
    params: dict[str, Any],
    *,
    location: BackendLocation | None = None,
    on_progress: Callable[[float, str], None] | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    log: Log | None = None,
    is_canceled: Callable[[], bool] | None = None,
    on_started: Callable[[Worker], None] | None = None,
) -> dict[str, Any]:
    """Run one upscale job to completion on the warm worker; returns the ``result`` message.

    Raises BackendCancelled when cancelled and BackendError on any failure. If the output file
    did not exist before, a failed or cancelled run leaves none behind, even if the worker was
    killed mid-write. ``on_event`` gets every progress message as sent (done, total, message).
    """
    try:
        checked = protocol.validate_upscale_params(dict(params))
    except protocol.ProtocolError as e:
        raise BackendError(
            tr("Invalid parameters for the backend: {}.").format(e), kind="input"
        ) from e
    output = Path(str(checked["output"]))
    existed = output.exists()

    def event(msg: dict[str, Any]) -> None:
        if msg.get("type") == "progress":
            if on_event is not None:
                on_event(msg)
            if on_progress is not None:
                frac = msg.get("fraction")
                if frac is None and msg.get("total"):
                    frac = float(msg.get("done", 0)) / float(msg["total"])
                on_progress(float(frac or 0.0), str(msg.get("message") or ""))
        elif msg.get("type") == "log" and log is not None:
            log(str(msg.get("message", "")))

    try:
        with shared_worker(location, log) as w:
            if on_started is not None:
                on_started(w)
            return w.request({"type": protocol.UPSCALE, "params": checked}, event, is_canceled)
    except BackendError:
        remove_leftovers(output, existed)
        raise


def remove_leftovers(output: Path, keep_output: bool) -> None:
    """After a failed run, delete what a worker that died mid-write could not clean up.

    The engine writes its temporary files, resume journal and lock beside the target (named by
    ``protocol.is_temp_of``) and renames at the end; a killed worker leaves them. When another
    live run (the CLI, another worker) holds the output's lock, the files are its own: keep them.
    """
    if not output.parent.is_dir() or protocol.output_in_use(str(output)) is not None:
        return
    doomed = [p for p in output.parent.iterdir() if protocol.is_temp_of(output.name, p.name)]
    if not keep_output:
        doomed += [output, output.with_name(output.name + ".aux.xml")]
    for p in doomed:
        try:
            p.unlink()
        except OSError:
            pass
