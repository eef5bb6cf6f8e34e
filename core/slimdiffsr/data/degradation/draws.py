"""Per-sample random draws from an explicit generator, on the generator's device."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _uniform(n: int, r: Sequence[float], generator: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(n, generator=generator, device=_gen_device(generator), dtype=torch.float64)
    return (r[0] + (r[1] - r[0]) * u).float().cpu()


def _bernoulli(n: int, p: float, generator: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(n, generator=generator, device=_gen_device(generator))
    return (u < p).cpu()


def _choice(n: int, probs: Sequence[float], generator: torch.Generator | None) -> torch.Tensor:
    p = torch.tensor(probs, dtype=torch.float64, device=_gen_device(generator))
    return torch.multinomial(p, n, replacement=True, generator=generator).cpu()


def _as_batch(v: float | torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=torch.float32, device=device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"expected a scalar or {n} per-sample values, got {t.numel()}")
    return t
