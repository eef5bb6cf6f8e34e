"""Import guardrails: doors open one way (plugin -> protocol -> engine -> models; training -> core).

Checked with ``ast`` so no module needs to import: a violation names the file and the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "core" / "slimdiffsr"

# folder -> import prefixes it must never use
RULES: dict[Path, tuple[str, ...]] = {
    PKG: ("qgis", "PyQt5", "qgis_plugin", "osgeo"),
    PKG / "models": ("slimdiffsr.engine", "slimdiffsr.data", "slimdiffsr.cli", "slimdiffsr.worker"),
    PKG / "losses": ("slimdiffsr.engine", "slimdiffsr.cli", "slimdiffsr.worker", "rasterio"),
    PKG / "data": ("slimdiffsr.engine", "slimdiffsr.cli", "slimdiffsr.worker"),
    PKG / "metrics": ("slimdiffsr.engine", "slimdiffsr.cli", "slimdiffsr.worker"),
    PKG / "engine": ("slimdiffsr.cli", "slimdiffsr.worker", "slimdiffsr.data", "accelerate"),
    ROOT / "qgis_plugin": ("torch", "rasterio", "slimdiffsr", "diffusers", "numpy"),
    ROOT / "training": ("slimdiffsr.engine", "slimdiffsr.worker", "qgis", "qgis_plugin"),
}
STDLIB_ONLY = [PKG / "protocol.py", PKG / "contract.py"]


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def violations(folder: Path, banned: tuple[str, ...]) -> list[str]:
    out = []
    for py in sorted(folder.rglob("*.py")):
        if py.is_symlink():
            continue
        for name in imports(py):
            if any(name == b or name.startswith(b + ".") for b in banned):
                out.append(f"{py.relative_to(ROOT)} imports {name}")
    return out


@pytest.mark.parametrize("folder", list(RULES), ids=lambda p: str(p.relative_to(ROOT)))
def test_import_direction(folder: Path) -> None:
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    assert violations(folder, RULES[folder]) == []


def test_protocol_is_stdlib_only() -> None:
    """The plugin imports protocol.py inside QGIS's Python: no third-party modules there."""
    import sys

    path = STDLIB_ONLY[0]
    if not path.exists():
        pytest.skip("protocol.py not present")
    third_party = [
        n
        for n in imports(path)
        if n.split(".")[0] not in sys.stdlib_module_names and n != "__future__"
    ]
    assert third_party == []


def test_package_imports_without_torch() -> None:
    """``import slimdiffsr`` (and the worker protocol) stays light: torch loads on first use."""
    import subprocess
    import sys

    code = (
        "import sys, slimdiffsr, slimdiffsr.protocol; "
        "assert slimdiffsr.__version__; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
