#!/usr/bin/env bash
# The CPU latency bench: sets up .venv (torch 2.13.0 CPU + this package with its [bench] extra:
# ONNX Runtime, onnx, LiteRT, matplotlib, rich), then runs it.
# Usage: bash scripts/bench.sh [--quick] [bench args]   (see python -m bench --help)
set -euo pipefail
source "$(dirname "$0")/env.sh" "[bench]"
cd "$ROOT"
exec "$PY" -m bench "$@"
