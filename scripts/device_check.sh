#!/usr/bin/env bash
# The checks that need a borrowed machine (a GPU with a CUDA torch and nvcc, and a CPU with
# AVX-512), in one pass of about 7 minutes. Writes to OUTDIR:
#   steps.txt   GPU, CPU flags, versions, then each step's exit code and time
#   build.log   pip install of the package with its CUDA kernels (sm_90 unless TORCH_CUDA_ARCH_LIST)
#   cudack.log  scripts/check_cuda.sh: nvcc builds, spills, tests/cuda/check_kernels on the GPU
#   cuda.log    pytest tests/test_cuda.py
#   bench.log   python -m bench.cuda (and cuda.json)
#   cpu.log     bad-input tests per kernel set in one process (so a crash names its test),
#               then the CPU suite with the AVX-512 kernels (DSCONV_ISA=avx512)
#   asan.log    scripts/sanitize_ops.sh on an ASan+UBSan build (no CUDA), DSCONV_ISA=avx512,
#               error-path tests first
# Usage: bash scripts/device_check.sh OUTDIR   (python3 must be the CUDA torch's; PYTHON overrides)
set -uo pipefail
OUTDIR=$(mkdir -p "${1:?usage: $0 OUTDIR}" && cd "$1" && pwd)
cd "$(dirname "$0")/.."
ROOT=$PWD
t0=$SECONDS
PY=${PYTHON:-python3}
BIN=$("$PY" -c 'import sys, os; print(os.path.join(sys.prefix, "bin"))')
NPROC=$(nproc)
ISA=${DSCONV_CHECK_ISA:-avx512}  # the kernel set the CPU tests force
step() { echo "== $1: rc=$2 at $((SECONDS - t0)) s" | tee -a "$OUTDIR/steps.txt"; }
{ nvidia-smi -L; "$PY" -c 'import torch; print("torch", torch.__version__, torch.version.cuda)'
  lscpu | grep -E 'Model name|^CPU\(s\)'; grep -o 'avx512[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' '
  echo; g++ --version | head -1; nvcc --version | tail -1; } > "$OUTDIR/steps.txt" 2>&1

# The sanitizer build: a copy of the tree installed into its own folder (site/), put first
# on the path by the python and pytest wrappers that scripts/sanitize_ops.sh runs.
SAN=/tmp/dsconv-sanitize
sanitize() {
  rm -rf "$SAN" && mkdir -p "$SAN/src" "$SAN/venv/bin" || return 1
  local path="PYTHONPATH=$SAN/site\${PYTHONPATH:+:\$PYTHONPATH}"
  printf '#!/bin/sh\n%s exec %s "$@"\n' "$path" "$PY" > "$SAN/venv/bin/python"
  printf '#!/bin/sh\n%s exec %s "$@"\n' "$path" "$BIN/pytest" > "$SAN/venv/bin/pytest"
  chmod +x "$SAN/venv/bin/python" "$SAN/venv/bin/pytest"
  tar --exclude=./build --exclude=./.git --exclude='*.so' --exclude=./.whl -cf - . | tar -xf - -C "$SAN/src"
  (cd "$SAN/src" && DSCONV_SANITIZE=1 DSCONV_NO_CUDA=1 MAX_JOBS=$((NPROC / 2)) \
    "$PY" -m pip install -q --no-build-isolation --no-deps --target "$SAN/site" .) || return 1
  echo "== sanitizer build done at $((SECONDS - t0)) s"
  # The error paths first and in one process: a crash there gets ASan's native stack trace
  # (the 2026-11-26 run crashed on every CPU op error on an Ubuntu 24.04 / g++ 13 machine).
  DSCONV_SANITIZE_DIR=$SAN DSCONV_SANITIZE_ISAS=$ISA \
    bash scripts/sanitize_ops.sh --no-build -x tests/test_bad_input.py tests/test_errors.py
  DSCONV_SANITIZE_DIR=$SAN DSCONV_SANITIZE_ISAS=$ISA PYTEST_ADDOPTS="-n $((NPROC / 2))" \
    bash scripts/sanitize_ops.sh --no-build
}
(timeout 380 bash -c "$(declare -f sanitize); SAN=$SAN PY=$PY BIN=$BIN NPROC=$NPROC ISA=$ISA t0=$t0; sanitize" \
  > "$OUTDIR/asan.log" 2>&1; step asan $?) &
asan=$!
(DSCONV_PYTHON="$PY" timeout 200 bash scripts/check_cuda.sh > "$OUTDIR/cudack.log" 2>&1
 step check_cuda $?) &
cudack=$!
TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=$((NPROC / 2)) timeout 150 \
  "$PY" -m pip install --no-build-isolation --no-deps -v . > "$OUTDIR/build.log" 2>&1
step build $?

# CPU tests beside the GPU ones: bad input first, in one process (-p no:xdist), so that a
# crash names its test; then the rest of the suite.
(export OMP_NUM_THREADS=2
 # The error-path crash of 2026-11-26, bare: one bad call in plain Python (no pytest plugins;
 # pytorch/pytorch#117645 is a crash in libgcc's unwinder when c10::Error captures its
 # backtrace), then the same under pytest without its plugins' autoload.
 for isa in scalar $ISA; do
   DSCONV_ISA=$isa timeout 30 "$PY" -X faulthandler -c 'import torch, dsconv_ext as d
try:
    d.depthwise(torch.randn(1, 3, 5, 5), torch.randn(3, 1, 3, 3), padding=2**62)
except ValueError as e:
    print("raised:", str(e)[:60])' >> "$OUTDIR/cpu.log" 2>&1
   step "bare error call $isa" $?
 done
 DSCONV_ISA=$ISA PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 timeout 30 "$BIN/pytest" tests/test_errors.py \
   -x -q -p no:cacheprovider >> "$OUTDIR/cpu.log" 2>&1
 step "test_errors without plugins" $?
 for isa in scalar avx2 $ISA; do  # does the error-path crash depend on the kernel set?
   DSCONV_ISA=$isa timeout 30 "$BIN/pytest" tests/test_bad_input.py tests/test_errors.py -v -x \
     -p no:cacheprovider -p no:xdist >> "$OUTDIR/cpu.log" 2>&1
   step "cpu_bad_input $isa" $?
 done
 export DSCONV_ISA=$ISA
 timeout 170 "$BIN/pytest" tests -q -n 4 -p no:cacheprovider --ignore tests/test_cuda.py \
   --ignore tests/test_bad_input.py --ignore tests/test_errors.py >> "$OUTDIR/cpu.log" 2>&1
 step cpu_suite $?) &
cpu=$!
timeout 100 "$BIN/pytest" tests/test_cuda.py -q -n 4 -p no:cacheprovider > "$OUTDIR/cuda.log" 2>&1
step test_cuda $?
timeout 120 "$PY" -m bench.cuda --reps 30 --out "$OUTDIR/cuda.json" > "$OUTDIR/bench.log" 2>&1
step bench_cuda $?
wait $cudack $cpu $asan
echo "== done at $((SECONDS - t0)) s" | tee -a "$OUTDIR/steps.txt"
