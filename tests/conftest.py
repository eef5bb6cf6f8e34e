"""Shared fixtures (shared data, one torch thread, no leaked autograd state) and the CI skip rule.

With ``SLIMDIFFSR_NO_SKIPS=1`` (``scripts/test.sh`` sets it) a skipped test fails the run unless
its reason says the machine genuinely cannot run it (:data:`ALLOWED_SKIPS`): a test CI is
expected to run (calibration against provisioned weights, shared imagery, QGIS tools) must not
quietly turn into a skip there.
"""

from __future__ import annotations

import os
import re
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


# -- the CI skip rule ------------------------------------------------------------------------------
NO_SKIPS_ENV = "SLIMDIFFSR_NO_SKIPS"
# Skip reasons that are acceptable in CI: the hardware or the platform, never a missing setup step.
ALLOWED_SKIPS = (
    r"\bCUDA\b|\bGPU\b",  # GPU-only checks on a CPU runner (and CPU-only ones on a GPU runner)
    r"\bMPS\b",  # Apple GPUs
    r"read-only file system|/sys is writable",  # needs a read-only mount the sandbox may lack
)


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def disallowed_skips(reports) -> list[tuple[str, str]]:
    """(test id, reason) of each skip whose reason matches none of :data:`ALLOWED_SKIPS`."""
    out = []
    for rep in reports:
        if hasattr(rep, "wasxfail"):
            continue
        reason = _skip_reason(rep)
        if not any(re.search(rx, reason) for rx in ALLOWED_SKIPS):
            out.append((rep.nodeid, reason))
    return out


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus) -> None:
    if os.environ.get(NO_SKIPS_ENV) != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    bad = disallowed_skips(reporter.stats.get("skipped", []))
    if not bad:
        return
    reporter.write_sep("=", f"{len(bad)} skipped test(s) CI is expected to run", red=True)
    for nodeid, reason in bad:
        reporter.write_line(f"{nodeid}: {reason}")
    if session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
