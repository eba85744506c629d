#!/usr/bin/env bash
# An emulated Raspberry Pi (64-bit Raspberry Pi OS / Debian bookworm arm64) end to end, on
# an x86 machine: makes an arm64 Debian root, installs the aarch64 CPU torch wheel into a
# venv there, runs `pip install .` of this tree inside it and a smoke subset of the pytest
# suite, all under qemu user emulation. Each step prints its duration. Slow: the C++ build
# under emulation takes far longer than on a real Pi.
#
# Needs root: the arm64 root is entered with chroot, and its programs (and every program
# they start: pip -> ninja -> g++ -> cc1plus) run through qemu-aarch64-static registered in
# binfmt_misc for the duration of the script (removed again on exit, with the mounts it
# made). proot, the unprivileged alternative, cannot run gcc here: Debian 12's proot does
# not translate the statx/faccessat2 calls that gcc's driver uses to find cc1plus.
#
# Usage: bash scripts/emulated_pi.sh [--build-timeout SECONDS] [--no-build] [-- pytest args]
#   --no-build   test the dsconv_ext already installed in the root (from an earlier run)
# Cache (root and wheels, reused by later runs): $DSCONV_PI_DIR (default /var/tmp/dsconv-pi).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
DIR=${DSCONV_PI_DIR:-/var/tmp/dsconv-pi}
ROOT=$DIR/root WHEELS=$DIR/wheels
MIRROR=${DSCONV_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# From 2.11 the aarch64 wheels on PyPI are CUDA builds of several GB; 2.10.0 is CPU-only.
TORCH=2.10.0
BUILD_TIMEOUT=5400
BUILD=1
# Smoke subset: the kernel-set tests, the first three grid cases of each forward and
# gradient test on the NEON kernels (vs ATen), and the converter on a MobileNet block.
SMOKE=(tests/test_isa.py tests/test_forward.py tests/test_grad.py tests/test_convert.py -q -p no:cacheprovider
       -k "test_isa or neon-0- or neon-1- or neon-2- or test_same_outputs_and_expected_patterns")
while [ $# -gt 0 ]; do
  case "$1" in
    --build-timeout) BUILD_TIMEOUT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --) shift; SMOKE=("$@"); break ;;
    *) echo "usage: $0 [--build-timeout SECONDS] [--no-build] [-- pytest args]" >&2; exit 2 ;;
  esac
done

step_start=$SECONDS
step() { echo "== $1: $((SECONDS - step_start)) s"; step_start=$SECONDS; }

# Runs a command in the arm64 root, in /src (a copy of this tree); settings go first through
# env: "${IN_PI[@]}" env MAX_JOBS=1 pip ...
# QEMU_CPU: a Raspberry Pi 5 core (Cortex-A76, Armv8.2). A Pi 4 (Cortex-A72, Armv8.0) cannot
# import the torch 2.10.0 wheel (SIGILL, pytorch/pytorch#176993), and qemu's default "max" CPU
# dies with SIGILL inside ATen's convolution.
IN_PI=(chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/opt/venv/bin:/usr/bin:/bin LANG=C.UTF-8
       QEMU_CPU=cortex-a76 /bin/sh -c 'cd /src && exec "$@"' in_pi)
BINFMT=/proc/sys/fs/binfmt_misc
cleanup=()
on_exit() {
  local i
  for ((i = ${#cleanup[@]} - 1; i >= 0; i--)); do eval "${cleanup[i]}" || true; done
}
trap on_exit EXIT
# Mounts (and schedules the unmount of) `mount ARGS... TARGET`.
mount_for_run() {
  mount "$@"
  cleanup+=("umount '${*: -1}' || umount --lazy '${*: -1}'")  # lazy: a straggler still inside
}
enter_root() {
  if [ ! -e "$BINFMT/register" ]; then mount_for_run -t binfmt_misc binfmt_misc "$BINFMT"; fi
  if [ ! -e "$BINFMT/qemu-aarch64" ]; then
    # Debian's registration line (flag F: the interpreter is opened now, so the root needs
    # no copy of it).
    cat /usr/lib/binfmt.d/qemu-aarch64.conf > "$BINFMT/register"
    cleanup+=("echo -1 > '$BINFMT/qemu-aarch64'")
  fi
  mkdir -p "$ROOT/proc" "$ROOT/sys" "$ROOT/dev" "$ROOT/wheels" "$ROOT/src"
  mount_for_run -t proc proc "$ROOT/proc"
  mount_for_run -o bind,ro /sys "$ROOT/sys"  # torch reads the CPU list there
  mount_for_run --bind /dev "$ROOT/dev"
  mount_for_run --bind "$WHEELS" "$ROOT/wheels"
}

need=()
for tool in qemu-aarch64-static:qemu-user-static debootstrap:debootstrap; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
  step "installed ${need[*]}"
fi

if [ ! -x "$ROOT/usr/bin/python3.11" ] || [ ! -x "$ROOT/usr/bin/g++" ]; then
  if grep -q " $ROOT/" /proc/mounts; then
    echo "error: something is still mounted under $ROOT (an interrupted run?); unmount it first" >&2
    exit 1
  fi
  rm -rf --one-file-system "$ROOT"
  # --foreign only downloads and unpacks the base; every package (with python, the
  # compiler and the Python headers) is then unpacked as is: nothing needs configuring.
  debootstrap --foreign --arch=arm64 --variant=minbase \
    --include=python3,python3-venv,python3-dev,libpython3.11,g++ bookworm "$ROOT" "$MIRROR" >/dev/null
  for deb in "$ROOT"/var/cache/apt/archives/*.deb; do dpkg -x "$deb" "$ROOT"; done
  step "arm64 Debian root (debootstrap + unpack)"
fi

if ! ls "$WHEELS"/torch-"$TORCH"-*aarch64*.whl >/dev/null 2>&1; then
  mkdir -p "$WHEELS"
  target=(--only-binary=:all: --platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64
          --platform manylinux2014_aarch64 --python-version 3.11 --implementation cp --abi cp311)
  # torch without its dependencies (pip evaluates their markers for this x86 host, which
  # would add the CUDA packages), then its pure-Python ones and the test tools.
  python3 -m pip download -q "${target[@]}" -d "$WHEELS" --no-deps "torch==$TORCH"
  python3 -m pip download -q "${target[@]}" -d "$WHEELS" filelock typing-extensions sympy networkx jinja2 \
    fsspec pytest hypothesis numpy expecttest ninja setuptools wheel
  step "downloaded aarch64 wheels (torch $TORCH)"
fi

enter_root
if ! "${IN_PI[@]}" /opt/venv/bin/python -c "import torch" 2>/dev/null; then
  "${IN_PI[@]}" /usr/bin/python3.11 -m venv /opt/venv
  # --no-compile: byte-compiling torch's files under emulation would take longer than the install.
  "${IN_PI[@]}" /opt/venv/bin/pip install -q --no-compile --no-index --find-links /wheels \
    "torch==$TORCH" pytest hypothesis numpy expecttest ninja setuptools wheel
  step "venv with torch $TORCH (under qemu)"
fi

if [ "$BUILD" = 1 ]; then
  # A fresh copy of the tree (tracked and untracked, not ignored, files).
  rm -rf "$ROOT/src" && mkdir -p "$ROOT/src"
  git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$ROOT/src"
  "${IN_PI[@]}" uname -m
  "${IN_PI[@]}" python -c "import platform, torch; print('python', platform.python_version(), 'torch', torch.__version__)"
  step "copied the tree; import torch (under qemu)"

  # The same command a Pi user runs (README), one compiler job (the emulated compiler
  # needs ~1 GB per job).
  # c++ is an alternatives link that only package configuration creates: name g++ instead.
  timeout "$BUILD_TIMEOUT" "${IN_PI[@]}" env MAX_JOBS=1 CXX=g++ CC=gcc \
    pip install --no-build-isolation --no-deps -v . \
    > "$DIR/build.log" 2>&1 ||
    { rc=$?; tail -30 "$DIR/build.log"; step "pip install . FAILED (exit $rc; log $DIR/build.log)"; exit "$rc"; }
  grep -E "^ *\[[0-9]+/[0-9]+\]" "$DIR/build.log" | tail -3 || true
  step "pip install . (under qemu)"
fi

"${IN_PI[@]}" sh -c 'cd /tmp && python -c "import dsconv_ext as d; print(\"cpu_capability:\", d.cpu_capability())"'
"${IN_PI[@]}" pytest "${SMOKE[@]}"
step "smoke tests (under qemu)"
