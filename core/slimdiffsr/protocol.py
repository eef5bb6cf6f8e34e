"""The worker's JSON-lines protocol, shared verbatim by the worker and the QGIS plugin.

One JSON object per line; the worker's stdout carries only these lines. The plugin imports this
file through a symlink (``qgis_plugin/protocol.py``) inside QGIS's Python, so it must stay
stdlib-only and must not import anything from ``slimdiffsr``. The message shapes are documented in
docs/ARCHITECTURE.md ("Worker protocol"); bump :data:`PROTOCOL_VERSION` on any incompatible change.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

PROTOCOL_VERSION = 1

# -- message types -----------------------------------------------------------------------------
HELLO = "hello"
INFO = "info"
MODELS = "models"
UPSCALE = "upscale"
PREFLIGHT = "preflight"
CANCEL = "cancel"
SHUTDOWN = "shutdown"
PROGRESS = "progress"
RESULT = "result"
ERROR = "error"

REQUEST_TYPES = (INFO, MODELS, UPSCALE, PREFLIGHT, CANCEL, SHUTDOWN)
EVENT_TYPES = (HELLO, INFO, MODELS, PREFLIGHT, PROGRESS, RESULT, ERROR)

# -- error kinds (worker -> plugin) ------------------------------------------------------------
ERROR_INPUT = "input"
ERROR_MODEL = "model"
ERROR_DEVICE = "device"
ERROR_MEMORY = "memory"
ERROR_DISK = "disk"
ERROR_CANCELLED = "cancelled"
ERROR_INTERNAL = "internal"
ERROR_KINDS = (
    ERROR_INPUT,
    ERROR_MODEL,
    ERROR_DEVICE,
    ERROR_MEMORY,
    ERROR_DISK,
    ERROR_CANCELLED,
    ERROR_INTERNAL,
)

# -- upscale parameters: name -> default (mirrors engine.run.upscale keywords) ------------------
UPSCALE_PARAMS: dict[str, Any] = {
    "input": None,
    "output": None,
    "model": "default",
    "bands": None,
    "tile": 0,  # AUTO_TILE: sized from the device's memory, a small raster is one tile
    "overlap": 0,  # automatic: what blending needs
    "device": "auto",
    "precision": "fp32",
    "roi_bounds": None,
    "qa": False,
    "overwrite": False,
    "value_contract": None,
    "out_dtype": None,
}
# Optional extensions (absent = the engine's default); the plugin does not need to send them.
OPTIONAL_UPSCALE_PARAMS = (
    "roi_crs",
    "roi_window",
    "scale",
    "halo",
    "batch_size",
    "cog",
    "resume",
    "consistency",
    "compress",
    "detail",
    "ensemble",
    "runtime",
    "threads",
    "tile_memory_mb",
)
REQUIRED_UPSCALE_PARAMS = ("input", "output")
DEVICES = ("auto", "cuda", "cpu", "mps")
PRECISIONS = ("fp32", "fp16", "bf16")
RUNTIMES = ("auto", "torch", "onnx")  # auto: ONNX Runtime where installed; info lists those here
AUTO_TILE = 0  # tile/overlap 0: sized by the engine from the device's memory (see engine.tiling)
OUT_DTYPES = ("same", "uint8", "uint16", "int16", "float32")
COMPRESSIONS = ("deflate", "zstd", "lzw", "none")
SCALES = (2, 3, 4, 8)
ENSEMBLES = (1, 2, 4, 8)  # self-ensemble copies per tile (slimdiffsr.engine.ensemble)

# -- limits on what the worker reads (a hostile or broken client cannot knock it over) ----------
MAX_LINE_BYTES = 1 << 20  # one request line; longer lines are answered with an error and skipped
MAX_DEPTH = 16  # nesting of arrays/objects in one line (real requests use 3)
MAX_INT = 1 << 20  # bound for sizes (tile, overlap, halo, batch_size, band numbers)
MAX_ID_CHARS = 256


class ProtocolError(ValueError):
    """A line is not a protocol message, or a request is malformed."""


def encode(msg: dict[str, Any]) -> str:
    """One message -> one line of JSON ending in a newline (NaN/inf become null)."""
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError(f"a message is a dict with a string 'type', got {msg!r:.200}")
    return json.dumps(_finite(msg), separators=(",", ":"), ensure_ascii=False) + "\n"


def decode(line: str | bytes) -> dict[str, Any]:
    """One line -> message dict; raises :class:`ProtocolError` (a ValueError) for anything else.

    Lines over :data:`MAX_LINE_BYTES` or nested deeper than :data:`MAX_DEPTH` are refused before
    parsing, so no input can exhaust the reader's memory or recursion.
    """
    if isinstance(line, bytes):
        if len(line) > MAX_LINE_BYTES:
            raise ProtocolError(f"line too long ({len(line)} bytes; at most {MAX_LINE_BYTES})")
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError(f"line is not UTF-8 (byte {e.start})") from None
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(f"line too long ({len(line)} characters; at most {MAX_LINE_BYTES})")
    text = line.strip()
    if not text:
        raise ProtocolError("empty line")
    depth = nesting_depth(text)
    if depth > MAX_DEPTH:
        raise ProtocolError(f"JSON nested {depth} levels deep; at most {MAX_DEPTH}")
    try:
        msg = json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as e:
        reason = getattr(e, "msg", None) or type(e).__name__
        raise ProtocolError(f"not JSON: {text[:200]!r} ({reason})") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError(f"not a protocol message (no 'type'): {text[:200]!r}")
    return msg


_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def nesting_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` in JSON text (brackets inside strings do not count)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return text.count("[") + text.count("{")  # an upper bound that is already small
    depth = deepest = 0
    for m in _JSON_TOKENS.finditer(text):
        tok = m.group()
        if tok in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif tok in "]}":
            depth -= 1
    return deepest


def request_id(msg: dict[str, Any]) -> str | int | None:
    """The request's ``id`` (a string, an integer or absent); anything else is a ProtocolError."""
    rid = msg.get("id")
    if rid is None:
        return None
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        raise ProtocolError(f"'id' must be a string or an integer, got {type(rid).__name__}")
    if isinstance(rid, str) and len(rid) > MAX_ID_CHARS:
        raise ProtocolError(f"'id' is longer than {MAX_ID_CHARS} characters")
    if isinstance(rid, int) and abs(rid) > 2**53:
        raise ProtocolError("'id' integer is out of range (|id| <= 2**53)")
    return rid


def safe_id(msg: Any) -> str | int | None:
    """The id to answer a malformed request with: its id when valid, else None."""
    try:
        return request_id(msg) if isinstance(msg, dict) else None
    except ProtocolError:
        return None


def validate_request(msg: dict[str, Any]) -> dict[str, Any]:
    """Check a decoded request's type and id; returns it. Raises :class:`ProtocolError`."""
    if msg.get("type") not in REQUEST_TYPES:
        raise ProtocolError(
            f"unknown request type {str(msg.get('type'))[:60]!r}; expected one of {REQUEST_TYPES}"
        )
    request_id(msg)
    return msg


# -- message builders --------------------------------------------------------------------------
def hello(version: str, python: str) -> dict[str, Any]:
    return {"type": HELLO, "protocol": PROTOCOL_VERSION, "version": version, "python": python}


def progress(rid: Any, done: int, total: int, message: str = "") -> dict[str, Any]:
    fraction = (done / total) if total else 0.0
    return {
        "type": PROGRESS,
        "id": rid,
        "done": int(done),
        "total": int(total),
        "fraction": round(min(max(fraction, 0.0), 1.0), 6),
        "message": message,
    }


def preflight(rid: Any, sentence: str, plan: dict[str, Any]) -> dict[str, Any]:
    """The answer to a ``preflight`` request: the one sentence and the plan (see ARCHITECTURE)."""
    return {"type": PREFLIGHT, "id": rid, "sentence": sentence, "plan": plan}


def validate_preflight_params(params: Any) -> dict[str, Any]:
    """Like :func:`validate_upscale_params`, but ``output`` is optional (a plan only)."""
    if isinstance(params, dict) and params.get("output") in (None, ""):
        p = validate_upscale_params({**params, "output": "-"})
        p["output"] = None
        return p
    return validate_upscale_params(params)


def result(rid: Any, output: str, qa_output: str | None, summary: dict[str, Any]) -> dict[str, Any]:
    return {"type": RESULT, "id": rid, "output": output, "qa_output": qa_output, "summary": summary}


def error(rid: Any, kind: str, message: str, traceback: str | None = None) -> dict[str, Any]:
    if kind not in ERROR_KINDS:
        kind = ERROR_INTERNAL
    msg: dict[str, Any] = {"type": ERROR, "id": rid, "kind": kind, "message": message}
    if traceback:
        msg["traceback"] = traceback
    return msg


def upscale_request(rid: Any, **params: Any) -> dict[str, Any]:
    """A validated ``upscale`` request (what the plugin sends)."""
    return {"type": UPSCALE, "id": rid, "params": validate_upscale_params(params)}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v) and abs(v) < 1e300


def _int_in(lo: int, hi: int) -> Any:
    def check(v: Any) -> str | None:
        if _is_int(v) and lo <= v <= hi:
            return None
        return f"an integer from {lo} to {hi}"

    return check


def _one_of(choices: tuple[Any, ...]) -> Any:
    def check(v: Any) -> str | None:
        if isinstance(v, (str, int)) and not isinstance(v, bool) and v in choices:
            return None
        return f"one of {list(choices)}"

    return check


def _text(v: Any) -> str | None:
    if isinstance(v, str) and v.strip() and "\x00" not in v and len(v) <= 4096:
        return None
    return "a non-empty string (no NUL, at most 4096 characters)"


def _boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "a JSON boolean (true or false)"


def _bands(v: Any) -> str | None:
    if (
        isinstance(v, (list, tuple))
        and 0 < len(v) <= 1000
        and all(_int_in(1, 65535)(b) is None for b in v)
    ):
        return None
    return "a list of 1-based band numbers"


def _bounds(v: Any) -> str | None:
    if isinstance(v, (list, tuple)) and len(v) == 4 and all(_is_number(x) for x in v):
        return None
    return "[xmin, ymin, xmax, ymax] of finite numbers"


def _pixel_window(v: Any) -> str | None:
    if (
        isinstance(v, (list, tuple))
        and len(v) == 4
        and all(_is_int(x) and 0 <= x <= 2**31 for x in v)
    ):
        return None
    return "[col_off, row_off, width, height] of non-negative integers"


def _contract(v: Any) -> str | None:
    if isinstance(v, str) and 0 < len(v) <= 200:
        return None
    if isinstance(v, dict) and len(v) <= 16:
        return None
    return "a value contract string such as 'auto' or 'fixed:0:10000' (or an object)"


def _detail(v: Any) -> str | None:
    """Fidelity <-> detail blend of the default and perceptual models: a number in [0, 1]."""
    ok = isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= float(v) <= 1.0
    return None if ok else "a number from 0 (fidelity) to 1 (detail)"


# name -> check(value) -> None if fine, else what the value must be. null means "the default".
UPSCALE_PARAM_CHECKS: dict[str, Any] = {
    "input": _text,
    "output": _text,
    "model": _text,
    "bands": _bands,
    "tile": _int_in(0, 16384),  # 0 = AUTO_TILE
    "overlap": _int_in(0, 16384),  # 0 = automatic
    "device": _one_of(DEVICES),
    "precision": _one_of(PRECISIONS),
    "roi_bounds": _bounds,
    "qa": _boolean,
    "overwrite": _boolean,
    "value_contract": _contract,
    "out_dtype": _one_of(OUT_DTYPES),
    "roi_crs": _text,
    "roi_window": _pixel_window,
    "scale": _one_of(SCALES),
    "halo": _int_in(0, 4096),
    "batch_size": _int_in(1, 4096),
    "cog": _boolean,
    "resume": _boolean,
    "consistency": _boolean,
    "compress": _one_of(COMPRESSIONS),
    "detail": _detail,
    "ensemble": _one_of(ENSEMBLES),
    "runtime": _one_of(RUNTIMES),
    "threads": _int_in(1, 4096),
    "tile_memory_mb": _int_in(16, 1 << 24),
}


def validate_upscale_params(params: Any) -> dict[str, Any]:
    """Fill defaults and check names and types strictly; raises :class:`ProtocolError`.

    Booleans must be JSON booleans (``"false"`` is refused, not taken as true), sizes are bounded
    integers, choices are checked against their lists. Optional extension parameters are kept
    only when given and not null.
    """
    if not isinstance(params, dict):
        raise ProtocolError("'params' must be an object")
    unknown = sorted(
        str(k)[:60] for k in set(params) - set(UPSCALE_PARAMS) - set(OPTIONAL_UPSCALE_PARAMS)
    )
    if unknown:
        raise ProtocolError(f"unknown upscale parameters: {unknown[:10]}")
    missing = [k for k in REQUIRED_UPSCALE_PARAMS if params.get(k) in (None, "")]
    if missing:
        raise ProtocolError(f"missing upscale parameters: {missing}")
    for k, v in params.items():
        check = UPSCALE_PARAM_CHECKS.get(k)
        if v is None or check is None:
            continue
        need = check(v)
        if need is not None:
            raise ProtocolError(f"{k} must be {need}, got {_short(v)}")
    p = {**UPSCALE_PARAMS, **{k: v for k, v in params.items() if v is not None}}
    for k in ("bands", "roi_bounds", "roi_window"):  # a Python caller may pass tuples
        if isinstance(p.get(k), tuple):
            p[k] = list(p[k])
    return p


def _short(v: Any) -> str:
    text = json.dumps(v, default=str) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _finite(obj: Any) -> Any:
    """JSON has no NaN: replace non-finite floats by None, recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


# -- files beside an output (named once here; the engine and the plugin both use these) --------
# A run writing ``out.tif`` keeps everything temporary hidden in the same folder, named
# ``.out.tif.<something>``: unique partial files (``tempfile``), the lock ``.out.tif.lock`` and the
# resume journal ``.out.tif.resume.jsonl``. The final rename onto ``out.tif`` is then atomic.
LOCK_SUFFIX = ".lock"
JOURNAL_SUFFIX = ".resume.jsonl"


def temp_prefix(output_name: str) -> str:
    """The prefix of every temporary file of a run writing ``output_name`` (a file name)."""
    return f".{output_name}."


def temp_glob(output_name: str) -> str:
    """A glob pattern matching every temporary file of a run writing ``output_name``."""
    return temp_prefix(output_name) + "*"


_TEMP_TAIL = re.compile(
    r"(?:[a-z0-9_]{8}\.(?:qa\.)?(?:partial|cog|final)\.tif"  # tempfile names of this version
    r"|lock|resume\.jsonl(?:\.new)?"  # the lock and the journal
    r"|partial\.tif|partial\.json|cog\.tif)"  # fixed names of earlier versions
    r"(?:\.aux\.xml)?"
)


def is_temp_of(output_name: str, file_name: str) -> bool:
    """Whether ``file_name`` is a temporary file of a run writing ``output_name`` (and not, say,
    one of a run writing ``output_name + '.x.tif'``, which shares the prefix)."""
    prefix = temp_prefix(output_name)
    return file_name.startswith(prefix) and bool(_TEMP_TAIL.fullmatch(file_name[len(prefix) :]))


def lock_name(output_name: str) -> str:
    return f".{output_name}{LOCK_SUFFIX}"


def journal_name(output_name: str) -> str:
    return f".{output_name}{JOURNAL_SUFFIX}"


def try_lock(fd: int) -> bool:
    """Take an exclusive advisory lock on an open file without waiting; False if another holds it.

    POSIX ``flock`` (released by the kernel when the process dies, even by SIGKILL); on Windows a
    byte-range lock far past the text, so the holder's description stays readable.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            os.lseek(fd, 1 << 30, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def unlock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        os.lseek(fd, 1 << 30, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        os.lseek(fd, 0, os.SEEK_SET)
        return
    fcntl.flock(fd, fcntl.LOCK_UN)


def output_in_use(output: str) -> dict[str, Any] | None:
    """The description of the live run holding ``output``'s lock (pid, host, started, command),
    or None when no run holds it. Use before removing an output's temporary files."""
    path = os.path.join(os.path.dirname(output) or ".", lock_name(os.path.basename(output)))
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        if try_lock(fd):
            unlock(fd)
            return None
        raw = os.read(fd, 4096)
        try:
            info = json.loads(raw.decode("utf-8", errors="replace"))
        except ValueError:
            info = None
        return info if isinstance(info, dict) else {"pid": None}
    finally:
        os.close(fd)
