"""Device and precision names, and how a name becomes a ``torch.device`` / dtype.

The names themselves are the worker protocol's (``protocol.DEVICES``, ``protocol.PRECISIONS``):
the plugin, the CLI, the engine and evaluation all accept the same spellings. Training speaks
Accelerate's ``mixed_precision`` names (``no``, ``fp16``, ``bf16``); :data:`MIXED_PRECISIONS`
and :func:`mixed_precision_dtype` map those.

torch is imported on use, so the CLI can build its option lists without loading it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slimdiffsr.errors import DeviceError, InputError
from slimdiffsr.protocol import DEVICES, PRECISIONS

if TYPE_CHECKING:
    import torch

MIXED_PRECISIONS = ("no", "fp16", "bf16")  # Accelerate's names; "no" is fp32


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto``: CUDA, then Apple MPS, then CPU. An unavailable explicit device is a
    :class:`DeviceError`; ``cuda:1`` style indices are kept."""
    import torch

    if isinstance(name, torch.device):
        return name
    name = str(name).lower()
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise DeviceError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps is not None and mps.is_available())
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if has_mps else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            "CUDA was requested but torch sees no CUDA GPU (use --device cpu or auto)"
        )
    if kind == "mps" and not has_mps:
        raise DeviceError("Apple MPS was requested but is not available (use --device cpu or auto)")
    return torch.device(name)


def precision_dtype(name: str) -> torch.dtype | None:
    """``fp32`` -> None (keep the model's float32), ``fp16``/``bf16`` -> the half dtype."""
    import torch

    if name not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def mixed_precision_dtype(name: str) -> torch.dtype:
    """The weight dtype for an Accelerate ``mixed_precision`` name (``no`` -> float32)."""
    import torch

    if name not in MIXED_PRECISIONS:
        raise InputError(
            f"mixed_precision must be one of {', '.join(MIXED_PRECISIONS)}, got {name!r}"
        )
    return {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


__all__ = [
    "DEVICES",
    "MIXED_PRECISIONS",
    "PRECISIONS",
    "mixed_precision_dtype",
    "precision_dtype",
    "resolve_device",
]
