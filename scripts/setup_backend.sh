#!/usr/bin/env bash
# Create or update the backend environment (.venv): torch, the slimdiffsr package (editable) and
# its extras. Idempotent: a second run with nothing changed takes seconds.
#
# Choosing torch wheels (the only platform-specific part):
#   SLIMDIFFSR_TORCH_SPEC   pip requirement(s) for torch (default: "torch==2.14.1 torchvision==0.29.1")
#   SLIMDIFFSR_TORCH_INDEX  extra index, e.g. https://download.pytorch.org/whl/cu124 (CUDA 12.4)
#                           or https://download.pytorch.org/whl/cpu (CPU-only, smaller)
#   PYTHON                  interpreter to build .venv from (default: python3; 3.10-3.13 supported)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
VENV="$ROOT/.venv"
EXTRAS="${SLIMDIFFSR_EXTRAS:-train,eval,dev,cluster}"
TORCH_SPEC="${SLIMDIFFSR_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"

if ! command -v "$PY" >/dev/null 2>&1; then
  echo "error: '$PY' not found. Install Python 3.10-3.13 (Debian: apt-get install python3 python3-venv) or set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
if ! "$PY" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 13) else 1)'; then
  echo "error: $("$PY" --version 2>&1) is not supported; SlimDiffSR needs Python 3.10-3.13. Set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV from $("$PY" --version 2>&1)"
  "$PY" -m venv "$VENV" || { echo "error: could not create a venv; on Debian: apt-get install python3-venv" >&2; exit 2; }
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
PIP=("$VENV/bin/python" -m pip install -q)
STAMP="$VENV/.slimdiffsr-stamp"
WANT="$(cat pyproject.toml | sha256sum | cut -c1-16) $EXTRAS $TORCH_SPEC"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && "$VENV/bin/python" -c 'import slimdiffsr, torch' 2>/dev/null; then
  echo "[setup] backend environment up to date ($VENV)"
else
  if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
    echo "[setup] installing $TORCH_SPEC (a few minutes)"
    # shellcheck disable=SC2086
    if [ -n "${SLIMDIFFSR_TORCH_INDEX:-}" ]; then
      "${PIP[@]}" --extra-index-url "$SLIMDIFFSR_TORCH_INDEX" $TORCH_SPEC
    else
      "${PIP[@]}" $TORCH_SPEC
    fi
  fi
  echo "[setup] installing slimdiffsr[$EXTRAS] (editable)"
  "${PIP[@]}" -e ".[$EXTRAS]"
  echo "$WANT" > "$STAMP"
fi
"$VENV/bin/python" - <<'PY'
import torch, slimdiffsr
cuda = torch.cuda.is_available()
dev = torch.cuda.get_device_name(0) if cuda else "cpu only"
print(f"[setup] ok: slimdiffsr {slimdiffsr.__version__}, torch {torch.__version__}, device: {dev}")
PY
