"""The worker's JSON-lines protocol, shared verbatim by the worker and the QGIS plugin.

One JSON object per line; the worker's stdout carries only these lines. The plugin imports this
file through a symlink (``qgis_plugin/protocol.py``) inside QGIS's Python, so it must stay
stdlib-only and must not import anything from ``slimdiffsr``. The message shapes are documented in
docs/ARCHITECTURE.md ("Worker protocol"); bump :data:`PROTOCOL_VERSION` on any incompatible change.
"""

from __future__ import annotations

import json
import math
from typing import Any

PROTOCOL_VERSION = 1

# -- message types -----------------------------------------------------------------------------
HELLO = "hello"
INFO = "info"
MODELS = "models"
UPSCALE = "upscale"
CANCEL = "cancel"
SHUTDOWN = "shutdown"
PROGRESS = "progress"
RESULT = "result"
ERROR = "error"

REQUEST_TYPES = (INFO, MODELS, UPSCALE, CANCEL, SHUTDOWN)
EVENT_TYPES = (HELLO, INFO, MODELS, PROGRESS, RESULT, ERROR)

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
    "tile": 128,
    "overlap": 32,
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
)
REQUIRED_UPSCALE_PARAMS = ("input", "output")
DEVICES = ("auto", "cuda", "cpu", "mps")
PRECISIONS = ("fp32", "fp16", "bf16")


class ProtocolError(ValueError):
    """A line is not a protocol message, or a request is malformed."""


def encode(msg: dict[str, Any]) -> str:
    """One message -> one line of JSON ending in a newline (NaN/inf become null)."""
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError(f"a message is a dict with a string 'type', got {msg!r:.200}")
    return json.dumps(_finite(msg), separators=(",", ":"), ensure_ascii=False) + "\n"


def decode(line: str | bytes) -> dict[str, Any]:
    """One line -> message dict; raises :class:`ProtocolError` (a ValueError) for anything else."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    text = line.strip()
    if not text:
        raise ProtocolError("empty line")
    try:
        msg = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProtocolError(f"not JSON: {text[:200]!r} ({e.msg})") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError(f"not a protocol message (no 'type'): {text[:200]!r}")
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


def validate_upscale_params(params: Any) -> dict[str, Any]:
    """Fill defaults and check names and simple types; raises :class:`ProtocolError`.

    Optional extension parameters are kept only when given and not null.
    """
    if not isinstance(params, dict):
        raise ProtocolError("'params' must be an object")
    unknown = sorted(set(params) - set(UPSCALE_PARAMS) - set(OPTIONAL_UPSCALE_PARAMS))
    if unknown:
        raise ProtocolError(f"unknown upscale parameters: {unknown}")
    missing = [k for k in REQUIRED_UPSCALE_PARAMS if not params.get(k)]
    if missing:
        raise ProtocolError(f"missing upscale parameters: {missing}")
    p = {**UPSCALE_PARAMS, **{k: v for k, v in params.items() if v is not None}}
    if p["device"] not in DEVICES:
        raise ProtocolError(f"device must be one of {DEVICES}, got {p['device']!r}")
    if p["precision"] not in PRECISIONS:
        raise ProtocolError(f"precision must be one of {PRECISIONS}, got {p['precision']!r}")
    if p["bands"] is not None and (
        not isinstance(p["bands"], list)
        or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in p["bands"])
    ):
        raise ProtocolError(f"bands must be a list of 1-based integers or null, got {p['bands']!r}")
    if p["roi_bounds"] is not None and (
        not isinstance(p["roi_bounds"], (list, tuple))
        or len(p["roi_bounds"]) != 4
        or not all(isinstance(v, (int, float)) for v in p["roi_bounds"])
    ):
        raise ProtocolError("roi_bounds must be [xmin, ymin, xmax, ymax] or null")
    for k in ("tile", "overlap"):
        if not isinstance(p[k], int) or isinstance(p[k], bool) or p[k] < 0:
            raise ProtocolError(f"{k} must be a non-negative integer, got {p[k]!r}")
    return p


def _finite(obj: Any) -> Any:
    """JSON has no NaN: replace non-finite floats by None, recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
