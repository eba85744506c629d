#!/usr/bin/env bash
# CUDA checks that need no GPU:
#   1. every csrc/cuda/*.cu compiles with nvcc for sm_80 and sm_90, and no kernel spills
#      registers (--resource-usage; a spill in these memory-bound kernels is a bug to fix);
#   2. the standalone kernel test tests/cuda/check_kernels.cu (CUDA kernels vs the scalar CPU
#      reference) links; it runs too when `nvidia-smi -L` finds a GPU;
#   3. the torch glue csrc/ops/cuda_ops.cpp compiles (-fsyntax-only) against the installed
#      torch's headers (CPU torch suffices: the glue includes no CUDA header).
# Skips with a one-line note when nvcc is absent. Usage: bash scripts/check_cuda.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
NVCC="${NVCC:-nvcc}"
if ! command -v "$NVCC" >/dev/null 2>&1; then
  echo "check_cuda: skipped, nvcc not found"
  exit 0
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
start=$SECONDS
fail=0
ARCHS=(-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90)
for cu in csrc/cuda/*.cu; do
  log="$WORK/$(basename "$cu").log"
  if ! "$NVCC" -std=c++17 -O3 -c --resource-usage -Werror all-warnings \
      "${ARCHS[@]}" -o "$WORK/$(basename "$cu" .cu).o" "$cu" >"$log" 2>&1; then
    cat "$log"; echo "check_cuda: FAILED to compile $cu"; fail=1; continue
  fi
  # ptxas prints "Compiling entry function 'NAME' for 'sm_XX'" before each kernel's
  # "N bytes spill stores, M bytes spill loads".
  spills=$(awk '/Compiling entry function/ {name=$7" "$9}
                /spill stores/ && ($5 != 0 || $9 != 0) {print name": "$0}' "$log")
  kernels=$(grep -c "Compiling entry function" "$log" || true)
  if [ -n "$spills" ]; then
    echo "check_cuda: register spills in $cu:"; echo "$spills"; fail=1
  else
    echo "check_cuda: $cu: $kernels kernel builds (sm_80 + sm_90), no spills"
  fi
done
if [ "$fail" -eq 0 ]; then
  "$NVCC" -std=c++17 -O2 "${ARCHS[@]}" -o "$WORK/check_kernels" tests/cuda/check_kernels.cu \
    "$WORK"/*.o csrc/cpu/reference/*.cpp
  echo "check_cuda: tests/cuda/check_kernels built"
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "$WORK/check_kernels" || fail=1
  else
    echo "check_cuda: no GPU here, check_kernels not run"
  fi
fi
PY="${DSCONV_PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
if incs=$("$PY" -c "import sysconfig, torch.utils.cpp_extension as c
print(' '.join('-isystem ' + p for p in c.include_paths() + [sysconfig.get_paths()['include']]))" 2>/dev/null); then
  # shellcheck disable=SC2086
  if g++ -std=c++20 -Wall -Wextra -Werror -fsyntax-only $incs csrc/ops/cuda_ops.cpp; then
    echo "check_cuda: csrc/ops/cuda_ops.cpp compiles against torch's headers"
  else
    echo "check_cuda: FAILED: csrc/ops/cuda_ops.cpp"; fail=1
  fi
else
  echo "check_cuda: glue syntax check skipped, no torch in $PY"
fi
echo "check_cuda: $((SECONDS - start)) s"
exit "$fail"
