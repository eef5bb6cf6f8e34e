"""SlimDiffSR: lightweight one-step diffusion super-resolution for remote-sensing rasters.

The package imports without torch so that the worker protocol and the model registry can be
inspected from light environments; the heavy parts load on first use.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Weights are always local files: make hub libraries fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# bitsandbytes (pulled in by pyiqa, imported by diffusers) warns about an optional CPU kernel
# it would fetch from the hub; it is irrelevant to us.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

if TYPE_CHECKING:  # pragma: no cover
    import torch


def load_model(name_or_path: str = "default", device: str | torch.device | None = None) -> Any:
    """Load an installed model by name (``default``, ``bicubic``, ...) or a ``.safetensors`` path.

    Returns a torch module in eval mode: ``forward(lr)`` maps LR in [-1, 1], shape (B, C, h, w),
    to SR in [-1, 1], shape (B, C, s*h, s*w).
    """
    from slimdiffsr.models.registry import load_model as _load

    return _load(name_or_path, device=device)


__all__ = ["__version__", "load_model"]
