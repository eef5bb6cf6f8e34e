"""The CI skip rule in conftest.py: a skip CI should not have fails the run; hardware skips pass."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py").read_text()

TESTS = """
import pytest

def test_runs():
    assert True

def test_needs_gpu():
    pytest.skip("needs CUDA (this machine has no GPU)")

@pytest.mark.xfail(reason="known")
def test_known_bug():
    assert False
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    return pytester


def test_hardware_skips_are_allowed(project: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setenv("SLIMDIFFSR_NO_SKIPS", "1")
    project.makepyfile(test_a=TESTS)
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1, xfailed=1)
    assert result.ret == 0


def test_a_missing_setup_skip_fails_ci_only(project: pytest.Pytester, monkeypatch) -> None:
    project.makepyfile(
        test_a=TESTS,
        test_b="""
import pytest

def test_calibration():
    pytest.skip("lpips_alex.safetensors not in ~/.cache (run the provision command)")
""",
        test_c="""
import pytest
pytest.importorskip("no_such_module_here")
""",
    )
    monkeypatch.delenv("SLIMDIFFSR_NO_SKIPS", raising=False)
    assert project.runpytest("-p", "no:cacheprovider").ret == 0  # a developer's machine
    monkeypatch.setenv("SLIMDIFFSR_NO_SKIPS", "1")
    result = project.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    for line in (
        "*2 skipped test(s) CI is expected to run*",
        "*test_b.py::test_calibration: lpips_alex.safetensors not in*",
        "*test_c.py*no_such_module_here*",
    ):
        result.stdout.fnmatch_lines([line])
    assert "test_needs_gpu" not in result.stdout.str().split("CI is expected to run")[1]
