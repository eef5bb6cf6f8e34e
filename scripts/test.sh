#!/usr/bin/env bash
# The whole test suite: set up both environments, lint, core tests (fast + slow) in .venv,
# plugin tests in real QGIS (offscreen) driving the .venv backend.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup_backend.sh
bash scripts/setup_qgis_env.sh
echo "[test] ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "[test] core tests (.venv)"
.venv/bin/python -m pytest -m "not qgis" -p no:cacheprovider "$@"
echo "[test] plugin tests (real QGIS, offscreen)"
QT_QPA_PLATFORM=offscreen SLIMDIFFSR_PYTHON="$ROOT/.venv/bin/python" \
  .venv-qgis/bin/python -m pytest -m qgis -p no:cacheprovider tests/qgis "$@"
