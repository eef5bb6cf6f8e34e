#!/usr/bin/env bash
# Create or update the backend environment (.venv): torch, the slimdiffsr package (editable) and
# its extras. Idempotent: a second run with nothing changed takes seconds.
#
# Choosing torch wheels (the only platform-specific part):
#   SLIMDIFFSR_TORCH_SPEC   pip requirement(s) for torch (default: "torch==2.14.1 torchvision==0.29.1")
#   SLIMDIFFSR_TORCH_INDEX  extra index, e.g. https://download.pytorch.org/whl/cu124 (CUDA 12.4)
#                           or https://download.pytorch.org/whl/cpu (CPU-only, smaller)
#   PYTHON                  interpreter to build .venv from (default: python3; 3.10-3.13 supported)
#
# The light inference backend for QGIS users, with no torch (ONNX Runtime runs the models' .onnx
# twins; training and evaluation keep .venv):
#   bash scripts/setup_backend.sh --runtime onnx      -> .venv-onnx (~250 MB, about a minute)
#   SLIMDIFFSR_ORT_SPEC     pip requirement for ONNX Runtime (default: onnxruntime; onnxruntime-gpu
#                           for NVIDIA GPUs)
set -euo pipefail
RUNTIME=torch
while [ $# -gt 0 ]; do
  case "$1" in
    --runtime) RUNTIME="${2:-}"; shift 2 ;;
    --runtime=*) RUNTIME="${1#*=}"; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "error: unknown argument '$1' (use --runtime torch|onnx)" >&2; exit 2 ;;
  esac
done
case "$RUNTIME" in torch|onnx) ;; *) echo "error: --runtime must be torch or onnx, got '$RUNTIME'" >&2; exit 2 ;; esac
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
if [ "$RUNTIME" = onnx ]; then
  LVENV="$ROOT/.venv-onnx"
  ORT_SPEC="${SLIMDIFFSR_ORT_SPEC:-onnxruntime>=1.17}"
  # what inference imports, and nothing else (see pyproject's dependencies minus torch/diffusers)
  LIGHT_DEPS=("$ORT_SPEC" "numpy>=1.24" "rasterio>=1.3.9" "safetensors>=0.4" "tqdm>=4.66" "pyyaml>=6")
  T0=$(date +%s)
  if [ ! -x "$LVENV/bin/python" ]; then
    echo "[setup] creating $LVENV from $("$PY" --version 2>&1) (light backend: ONNX Runtime, no torch)"
    "$PY" -m venv "$LVENV" || { echo "error: could not create a venv; on Debian: apt-get install python3-venv" >&2; exit 2; }
  fi
  LPIP=("$LVENV/bin/python" -m pip install -q --disable-pip-version-check)
  "${LPIP[@]}" "${LIGHT_DEPS[@]}"
  "${LPIP[@]}" --no-deps -e .
  if "$LVENV/bin/python" -c 'import torch' 2>/dev/null; then
    echo "error: torch is importable in $LVENV; the light backend must not have it" >&2
    exit 1
  fi
  "$LVENV/bin/python" - <<'PY'
import onnxruntime as ort, slimdiffsr
from slimdiffsr.engine.runtime import available_runtimes
print(f"[setup] ok: slimdiffsr {slimdiffsr.__version__}, onnxruntime {ort.__version__}, "
      f"runtimes {available_runtimes()}, providers {ort.get_available_providers()}")
PY
  echo "[setup] $LVENV: $(du -sh "$LVENV" | cut -f1), set up in $(( $(date +%s) - T0 )) s"
  exit 0
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
