"""Shared fixtures: paths to the read-only shared data, seeded generators."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"


@pytest.fixture
def shared_data() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"shared imagery not found at {DATA} (see README: test data)")
    return DATA


@pytest.fixture(scope="module")
def one_thread():
    """One torch intra-op thread for a module's in-process model runs (two threads on two shared
    cores thrash); the previous count is restored afterwards. Use as
    ``pytestmark = pytest.mark.usefixtures("one_thread")`` or as a test argument."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _no_leaked_grad_mode():
    """Fail a test that leaves autograd disabled: global torch state must not leak."""
    import sys

    yield
    torch = sys.modules.get("torch")
    if torch is not None and not torch.is_grad_enabled():
        torch.set_grad_enabled(True)
        pytest.fail("this test left torch autograd disabled (a leaked no_grad/inference_mode)")
