"""Build the installable QGIS plugin zip: one folder ``slimdiffsr/`` with metadata.txt inside.

The repository keeps the plugin code in ``qgis_plugin/``, its metadata at the root (the source of
truth) and the icons in ``icons/``; QGIS wants them together in a folder named after the plugin.
``protocol.py`` is a symlink to the backend's protocol module and is stored as a regular file.
Tests, caches and editor files never go in. The archive is reproducible (sorted entries, fixed
timestamps), so two builds of the same tree are byte-identical.

Example::

    python scripts/build_plugin_zip.py                 # -> dist/slimdiffsr-0.1.0.zip
    python scripts/build_plugin_zip.py -o /tmp/sr.zip  # anywhere
"""

from __future__ import annotations

import argparse
import configparser
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIR = "slimdiffsr"
SKIP_DIRS = {"__pycache__", "tests", "test", ".pytest_cache", ".ruff_cache", ".mypy_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".orig", ".rej", ".swp", ".tmp"}
ICON_SUFFIXES = {".svg", ".png"}
FIXED_TIME = (2024, 1, 1, 0, 0, 0)


def read_metadata(root: Path = ROOT) -> configparser.ConfigParser:
    """Parse metadata.txt the way QGIS does (no interpolation, keys case-sensitive)."""
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    path = root / "metadata.txt"
    if not path.is_file():
        raise SystemExit(f"error: {path} is missing")
    cp.read(path, encoding="utf-8")
    required = {
        "name",
        "qgisMinimumVersion",
        "description",
        "about",
        "version",
        "author",
        "email",
        "repository",
    }
    missing = sorted(required - set(cp["general"]))
    if missing:
        raise SystemExit(f"error: metadata.txt lacks {', '.join(missing)}")
    return cp


def plugin_files(root: Path = ROOT) -> list[tuple[str, Path]]:
    """(name inside the zip, file on disk) for everything the plugin needs, sorted."""
    src = root / "qgis_plugin"
    proto = src / "protocol.py"
    if not proto.exists():
        raise SystemExit(
            f"error: {proto} is missing (it is a symlink to core/slimdiffsr/protocol.py)"
        )
    files: dict[str, Path] = {}
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if any(part in SKIP_DIRS or part.startswith(".") for part in rel.parts):
            continue
        if p.is_dir() or p.suffix in SKIP_SUFFIXES or p.name.startswith("test_"):
            continue
        files[f"{PLUGIN_DIR}/{rel.as_posix()}"] = p.resolve()  # dereference symlinks
    files[f"{PLUGIN_DIR}/metadata.txt"] = root / "metadata.txt"
    for icon in sorted((root / "icons").glob("*")):
        if icon.suffix in ICON_SUFFIXES:
            files[f"{PLUGIN_DIR}/icons/{icon.name}"] = icon
    for extra in ("LICENSE", "LICENSE.txt", "LICENSE.md"):
        if (root / extra).is_file():
            files[f"{PLUGIN_DIR}/LICENSE"] = root / extra
            break
    return sorted(files.items())


def build(output: Path | None = None, root: Path = ROOT) -> Path:
    """Write the zip and return its path."""
    meta = read_metadata(root)
    icon = meta["general"].get("icon", "")
    version = meta["general"]["version"]
    output = output or root / "dist" / f"{PLUGIN_DIR}-{version}.zip"
    entries = plugin_files(root)
    names = {n for n, _ in entries}
    if icon and f"{PLUGIN_DIR}/{icon}" not in names:
        raise SystemExit(f"error: metadata.txt names icon {icon!r}, which is not in icons/")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, path in entries:
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    tmp.replace(output)
    return output


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "-o", "--output", type=Path, help="zip path (default: dist/slimdiffsr-VERSION.zip)"
    )
    args = ap.parse_args(argv)
    out = build(args.output)
    with zipfile.ZipFile(out) as zf:
        n = len(zf.namelist())
    print(f"{out} ({n} files, {out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
