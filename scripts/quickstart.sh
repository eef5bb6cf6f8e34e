#!/usr/bin/env bash
# The main job: set up the backend (.venv) and super-resolve the demo GeoTIFF shipped in the
# package with the shipped default model. Prints the output path and a one-line summary.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup_backend.sh
DEMO="$(.venv/bin/python -c 'from slimdiffsr.demo import demo_path; print(demo_path())')"
mkdir -p outputs
.venv/bin/slimdiffsr upscale "$DEMO" outputs/demo_x4.tif --model default --overwrite "$@"
