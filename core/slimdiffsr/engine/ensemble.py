"""Geometric self-ensemble: run the model on flipped and rotated copies of the input, undo each
transform on the output and average (EDSR's "+" models, Real-ESRGAN's ``--tta``).

Nadir imagery has no "up", so every copy is an equally valid view of the scene; averaging them
cancels the model's orientation-dependent errors. It costs one forward per copy and changes no
weights. One function serves numpy (ONNX Runtime, bicubic) and torch arrays, so the engine and
``slimdiffsr evaluate`` compute exactly the same thing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from slimdiffsr.protocol import ENSEMBLES as ENSEMBLE_SIZES  # 1, 2, 4, 8: one list for all callers

# (rotations by 90 degrees, horizontal flip first): 2 = identity + flip, 4 = the four
# rotations, 8 = all symmetries of the square (the dihedral group)
_TRANSFORMS = {
    1: ((0, False),),
    2: ((0, False), (0, True)),
    4: ((0, False), (1, False), (2, False), (3, False)),
    8: tuple((k, f) for f in (False, True) for k in range(4)),
}


def _is_numpy(x: Any) -> bool:
    return isinstance(x, np.ndarray)


def _flip(x: Any) -> Any:
    return np.flip(x, axis=-1) if _is_numpy(x) else x.flip(-1)


def _rot(x: Any, k: int) -> Any:
    if k % 4 == 0:
        return x
    return np.rot90(x, k, axes=(-2, -1)) if _is_numpy(x) else x.rot90(k, dims=(-2, -1))


def check_ensemble(n: int) -> int:
    """``n`` as an int, or ValueError naming the allowed sizes."""
    if int(n) not in ENSEMBLE_SIZES:
        sizes = ", ".join(map(str, ENSEMBLE_SIZES))
        raise ValueError(f"ensemble must be one of {sizes} (copies per tile), got {n}")
    return int(n)


def self_ensemble(forward: Callable[[Any], Any], x: Any, n: int = 8) -> Any:
    """Mean of ``forward`` over ``n`` flipped/rotated copies of ``x`` (B, C, h, w), each mapped
    back; ``n`` = 1 is a plain forward. Works on numpy arrays and torch tensors alike."""
    n = check_ensemble(n)
    if n == 1:
        return forward(x)
    total = None
    for k, flip in _TRANSFORMS[n]:
        t = _flip(x) if flip else x
        t = _rot(t, k)
        if _is_numpy(t):
            t = np.ascontiguousarray(t)
        y = _rot(forward(t), -k)
        y = _flip(y) if flip else y
        total = y if total is None else total + y
    out = total / n
    return np.ascontiguousarray(out, dtype=np.float32) if _is_numpy(out) else out
