"""The built plugin zip installs into a fresh QGIS profile folder and loads from there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from qgis_helpers import write_raster

pytestmark = pytest.mark.qgis

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("zip") / "slimdiffsr.zip"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_plugin_zip.py"), "-o", str(out)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture
def profile(tmp_path: Path, plugin_zip: Path) -> Path:
    """A fresh QGIS settings root with the zip extracted like the Plugin Manager does."""
    root = tmp_path / "qgis-config"
    plugins = root / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(plugin_zip) as zf:
        zf.extractall(plugins)
    return root


def qgis_env(profile: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(QT_QPA_PLATFORM="offscreen", QGIS_CUSTOM_CONFIG_PATH=str(profile))
    env.pop("QGIS_OPTIONS_PATH", None)  # pytest-qgis points it at its own settings
    return env


def qgis_process() -> list[str]:
    """qgis_process; on Debian the shell wrapper passes an option 3.22 rejects, so use the .bin."""
    exe = shutil.which("qgis_process")
    if exe is None:
        pytest.skip("qgis_process is not installed (it ships with the qgis package)")
    binary = Path(exe).with_name("qgis_process.bin")
    return [str(binary if binary.is_file() else exe)]


def test_zip_layout(plugin_zip: Path) -> None:
    with zipfile.ZipFile(plugin_zip) as zf:
        names = zf.namelist()
        proto = zf.read("slimdiffsr/protocol.py")
    assert all(n.startswith("slimdiffsr/") for n in names)
    for needed in (
        "slimdiffsr/__init__.py",
        "slimdiffsr/metadata.txt",
        "slimdiffsr/icons/slimdiffsr.png",
        "slimdiffsr/icons/slimdiffsr.svg",
        "slimdiffsr/algorithms/superresolve.py",
    ):
        assert needed in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "/tests/" in n]
    assert proto == (ROOT / "core" / "slimdiffsr" / "protocol.py").read_bytes()  # dereferenced


def test_zip_is_reproducible(plugin_zip: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.zip"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_plugin_zip.py"), "-o", str(again)],
        check=True,
        capture_output=True,
    )
    assert again.read_bytes() == plugin_zip.read_bytes()


def test_installed_plugin_loads_in_qgis(profile: Path, tmp_path: Path) -> None:
    """QGIS's own plugin loader (qgis.utils) finds the installed copy and starts it with a GUI."""
    script = tmp_path / "load.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            import sys
            from pathlib import Path
            from qgis.core import QgsApplication
            app = QgsApplication([], True)
            app.initQgis()
            sys.path.append(str(Path(QgsApplication.pkgDataPath()) / "python" / "plugins"))
            from processing.core.Processing import Processing
            Processing.initialize()
            import qgis.utils
            from qgis.gui import QgsMapCanvas
            from qgis.PyQt.QtWidgets import QMainWindow

            class Iface:  # the few QgisInterface calls the plugin makes; the rest are no-ops
                def __init__(self):
                    self.win = QMainWindow()
                    self.canvas = QgsMapCanvas(self.win)
                def mainWindow(self):
                    return self.win
                def mapCanvas(self):
                    return self.canvas
                def addDockWidget(self, area, dock):
                    self.win.addDockWidget(area, dock)
                def __getattr__(self, name):
                    return lambda *args, **kwargs: None

            qgis.utils.iface = Iface()
            plugins = Path(QgsApplication.qgisSettingsDirPath()) / "python" / "plugins"
            sys.path.insert(0, str(plugins))
            qgis.utils.plugin_paths = [str(plugins)]
            qgis.utils.updateAvailablePlugins()
            assert "slimdiffsr" in qgis.utils.available_plugins, qgis.utils.available_plugins
            assert qgis.utils.loadPlugin("slimdiffsr")
            assert qgis.utils.startPlugin("slimdiffsr")
            mod = sys.modules["slimdiffsr"]
            assert Path(mod.__file__).resolve().is_relative_to(plugins.resolve()), mod.__file__
            reg = QgsApplication.processingRegistry()
            assert reg.algorithmById("slimdiffsr:superresolve") is not None
            qgis.utils.plugins["slimdiffsr"].ensure_dock()
            backend = sys.modules["slimdiffsr.backend"]
            pid = None
            if os.environ.get("SLIMDIFFSR_PYTHON"):
                backend.list_models()  # the warm worker, as after a first run
                pid = backend.shared_worker_pid()
                assert pid is not None
            assert qgis.utils.unloadPlugin("slimdiffsr")
            assert reg.providerById("slimdiffsr") is None
            if pid is not None:  # the worker went with the plugin
                assert backend.shared_worker_pid() is None
                try:
                    os.kill(pid, 0)
                    state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
                    assert state == "Z", state
                except ProcessLookupError:
                    pass
                print("WORKER STOPPED")
            print("LOADED", qgis.utils.pluginMetadata("slimdiffsr", "version"))
            app.exitQgis()
            """
        )
    )
    r = subprocess.run(
        [sys.executable, str(script)],
        env=qgis_env(profile),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "LOADED 0.1.0" in r.stdout
    if os.environ.get("SLIMDIFFSR_PYTHON"):
        assert "WORKER STOPPED" in r.stdout


def test_qgis_process_runs_installed_plugin(
    profile: Path, tmp_path: Path, backend_python: str
) -> None:
    """Headless: enable the installed plugin, list it and run it with qgis_process."""
    exe = qgis_process()
    env = qgis_env(profile)
    r = subprocess.run(
        [*exe, "plugins", "enable", "slimdiffsr"], env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([*exe, "list"], env=env, capture_output=True, text=True, timeout=120)
    assert "slimdiffsr:superresolve" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    ramp = (np.arange(16 * 20).reshape(16, 20) % 200 + 20).astype(np.uint8)
    src = write_raster(tmp_path / "in.tif", np.stack([ramp, ramp.T.copy().reshape(16, 20), ramp]))
    out = tmp_path / "out.tif"
    r = subprocess.run(
        [
            *exe,
            "run",
            "slimdiffsr:superresolve",
            "--",
            f"INPUT={src}",
            "MODEL=bicubic-x4",
            f"OUTPUT={out}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert out.is_file()
