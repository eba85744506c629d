# Sourced by test.sh and bench.sh: a venv in .venv with torch 2.13.0 (CPU) and dsconv_ext
# built against it. Idempotent; set DSCONV_VENV to use another folder.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DSCONV_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
  python3 -m venv "$VENV"
fi
"$PY" -m pip install -q --disable-pip-version-check "torch==${DSCONV_TORCH:-2.13.0}" ninja
# Plain `pip install .` (default build isolation) builds against the torch just installed.
"$PY" -m pip install -q --disable-pip-version-check "$ROOT$1"
