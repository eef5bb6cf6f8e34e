"""Fixtures for the plugin tests: real QGIS (pytest-qgis, offscreen) and the real backend worker.

These tests run in the QGIS test environment (``.venv-qgis``, Debian's QGIS) and reach the torch
backend through ``$SLIMDIFFSR_PYTHON`` (default ``.venv/bin/python``). ``tests/`` is also
collected by the torch environment, where QGIS is absent: there every module of this folder is
replaced by one skipped item (marked ``qgis``) that says how to install QGIS.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = (
    "QGIS is not importable in this Python. Install it with "
    "`apt-get install -y --no-install-recommends qgis python3-qgis python3-venv`, create the test "
    "environment with `bash scripts/setup_qgis_env.sh` and run "
    "`QT_QPA_PLATFORM=offscreen .venv-qgis/bin/python -m pytest -m qgis tests/qgis`."
)

try:
    import qgis.core  # noqa: F401

    HAVE_QGIS = True
except ImportError:
    HAVE_QGIS = False

if not HAVE_QGIS:

    class _QgisMissing(pytest.Item):
        def runtest(self) -> None:
            pytest.skip(INSTALL_HINT)

        def reportinfo(self) -> tuple[Path, int, str]:
            return self.path, 0, "QGIS missing"

    class _SkippedModule(pytest.File):
        def collect(self) -> Iterator[pytest.Item]:
            item = _QgisMissing.from_parent(self, name="qgis_missing")
            item.add_marker(pytest.mark.qgis)
            yield item

    def pytest_pycollect_makemodule(module_path: Path, parent: Any) -> Any:
        """Replace each module of this folder (they import qgis) by one skipped item."""
        return _SkippedModule.from_parent(parent, path=module_path)

else:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # `qgis_plugin` importable as a package

    from qgis.core import QgsSettings

    @pytest.fixture(scope="session", autouse=True)
    def _clean_settings(qgis_app: Any) -> None:
        """pytest-qgis keeps a settings folder across runs; start from no plugin settings."""
        QgsSettings().remove("slimdiffsr")

    @pytest.fixture(scope="session", autouse=True)
    def _collect_before_qgis_exits(qgis_app: Any) -> Iterator[None]:
        """Free the Qt objects tests left in reference cycles while QGIS still exists.

        Left to the interpreter's last garbage collection, a processing context or layer would
        be destroyed after QGIS has exited and take the process down with it.
        """
        yield
        import gc

        from qgis.PyQt.QtCore import QCoreApplication, QEvent

        gc.collect()
        QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
        gc.collect()

    @pytest.fixture(scope="session")
    def backend_python() -> str:
        """The real backend interpreter; also exported as SLIMDIFFSR_PYTHON for discovery."""
        py = os.environ.get("SLIMDIFFSR_PYTHON") or str(ROOT / ".venv" / "bin" / "python")
        if not Path(py).is_file():
            pytest.skip(f"no backend Python at {py}: run `bash scripts/setup_backend.sh`")
        r = subprocess.run(
            [py, "-c", "import torch, slimdiffsr.worker"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["?"])[-1]
            pytest.skip(f"the backend at {py} cannot import its worker yet ({last})")
        os.environ["SLIMDIFFSR_PYTHON"] = py
        return py

    @pytest.fixture(scope="session")
    def plugin(qgis_app: Any, qgis_processing: Any, qgis_iface: Any) -> Iterator[Any]:
        """The plugin loaded like QGIS does it: classFactory(iface), then initGui()."""
        import qgis_plugin

        p = qgis_plugin.classFactory(qgis_iface)
        p.initGui()
        yield p
        p.unload()

    @pytest.fixture(scope="session")
    def model_name() -> str:
        """The shipped default model's name when it exists, else the bicubic baseline (both x4)."""
        zoo = ROOT / "core" / "slimdiffsr" / "zoo" / "slimdiffsr-nano-x4.safetensors"
        return "slimdiffsr-nano-x4" if zoo.is_file() else "bicubic-x4"
