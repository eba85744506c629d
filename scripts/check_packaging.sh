#!/usr/bin/env bash
# Install paths a user may take, each into a fresh venv that already has torch 2.13.0:
#   1. plain `pip install .` with a current pip (26.x) under default build isolation;
#   2. `pip install --no-build-isolation .` with the stock pip;
#   3. without torch: the build stops with a one-line "install torch first" message.
# Each must build against the venv's torch (the import checks the version).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# Build outside the source tree so the checks do not share build folders.
cp -r "$ROOT" "$WORK/src"
rm -rf "$WORK/src/build" "$WORK/src/.venv"

check_import() {
  (cd "$WORK" && "$1/bin/python" -c "import torch, dsconv_ext as d, torch.nn.functional as F
x = torch.randn(1, 4, 8, 8); w = torch.randn(4, 1, 3, 3)
torch.testing.assert_close(d.depthwise(x, w, padding=1), F.conv2d(x, w, padding=1, groups=4))
print('ok: torch', torch.__version__, 'kernels', d.cpu_capability())")
}

echo "-- pip 26 + build isolation"
python3 -m venv "$WORK/v1"
"$WORK/v1/bin/pip" install -q --disable-pip-version-check "pip>=26,<27" torch==2.13.0
"$WORK/v1/bin/pip" --version
(cd "$WORK/src" && "$WORK/v1/bin/pip" install -q .)
check_import "$WORK/v1"

echo "-- stock pip + --no-build-isolation"
python3 -m venv "$WORK/v2"
"$WORK/v2/bin/pip" install -q --disable-pip-version-check torch==2.13.0 ninja setuptools wheel
"$WORK/v2/bin/pip" --version
rm -rf "$WORK/src/build"
(cd "$WORK/src" && "$WORK/v2/bin/pip" install -q --no-build-isolation .)
check_import "$WORK/v2"

echo "-- no torch installed"
python3 -m venv "$WORK/v3"
set +e
out=$(cd "$WORK/src" && "$WORK/v3/bin/pip" install -q --disable-pip-version-check . 2>&1)
rc=$?
set -e
if [ "$rc" -eq 0 ] || ! grep -q "needs PyTorch installed first" <<<"$out"; then
  echo "FAIL: installing without torch should stop with the install-torch-first message" >&2
  echo "$out" >&2
  exit 1
fi
echo "ok: refused with: $(grep -m1 'needs PyTorch' <<<"$out" | sed 's/^ *//')"
