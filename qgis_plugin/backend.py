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

import itertools
import os
import queue
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

SETUP_HINT = (
    "Create the backend with `bash scripts/setup_backend.sh` in a SlimDiffSR checkout (or install "
    "the slimdiffsr package with PyTorch into any Python 3.10-3.13), then point the plugin at "
    "that environment's Python in Raster > SlimDiffSR > Backend settings and check, or set the "
    f"environment variable {ENV_PYTHON}."
)

HELLO_TIMEOUT_S = 60.0  # the worker answers before importing torch; this covers a cold disk
CANCEL_GRACE_S = 15.0  # time the worker gets to stop at the next tile before it is terminated
STOP_GRACE_S = 5.0

Log = Callable[[str], None]


class BackendError(Exception):
    """A failure with a sentence for the user; ``kind`` is the worker's error kind or ``backend``."""

    def __init__(self, message: str, kind: str = "backend", detail: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.detail = detail


class BackendCancelled(BackendError):
    """The run was cancelled; the worker removed its temporary output."""

    def __init__(self, message: str = "Cancelled; no output was written.") -> None:
        super().__init__(message, kind="cancelled")


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
    """True when ``python`` can import the worker and torch (checked once per interpreter)."""
    if python not in _current_ok:
        try:
            r = subprocess.run(
                [python, "-c", "import torch, slimdiffsr.worker"],
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
            f"The SlimDiffSR backend Python set by {source} does not exist: {p}. {SETUP_HINT}"
        )
    if not os.access(p, os.X_OK):
        raise BackendError(f"The SlimDiffSR backend Python set by {source} is not executable: {p}.")
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
        return _explicit(env[ENV_PYTHON].strip(), f"the environment variable {ENV_PYTHON}")
    if python_setting:
        return _explicit(python_setting, "the plugin setting 'Backend Python'")
    if project_setting:
        cand = venv_python(Path(project_setting).expanduser() / ".venv")
        if not cand.is_file():
            raise BackendError(
                f"The SlimDiffSR project folder {project_setting} has no backend environment "
                f"({cand} is missing). Run `bash scripts/setup_backend.sh` there."
            )
        return BackendLocation(str(cand), f"the project folder {project_setting}")
    here = current_python()
    if here and _imports_backend(here):
        return BackendLocation(here, "QGIS's own Python", inherit_pythonpath=True)
    raise BackendError(f"No SlimDiffSR backend is configured. {SETUP_HINT}")


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
    then kill), so no orphan keeps a GPU busy after QGIS forgot about it.
    """

    location: BackendLocation
    log: Log | None = None
    models_dir: str | None = None
    hello: dict[str, Any] = field(default_factory=dict)
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
                f"Could not start the SlimDiffSR backend {self.location.python} "
                f"(found via {self.location.source}): {e.strerror or e}. {SETUP_HINT}"
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
            raise BackendError("The SlimDiffSR backend is not running.")
        try:
            proc.stdin.write(protocol.encode(msg))
            proc.stdin.flush()
        except (OSError, ValueError) as e:  # broken pipe: the worker died
            raise BackendError(f"The SlimDiffSR backend stopped accepting requests ({e}).") from e

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
                    "The SlimDiffSR backend was killed (SIGKILL) while working; this is most "
                    "likely the system running out of memory. Try a smaller tile size, fp16 "
                    "precision, or a smaller extent.",
                    kind="memory",
                    detail=tail,
                )
            return BackendError(
                f"The SlimDiffSR backend was stopped by {name}.", kind="backend", detail=tail
            )
        if not self.hello:
            why = f": {last}" if last else ""
            return BackendError(
                f"The SlimDiffSR backend at {self.location.python} (found via "
                f"{self.location.source}) did not start (exit code {code}){why}. {SETUP_HINT}",
                detail=tail,
            )
        why = f" Last message: {last}" if last else ""
        return BackendError(
            f"The SlimDiffSR backend stopped unexpectedly (exit code {code}).{why}", detail=tail
        )

    def _handshake(self) -> None:
        msg = self._next_message(HELLO_TIMEOUT_S)
        if msg is None:
            self.terminate()
            raise BackendError(
                f"The SlimDiffSR backend at {self.location.python} did not answer within "
                f"{HELLO_TIMEOUT_S:.0f} s. {SETUP_HINT}"
            )
        if msg.get("type") != "hello":
            self.terminate()
            raise BackendError(
                f"{self.location.python} does not speak the SlimDiffSR worker protocol "
                f"(first message: {str(msg)[:200]})."
            )
        theirs = msg.get("protocol")
        if theirs != protocol.PROTOCOL_VERSION:
            self.terminate()
            raise BackendError(
                f"The SlimDiffSR backend {msg.get('version', '?')} speaks worker protocol "
                f"{theirs}, but this plugin ({PLUGIN_VERSION}) needs protocol "
                f"{protocol.PROTOCOL_VERSION}. Update the plugin and the backend to matching "
                "versions.",
            )
        self.hello = msg
        if _minor(str(msg.get("version", ""))) != _minor(PLUGIN_VERSION) and self.log:
            self.log(
                f"Note: backend version {msg.get('version')} differs from plugin version "
                f"{PLUGIN_VERSION}; the protocol matches, so they work together."
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

        Cancellation: once ``is_canceled()`` turns true a cancel request is sent; if the worker
        has not answered within CANCEL_GRACE_S it is terminated. Either way BackendCancelled.
        """
        rid = str(next(self._ids))
        self._send({**msg, "id": rid})
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
                self.terminate()
                raise BackendCancelled()
            if deadline is not None and time.monotonic() > deadline:
                self.terminate()
                raise BackendError(
                    f"The SlimDiffSR backend did not answer a {msg.get('type')} request in time."
                )
            try:
                reply = self._next_message(0.1)
            except BackendError:
                if cancel_sent_at is not None:
                    raise BackendCancelled() from None
                raise
            if reply is None or reply.get("id") not in (rid, None):
                continue
            kind = reply.get("type")
            if kind == "error":
                if reply.get("kind") == "cancelled" or cancel_sent_at is not None:
                    raise BackendCancelled()
                raise worker_error(reply)
            if kind in ("progress", "log"):
                if on_event is not None:
                    on_event(reply)
                continue
            if kind == "hello":
                continue
            return reply


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


_KIND_TEXT = {
    "input": "SlimDiffSR cannot run with this input or these settings: {m}",
    "model": "The model cannot be used: {m}",
    "device": "The chosen device is not available: {m} Choose DEVICE 'auto' or 'cpu'.",
    "memory": (
        "The backend ran out of memory: {m} Try a smaller tile size, fp16 precision, a smaller "
        "extent or the CPU."
    ),
    "disk": "The output could not be written: {m} Check the folder exists, is writable and has space.",
    "internal": "The SlimDiffSR backend failed unexpectedly: {m} See the log for details.",
}


def worker_error(reply: dict[str, Any]) -> BackendError:
    """Turn a worker ``error`` message into a BackendError with a user-facing sentence."""
    kind = str(reply.get("kind") or "internal")
    m = str(reply.get("message") or "no details").strip()
    if not m.endswith((".", "!", "?")):
        m += "."
    text = _KIND_TEXT.get(kind, _KIND_TEXT["internal"]).format(m=m)
    return BackendError(text, kind=kind, detail=str(reply.get("traceback") or ""))


# -- high-level calls --------------------------------------------------------------------------


@contextmanager
def open_worker(
    location: BackendLocation | None = None, log: Log | None = None, models_dir: str | None = None
) -> Iterator[Worker]:
    """A started worker for the discovered (or given) backend, stopped on exit."""
    loc = location or find_backend()
    if models_dir is None:
        try:
            from . import settings

            models_dir = str(settings.models_dir())
        except Exception:  # settings need a QGIS application; the worker works without
            models_dir = None
    w = Worker(loc, log=log, models_dir=models_dir)
    try:
        w.start()
        yield w
    finally:
        w.close()


def describe(location: BackendLocation | None = None, log: Log | None = None) -> dict[str, Any]:
    """Backend facts for the check dialog and the dock: hello, info and installed models."""
    with open_worker(location, log) as w:
        info = w.request({"type": "info"}, timeout=300)
        models = w.request({"type": "models"}, timeout=120)
    return {
        "location": w.location,
        "hello": w.hello,
        "info": info,
        "models": models.get("models", []),
    }


def upscale(
    params: dict[str, Any],
    *,
    location: BackendLocation | None = None,
    on_progress: Callable[[float, str], None] | None = None,
    log: Log | None = None,
    is_canceled: Callable[[], bool] | None = None,
    on_started: Callable[[Worker], None] | None = None,
) -> dict[str, Any]:
    """Run one upscale job to completion; returns the worker's ``result`` message.

    Raises BackendCancelled when cancelled (the worker has removed its temporary output) and
    BackendError on any failure. If the output file did not exist before, a failed or cancelled
    run leaves none behind, even if the worker was killed mid-write.
    """
    try:
        checked = protocol.validate_upscale_params(dict(params))
    except protocol.ProtocolError as e:
        raise BackendError(f"Invalid parameters for the backend: {e}.", kind="input") from e
    output = Path(str(checked["output"]))
    existed = output.exists()

    def event(msg: dict[str, Any]) -> None:
        if msg.get("type") == "progress" and on_progress is not None:
            frac = msg.get("fraction")
            if frac is None and msg.get("total"):
                frac = float(msg.get("done", 0)) / float(msg["total"])
            on_progress(float(frac or 0.0), str(msg.get("message") or ""))
        elif msg.get("type") == "log" and log is not None:
            log(str(msg.get("message", "")))

    try:
        with open_worker(location, log) as w:
            if on_started is not None:
                on_started(w)
            return w.request({"type": protocol.UPSCALE, "params": checked}, event, is_canceled)
    except BackendError:
        remove_leftovers(output, existed)
        raise


def remove_leftovers(output: Path, keep_output: bool) -> None:
    """After a failed run, delete what a worker that died mid-write could not clean up.

    The engine writes ``.<name>.partial.tif`` (and ``.partial.json``, ``.cog.tif``) beside the
    target, plus ``<stem>_qa.tif`` for QA, and renames at the end; a killed worker leaves them.
    """
    doomed = list(output.parent.glob(f".{output.name}.*"))
    doomed += list(output.parent.glob(f".{output.stem}_qa.tif.*"))
    if not keep_output:
        doomed += [output, output.with_name(output.name + ".aux.xml")]
    for p in doomed:
        try:
            p.unlink()
        except OSError:
            pass
