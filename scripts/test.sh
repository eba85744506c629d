#!/usr/bin/env bash
# Every test: sets up .venv (torch 2.13.0 CPU + this package + the bench peers ONNX Runtime and
# LiteRT, so their graph builders are tested too), then runs the pytest suite.
# Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
source "$(dirname "$0")/env.sh" "[test,bench]"
cd "$ROOT"
start=$SECONDS
set +e
# The pytest entry point (not `python -m pytest`) so the installed package is tested,
# not the source folder.
"$VENV/bin/pytest" tests -q "$@"
rc=$?
set -e
echo "pytest finished in $((SECONDS - start)) s with exit code $rc"
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
