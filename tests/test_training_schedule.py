"""The learning-rate schedule of the shared training loop: a pure function of the step."""

from __future__ import annotations

import math

import pytest

from slimdiffsr.training.config import ConfigError, load_config
from slimdiffsr.training.loop import lr_factor


def test_warmup_then_constant() -> None:
    assert [lr_factor("constant", s, 4, 10) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_starts_at_one_and_ends_near_zero() -> None:
    f = [lr_factor("cosine", s, 0, 100) for s in range(100)]
    assert f[0] == 1.0 and f[50] == pytest.approx(0.5) and 0 < f[-1] < 1e-3
    assert all(a >= b for a, b in zip(f, f[1:], strict=False))  # never rises after warm-up


def test_linear_after_warmup() -> None:
    assert lr_factor("linear", 9, 10, 110) == 1.0
    assert lr_factor("linear", 60, 10, 110) == pytest.approx(0.5)
    assert math.isclose(lr_factor("linear", 109, 10, 110), 0.01)


def test_config_rejects_unknown_schedule_and_long_warmup() -> None:
    with pytest.raises(ConfigError, match="lr_scheduler"):
        load_config(None, ["lr_scheduler=step"])
    with pytest.raises(ConfigError, match="lr_warmup_steps"):
        load_config(None, ["max_train_steps=10", "lr_warmup_steps=10"])
    assert load_config(None, ["lr_scheduler=cosine", "lr_warmup_steps=5"]).lr_scheduler == "cosine"
