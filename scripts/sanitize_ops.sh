#!/usr/bin/env bash
# The extension built with AddressSanitizer + UBSan (DSCONV_SANITIZE=1, setup.py) into its
# own venv from a copy of the tree, then op tests under Python with gcc's sanitizer runtimes
# preloaded, once per kernel set this CPU runs (DSCONV_ISA). Fails on any test failure and
# on any sanitizer report (logs go to $DIR/logs; reports are printed).
# Usage: bash scripts/sanitize_ops.sh [--no-build] [pytest args]   (default: the tests below)
# Folder: $DSCONV_SANITIZE_DIR (default build/sanitize): src/ (the copy), venv/, logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${DSCONV_SANITIZE_DIR:-$PWD/build/sanitize}
build=1
if [ "${1:-}" = "--no-build" ]; then build=0; shift; fi
# Every op, forward and backward, both layouts, bad input and threads, and the op chain of
# FusedSequential (test_memory measures RSS, which ASan's quarantine inflates; the other
# model tests add no kernel paths).
TESTS=(tests/test_forward.py tests/test_grad.py tests/test_properties.py tests/test_fuzz.py
       tests/test_bad_input.py tests/test_errors.py tests/test_empty.py tests/test_threads.py
       tests/test_packed_cache.py tests/test_inverted_residual.py
       tests/test_squeeze_excite.py tests/test_linear.py tests/test_kernels.py
       tests/test_conv2d.py tests/test_pointwise_residual.py tests/test_global_avg_pool.py
       tests/test_fused_sequential.py)
[ $# -gt 0 ] && TESTS=("$@")

if [ "$build" = 1 ]; then
  t=$SECONDS
  # A copy of the tree: the sanitizer build's objects never mix with a normal build's.
  # Its build/ folder stays (ninja recompiles what changed; tar keeps modification times).
  mkdir -p "$DIR/src"
  find "$DIR/src" -mindepth 1 -maxdepth 1 ! -name build -exec rm -rf {} +
  tar --exclude=./build --exclude=./.venv --exclude=./.git --exclude='*.so' \
    --exclude=./dsconv_ext/_build_info.py -cf - . | tar -xf - -C "$DIR/src"
  DSCONV_SANITIZE=1 DSCONV_VENV="$DIR/venv" MAX_JOBS=${MAX_JOBS:-2} \
    bash -c 'source "$1/scripts/env.sh" "[test]"' _ "$DIR/src"
  echo "== sanitizer build: $((SECONDS - t)) s"
fi

PY="$DIR/venv/bin/python"
# The extension's path, without importing it (that needs the runtimes preloaded).
SO=$(cd /tmp && "$PY" -c 'import glob, importlib.util as u, os
print(glob.glob(os.path.join(os.path.dirname(u.find_spec("dsconv_ext").origin), "_C*.so"))[0])')
if [ "$(readelf -d "$SO" | grep -c libasan)" = 0 ]; then
  echo "error: $SO is not built with AddressSanitizer" >&2
  exit 1
fi
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
LOGS=$DIR/logs
rm -rf "$LOGS" && mkdir -p "$LOGS"
# No leak check (CPython and torch keep memory to exit); allocations over 8 GiB fail
# (NULL: torch raises) instead of being reserved and touched; UBSan stops at its first
# report. ASan reports go to $LOGS/asan.<pid>; UBSan's go to stderr (it ignores log_path
# here), which pytest leaves alone with --capture=sys and which is copied to $LOGS.
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=8192:log_path=$LOGS/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
# DSCONV_SANITIZE_ISAS limits the kernel sets (e.g. "avx512" on a borrowed AVX-512 machine).
ISAS=${DSCONV_SANITIZE_ISAS:-$(cd /tmp && "$PY" -c 'import dsconv_ext as d
print(" ".join(d.supported_cpu_capabilities()))')}

status=0
cd "$DIR/src"
for isa in $ISAS; do
  t=$SECONDS
  DSCONV_ISA=$isa "$DIR/venv/bin/pytest" -q -p no:cacheprovider --capture=sys "${TESTS[@]}" \
    2> >(tee "$LOGS/stderr.$isa" >&2) || status=1
  echo "== sanitized op tests, DSCONV_ISA=$isa: $((SECONDS - t)) s"
done
# Reports (errors, UBSan findings); the logs may also hold warnings about the huge
# allocations test_bad_input makes on purpose ("failed to allocate"), which are expected.
reports=$(grep -lE 'ERROR: AddressSanitizer|runtime error:|SUMMARY: ' "$LOGS"/* 2>/dev/null || true)
if [ -n "$reports" ]; then
  echo "error: sanitizer reports:" >&2
  for f in $reports; do echo "---- $f" >&2; head -80 "$f" >&2; done
  status=1
fi
[ "$status" = 0 ] && echo "sanitized op tests: no failures, no sanitizer reports ($ISAS)"
exit "$status"
