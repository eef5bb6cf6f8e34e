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
    PKG / "training": (
        "slimdiffsr.engine",
        "slimdiffsr.cli",
        "slimdiffsr.worker",
        "slimdiffsr.cluster",
    ),
}
# Light modules: besides the standard library, each may import only what is listed (checked for
# every import in the file, also those inside functions).
LIGHT: dict[Path, tuple[str, ...]] = {
    PKG / "protocol.py": (),  # the plugin imports it inside QGIS's Python (symlinked there)
    PKG / "errors.py": (),  # the worker imports it before torch
    PKG / "contract.py": ("numpy", "slimdiffsr.errors"),  # value mapping on arrays, no torch
}


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


@pytest.mark.parametrize("path", list(LIGHT), ids=lambda p: p.name)
def test_light_modules_import_only_what_they_may(path: Path) -> None:
    import sys

    allowed = LIGHT[path]
    extra = [
        n
        for n in imports(path)
        if n.split(".")[0] not in sys.stdlib_module_names
        and n != "__future__"
        and not any(n == a or n.startswith(a + ".") for a in allowed)
    ]
    assert extra == [], f"{path.name} may import only the stdlib and {allowed}"


def test_light_module_check_can_fail(tmp_path: Path) -> None:
    """The check above sees function-level imports too (a lazy torch import is still a violation)."""
    bad = tmp_path / "m.py"
    bad.write_text("import json\n\ndef f():\n    import numpy\n    from torch import nn\n")
    assert imports(bad) == ["json", "numpy", "torch"]


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


# Exceptions outside the one root, each on purpose:
OUTSIDE_ROOT = {
    "ProtocolError": "protocol.py is stdlib-only and runs inside QGIS without slimdiffsr",
}


def test_every_core_error_is_a_slimdiffsr_error() -> None:
    """Callers catch ``SlimDiffSRError`` for "your input or setup is wrong"; an error class that
    is not under it turns a one-line message into a traceback (checked with ``ast``)."""
    import builtins

    builtin_errors = {
        n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, Exception)
    }
    warnings_ = {n for n in builtin_errors if n.endswith("Warning")}
    bases: dict[str, tuple[str, list[str]]] = {}
    for py in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(py.read_text(), filename=str(py))):
            if isinstance(node, ast.ClassDef):
                names = [
                    b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases
                ]
                bases[node.name] = (str(py.relative_to(ROOT)), names)

    def is_error(name: str, seen: tuple[str, ...] = ()) -> bool:
        if name in builtin_errors:
            return name not in warnings_
        return (
            name in bases
            and name not in seen
            and any(is_error(b, (*seen, name)) for b in bases[name][1])
        )

    def rooted(name: str, seen: tuple[str, ...] = ()) -> bool:
        if name == "SlimDiffSRError":
            return True
        return (
            name in bases
            and name not in seen
            and any(rooted(b, (*seen, name)) for b in bases[name][1])
        )

    errors = [n for n in bases if n != "SlimDiffSRError" and is_error(n)]
    assert {"EvaluateError", "MetricUnavailable", "ConfigError", "InputError"} <= set(errors)
    stray = [f"{bases[n][0]}: {n}" for n in errors if not rooted(n) and n not in OUTSIDE_ROOT]
    assert stray == []
