#!/usr/bin/env bash
# Native kernel tests (tests/native, torch-free): builds the test program with the host
# compiler and runs it (every kernel set this CPU runs), then cross-compiles it for
# aarch64 and runs it under qemu (the NEON kernels). Installs the cross compiler and qemu
# from Debian when missing.
# Usage: bash scripts/native_tests.sh [--sanitize] [--host-only | --arm-only] [kernel-name-filter]
#   --sanitize   build the host program with -fsanitize=address,undefined
# Build folder: $DSCONV_NATIVE_BUILD (default build/native).
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=0 host=1 arm=1 filter=()
for arg in "$@"; do
  case "$arg" in
    --sanitize) sanitize=1 ;;
    --host-only) arm=0 ;;
    --arm-only) host=0 ;;
    -*) echo "unknown option $arg; usage: $0 [--sanitize] [--host-only | --arm-only] [filter]" >&2; exit 2 ;;
    *) filter=("$arg") ;;
  esac
done
BUILD=${DSCONV_NATIVE_BUILD:-build/native}
JOBS=${MAX_JOBS:-2}
# Every kernel source: files of another architecture compile to nothing (#if guards).
mapfile -t SOURCES < <(ls tests/native/*.cpp; find csrc/cpu -name '*.cpp' | sort)

# build NAME COMPILER FLAGS...: compiles SOURCES in parallel into $BUILD/NAME/kernel_tests.
build() {
  local name=$1 cxx=$2
  shift 2
  local dir=$BUILD/$name t=$SECONDS
  rm -rf "$dir" && mkdir -p "$dir"  # no objects of removed sources
  printf '%s\n' "${SOURCES[@]}" | xargs -P "$JOBS" -I{} sh -c \
    'src=$1 cxx=$2; shift 2; exec "$cxx" -std=c++17 -Wall -Wextra -Wno-maybe-uninitialized "$@" -c "$src" -o "$0/$(echo "$src" | tr / _).o"' \
    "$dir" {} "$cxx" "$@" 2>&1 | sed "s/^/[$name] /" >&2
  "$cxx" "$@" "$dir"/*.o -o "$dir/kernel_tests"
  echo "== $name build: $((SECONDS - t)) s"
}

run() {
  local name=$1 t=$SECONDS
  shift
  "$@" "${filter[@]}"
  echo "== $name run: $((SECONDS - t)) s"
}

if [ "$host" = 1 ]; then
  if [ "$sanitize" = 1 ]; then
    build host-sanitize g++ -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
      -fno-sanitize-recover=undefined
    ASAN_OPTIONS=detect_leaks=1 run host-sanitize "$BUILD/host-sanitize/kernel_tests"
  else
    build host g++ -O2
    run host "$BUILD/host/kernel_tests"
  fi
fi

if [ "$arm" = 1 ]; then
  if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then
    t=$SECONDS
    pkgs=(g++-aarch64-linux-gnu qemu-user-static)
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; }
    echo "== installed ${pkgs[*]}: $((SECONDS - t)) s"
  fi
  # NEON is the aarch64 baseline: no -march flag.
  build aarch64 aarch64-linux-gnu-g++ -O2 -static
  run aarch64-qemu qemu-aarch64-static "$BUILD/aarch64/kernel_tests"
fi
