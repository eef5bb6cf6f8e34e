"""Translation set-up: the .ts template is current and a compiled .qm is loaded and used."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.qgis

PLUGIN = Path(__file__).resolve().parents[2] / "qgis_plugin"
TEMPLATE = PLUGIN / "i18n" / "slimdiffsr.ts"


def sources(ts: Path) -> set[str]:
    import html

    return {html.unescape(s) for s in re.findall(r"<source>(.*?)</source>", ts.read_text(), re.S)}


def plugin_sources() -> list[str]:
    files = sorted(PLUGIN.glob("*.py")) + sorted((PLUGIN / "algorithms").glob("*.py"))
    return [str(p.relative_to(PLUGIN)) for p in files if p.name != "protocol.py"]


def test_template_lists_every_string(tmp_path: Path) -> None:
    """pylupdate5 over the plugin finds exactly the strings in the committed template."""
    if shutil.which("pylupdate5") is None:
        pytest.skip("pylupdate5 is missing (Debian: apt-get install pyqt5-dev-tools)")
    fresh = tmp_path / "fresh.ts"
    subprocess.run(
        ["pylupdate5", "-noobsolete", *plugin_sources(), "-ts", str(fresh)],
        cwd=PLUGIN,
        check=True,
        capture_output=True,
    )
    assert sources(fresh) == sources(TEMPLATE), "run the pylupdate5 command in translation.py"
    assert "Super-resolve raster layer" in sources(TEMPLATE)
    assert "No SlimDiffSR backend is configured. {}" in sources(TEMPLATE)  # backend sentences too
    assert len(sources(TEMPLATE)) > 100


def test_translator_loads_a_qm_and_translates(plugin, tmp_path: Path) -> None:
    lrelease = shutil.which("lrelease") or "/usr/lib/qt5/bin/lrelease"
    if not Path(lrelease).exists():
        pytest.skip("lrelease is missing (Debian: apt-get install qttools5-dev-tools)")
    from qgis_plugin import backend, translation
    from qgis_plugin.algorithms import SuperResolveAlgorithm
    from qgis_plugin.results import result_name

    german = {
        "Super-resolve raster layer": "Rasterlayer hochaufl&#xf6;sen",
        "Cancelled; no output was written.": "Abgebrochen; nichts geschrieben.",
        "{} SR x{} ({})": "{} HA x{} ({})",
    }
    text = TEMPLATE.read_text()
    for src, dst in german.items():
        pattern = f'<source>{src}</source>\n        <translation type="unfinished"></translation>'
        assert pattern in text, src
        text = text.replace(
            pattern, f"<source>{src}</source>\n        <translation>{dst}</translation>"
        )
    ts = tmp_path / "slimdiffsr_de.ts"
    ts.write_text(text)
    subprocess.run([lrelease, str(ts), "-qm", str(tmp_path / "slimdiffsr_de.qm")], check=True)

    assert translation.install_translator("fr_FR", tmp_path) is None  # no French: English
    translator = translation.install_translator("de_DE", tmp_path)  # falls back to "de"
    assert translator is not None
    try:
        assert SuperResolveAlgorithm().displayName() == "Rasterlayer hochauflösen"
        assert str(backend.BackendCancelled()) == "Abgebrochen; nichts geschrieben."
        assert result_name("fields", 4, "bicubic-x4") == "fields HA x4 (bicubic-x4)"
    finally:
        translation.remove_translator(translator)
    assert SuperResolveAlgorithm().displayName() == "Super-resolve raster layer"
