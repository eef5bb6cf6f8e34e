"""Adversarial losses for multi-head discriminators (method.md section 4.5).

The discriminator returns one logit tensor per head; each head's binary cross-entropy is averaged
over its elements and the heads are summed. Targets follow the vision-aided-GAN recipe: real 0.8
(one-sided label smoothing), fake 0, and the generator aims at the real target.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _bce(logits: Sequence[torch.Tensor], target: float) -> torch.Tensor:
    if len(logits) == 0:
        raise ValueError("expected at least one discriminator head")
    total = logits[0].new_zeros((), dtype=torch.float32)
    for x in logits:
        x = x.float()
        total = total + F.binary_cross_entropy_with_logits(x, torch.full_like(x, target))
    return total


def discriminator_loss(
    real_logits: Sequence[torch.Tensor],
    fake_logits: Sequence[torch.Tensor],
    real_target: float = 0.8,
    fake_target: float = 0.0,
) -> torch.Tensor:
    """``sum_heads BCE(D(real), 0.8) + BCE(D(fake), 0)``; pass fakes detached from the generator."""
    return _bce(real_logits, real_target) + _bce(fake_logits, fake_target)


def generator_loss(fake_logits: Sequence[torch.Tensor], target: float = 0.8) -> torch.Tensor:
    """``sum_heads BCE(D(fake), 0.8)``: the generator wants its output scored as real."""
    return _bce(fake_logits, target)


__all__ = ["discriminator_loss", "generator_loss"]
