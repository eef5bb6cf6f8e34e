"""devices.py: one place for device resolution and precision names (engine, evaluate, training)."""

from __future__ import annotations

import pytest
import torch

from slimdiffsr import devices, protocol
from slimdiffsr.errors import DeviceError, InputError, SlimDiffSRError


def test_names_are_the_protocols() -> None:
    assert devices.DEVICES is protocol.DEVICES and devices.PRECISIONS is protocol.PRECISIONS


def test_resolve_device() -> None:
    assert devices.resolve_device("cpu") == torch.device("cpu")
    assert devices.resolve_device(torch.device("cpu")) == torch.device("cpu")
    auto = devices.resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else auto.type)
    with pytest.raises(DeviceError, match="tpu"):
        devices.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA"):
            devices.resolve_device("cuda:0")


def test_precisions() -> None:
    assert [devices.precision_dtype(p) for p in devices.PRECISIONS] == [
        None,
        torch.float16,
        torch.bfloat16,
    ]
    assert [devices.mixed_precision_dtype(p) for p in devices.MIXED_PRECISIONS] == [
        torch.float32,
        torch.float16,
        torch.bfloat16,
    ]
    for bad in (
        lambda: devices.precision_dtype("no"),
        lambda: devices.mixed_precision_dtype("fp32"),
    ):
        with pytest.raises(InputError) as e:
            bad()
        assert isinstance(e.value, SlimDiffSRError)


def test_evaluate_and_engine_use_it() -> None:
    from slimdiffsr import evaluate
    from slimdiffsr.engine import run

    assert run.resolve_device is devices.resolve_device
    assert evaluate.resolve_device is devices.resolve_device
