#!/usr/bin/env bash
# Runs tests/cuda/check_kernels.cu (every CUDA launcher vs the scalar CPU reference) with the
# kernels compiled as plain C++ by g++ against the CPU stand-in of tests/cuda/emu: a block's
# threads run as fibers that switch at __syncthreads. This checks the kernels' index math,
# bounds, tiling and block reductions without a GPU; it cannot check warp-level behaviour,
# the real fp16 conversions, nvcc's code generation or performance.
# Usage: bash tests/cuda/emulate.sh   (about a minute to build, a few to run)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/tests"
cp -r "$ROOT/csrc" "$WORK/csrc"
cp -r "$ROOT/tests/cuda" "$WORK/tests/cuda"
# kernel<<<grid, block, smem, stream>>>(args) -> emu::Launch{grid, block, smem, stream}.run(kernel, args)
python3 - "$WORK" <<'PY'
import pathlib, re, sys
launch = re.compile(r"([A-Za-z_][\w:]*(?:<[^;{}]*?>)?)\s*<<<([^;]*?)>>>\(([^;]*?)\);", re.S)
for f in pathlib.Path(sys.argv[1]).rglob("*.cu"):
    text = f.read_text()
    new, n = launch.subn(lambda m: f"emu::Launch{{{m[2]}}}.run({m[1]}, {m[3]});", text)
    if "<<<" in new:
        sys.exit(f"emulate.sh: a launch in {f} was not rewritten")
    f.write_text(new)
PY
flags=(-std=c++20 -O1 -g -I "$ROOT/tests/cuda/emu" -x c++)
cd "$WORK"
g++ "${flags[@]}" -o check_kernels tests/cuda/check_kernels.cu csrc/cuda/*.cu -x none \
  csrc/cpu/reference/*.cpp
./check_kernels
