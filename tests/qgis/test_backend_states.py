"""Every backend state has a message that says what to do, from real interpreters.

No backend configured; a Python without slimdiffsr; slimdiffsr without torch or onnxruntime (a
venv that has only the package, like ``pip install --no-deps``); a backend that speaks another
worker protocol (the real worker with an older protocol number); CUDA requested where there is
none. Also: the chosen value mapping reaches the worker.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qgis import processing
from qgis.core import QgsProcessingException
from qgis_helpers import write_raster

pytestmark = pytest.mark.qgis

ROOT = Path(__file__).resolve().parents[2]
ALG = "slimdiffsr:superresolve"


@pytest.fixture
def rgb8(tmp_path: Path) -> Path:
    data = (np.arange(3 * 16 * 20).reshape(3, 16, 20) % 251).astype(np.uint8)
    return write_raster(tmp_path / "small.tif", data)


def run_error(params: dict) -> str:
    with pytest.raises(QgsProcessingException) as info:
        processing.run(ALG, params)
    text = str(info.value)
    assert "Traceback" not in text and 'File "' not in text
    return text


@pytest.fixture
def no_torch_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real venv with the slimdiffsr package on its path and neither torch nor onnxruntime."""
    venv = tmp_path_factory.mktemp("notorch") / "venv"
    # Debian's Python: numpy from the system, no torch, no onnxruntime
    subprocess.run(
        ["/usr/bin/python3", "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
        check=True,
    )
    py = venv / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "slimdiffsr.pth").write_text(str(ROOT / "core") + "\n")
    r = subprocess.run(
        [str(py), "-c", "import slimdiffsr.worker; import torch"], capture_output=True
    )
    assert r.returncode != 0 and b"torch" in r.stderr  # really without torch
    return str(py)


def test_no_backend_configured(plugin, rgb8, tmp_path, monkeypatch) -> None:
    from qgis_plugin import backend, settings

    monkeypatch.delenv("SLIMDIFFSR_PYTHON", raising=False)
    monkeypatch.setattr(settings, "backend_python", lambda: "")
    monkeypatch.setattr(settings, "project_path", lambda: "")
    monkeypatch.setattr(backend, "current_python", lambda: sys.executable)  # QGIS's, no backend
    text = run_error({"INPUT": str(rgb8), "MODEL": "bicubic-x4", "OUTPUT": str(tmp_path / "o.tif")})
    assert text.startswith("No SlimDiffSR backend is configured")
    assert "setup_backend.sh" in text and "--runtime onnx" in text
    assert "Raster > SlimDiffSR > Backend settings and check" in text


def test_python_without_slimdiffsr(plugin, rgb8, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SLIMDIFFSR_PYTHON", "/usr/bin/python3")
    text = run_error({"INPUT": str(rgb8), "MODEL": "bicubic-x4", "OUTPUT": str(tmp_path / "o.tif")})
    assert "The Python at /usr/bin/python3" in text
    assert "does not have SlimDiffSR installed" in text
    assert "/usr/bin/python3 -m pip install slimdiffsr" in text


def test_slimdiffsr_without_torch_or_onnxruntime(
    plugin, no_torch_python, rgb8, tmp_path, monkeypatch
) -> None:
    from qgis_plugin import backend

    monkeypatch.setenv("SLIMDIFFSR_PYTHON", no_torch_python)
    with pytest.raises(backend.BackendError) as info:  # the check dialog's call
        backend.describe()
    text = str(info.value)
    assert info.value.kind == "runtime"
    assert "neither PyTorch (package torch) nor ONNX Runtime (package onnxruntime)" in text
    assert "bash scripts/setup_backend.sh --runtime onnx" in text
    assert f"{no_torch_python} -m pip install onnxruntime" in text
    text = run_error({"INPUT": str(rgb8), "MODEL": "bicubic-x4", "OUTPUT": str(tmp_path / "o.tif")})
    assert "is missing" in text or "no inference runtime" in text
    assert "setup_backend.sh" in text
    assert not (tmp_path / "o.tif").exists()


def test_protocol_mismatch(plugin, backend_python, rgb8, tmp_path, monkeypatch) -> None:
    """The real worker, made to announce protocol 0 as an older backend would."""
    old = tmp_path / "old-backend-python"
    old.write_text(
        "#!/bin/sh\n"
        f'exec "{backend_python}" -c "import slimdiffsr.protocol as P; P.PROTOCOL_VERSION = 0; '
        'from slimdiffsr.worker import main; raise SystemExit(main())"\n'
    )
    old.chmod(old.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("SLIMDIFFSR_PYTHON", str(old))
    text = run_error({"INPUT": str(rgb8), "MODEL": "bicubic-x4", "OUTPUT": str(tmp_path / "o.tif")})
    assert "speaks worker protocol 0" in text and "needs protocol 1" in text
    assert "Update the plugin and the backend to matching versions" in text


def test_cuda_requested_but_unavailable(plugin, backend_python, rgb8, tmp_path) -> None:
    r = subprocess.run(
        [backend_python, "-c", "import torch; print(torch.cuda.is_available())"],
        capture_output=True,
        text=True,
    )
    if r.stdout.strip() == "True":
        pytest.skip("this machine has CUDA")
    params = {
        "INPUT": str(rgb8),
        "MODEL": "bicubic-x4",
        "DEVICE": 1,  # cuda
        "OUTPUT": str(tmp_path / "o.tif"),
    }
    text = run_error(params)
    assert text.startswith("CUDA was requested, but the backend sees no CUDA GPU")
    assert "Choose Device 'auto' or 'cpu'" in text
    assert not (tmp_path / "o.tif").exists()


@pytest.mark.parametrize(
    ("mapping", "value_range", "echo"),
    [(1, [50, 100], "fixed [50, 100]"), (2, [5, 95], "percentile")],
)
def test_value_mapping_reaches_the_worker(
    plugin, backend_python, rgb8, tmp_path, mapping, value_range, echo
) -> None:
    """The worker's own account of the run (its preflight sentence) names the chosen mapping."""
    from test_algorithm import RecordingFeedback

    feedback = RecordingFeedback()
    out = tmp_path / "mapped.tif"
    processing.run(
        ALG,
        {
            "INPUT": str(rgb8),
            "MODEL": "bicubic-x4",
            "VALUE_MAPPING": mapping,
            "VALUE_RANGE": value_range,
            "OUTPUT": str(out),
        },
        feedback=feedback,
    )
    assert out.is_file()
    said = " ".join(feedback.messages)
    assert echo in said, feedback.messages


def test_fixed_mapping_needs_a_range(plugin, rgb8, tmp_path) -> None:
    text = run_error(
        {
            "INPUT": str(rgb8),
            "MODEL": "bicubic-x4",
            "VALUE_MAPPING": 1,
            "OUTPUT": str(tmp_path / "o.tif"),
        }
    )
    assert "needs the Value range" in text


def test_environment_is_left_alone() -> None:
    assert os.environ.get("SLIMDIFFSR_PYTHON")  # monkeypatch restored it for later tests


def test_backend_advice_uses_the_plugins_words(plugin, backend_python, tmp_path) -> None:
    """A flat raster: the backend's advice names the plugin's option, not the CLI flag."""
    flat = write_raster(tmp_path / "flat.tif", np.full((3, 12, 12), 90, np.uint8))
    text = run_error(
        {"INPUT": str(flat), "MODEL": "slimdiffsr-nano-x4", "OUTPUT": str(tmp_path / "o.tif")}
    )
    assert "--value-contract" not in text
    assert "Value mapping" in text
