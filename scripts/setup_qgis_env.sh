#!/usr/bin/env bash
# QGIS test environment: Debian's QGIS (3.22 on bookworm) and a light venv (.venv-qgis) built from
# /usr/bin/python3 with --system-site-packages, holding only the test tools. Never PyQt5 from pip,
# numpy stays Debian's (<2). The plugin reaches the torch backend through .venv/bin/python.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SYSPY=/usr/bin/python3
if ! "$SYSPY" -c 'import qgis.core' 2>/dev/null; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "[qgis] installing Debian QGIS (qgis python3-qgis)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends qgis python3-qgis python3-venv >/dev/null
  else
    echo "error: QGIS is not installed. Run as root: apt-get install -y --no-install-recommends qgis python3-qgis python3-venv" >&2
    exit 2
  fi
fi
# Qt's translation tools, for the plugin's i18n tests (pylupdate5 writes the .ts, lrelease the .qm).
if ! command -v pylupdate5 >/dev/null 2>&1 || { ! command -v lrelease >/dev/null 2>&1 && [ ! -x /usr/lib/qt5/bin/lrelease ]; }; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "[qgis] installing Qt translation tools (pyqt5-dev-tools qttools5-dev-tools)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends pyqt5-dev-tools qttools5-dev-tools >/dev/null
  else
    echo "warning: pylupdate5/lrelease missing; as root: apt-get install -y pyqt5-dev-tools qttools5-dev-tools" >&2
  fi
fi
VENV="$ROOT/.venv-qgis"
if [ ! -x "$VENV/bin/python" ]; then
  "$SYSPY" -m venv --system-site-packages "$VENV"
fi
if ! "$VENV/bin/python" -c 'import pytest, pytest_qgis' 2>/dev/null; then
  echo "[qgis] installing pytest and pytest-qgis into $VENV"
  "$VENV/bin/python" -m pip install -q "pytest>=7,<9" pytest-qgis "attrs>=23.2" "numpy<2"
fi
"$VENV/bin/python" - <<'PY'
import numpy
from qgis.core import Qgis
assert int(numpy.__version__.split(".")[0]) < 2, "numpy>=2 in the QGIS environment breaks QGIS"
print(f"[qgis] ok: QGIS {Qgis.QGIS_VERSION}, numpy {numpy.__version__}")
PY
