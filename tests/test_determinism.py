"""Determinism: every op and its backward give bit-identical results for 1, 2, 3 and 4
intra-op threads, on repeated calls, and in a fresh interpreter. (Work is split across
threads without changing any element's order of summation.)"""
import hashlib
import json
import os

import pytest
import torch

import dsconv_ext as dse
from _child import python
from _ref import forced_isa, kernel_sets

TESTS = os.path.dirname(os.path.abspath(__file__))
THREAD_COUNTS = (1, 2, 3, 4)
# Big enough that every op splits its work over 4 threads (rows, channel blocks, pixels).
CASES = {
    "depthwise": (dict(stride=1, padding=1), (2, 24, 30, 30), [(48, 1, 3, 3)]),
    "depthwise_s2k5": (dict(stride=2, padding=2, activation="relu6"), (2, 24, 29, 31), [(24, 1, 5, 5)]),
    "pointwise": (dict(activation="hardswish"), (2, 40, 20, 24), [(36, 40, 1, 1)]),
    "separable": (dict(padding="same", dw_activation="relu", pw_activation="relu6"),
                  (2, 24, 26, 26), [(48, 1, 3, 3), (32, 48, 1, 1)]),
}
FN = {"depthwise": dse.depthwise, "depthwise_s2k5": dse.depthwise, "pointwise": dse.pointwise,
      "separable": dse.separable}


def outputs(name, layout, dtype):
    """The op's output and the gradients of every input, for fixed random inputs."""
    kwargs, x_shape, w_shapes = CASES[name]
    g = torch.Generator().manual_seed(7)
    x = torch.randn(x_shape, generator=g, dtype=dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    leaves = [x.requires_grad_()] + [torch.randn(s, generator=g, dtype=dtype).requires_grad_()
                                     for s in w_shapes]
    y = FN[name](*leaves, **kwargs)
    gy = torch.randn(y.shape, generator=g, dtype=dtype)
    return [y.detach()] + list(torch.autograd.grad(y, leaves, gy))


def digests(isa, threads):
    """sha256 of every output of every case, by case key, with `threads` intra-op threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with forced_isa(isa):
            return {f"{name}-{layout}-{dtype}": [hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()
                                                 for t in outputs(name, layout, dtype)]
                    for name in CASES for layout in ("nchw", "channels_last")
                    for dtype in (torch.float32, torch.float64)}
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("isa", kernel_sets())
def test_bitwise_identical_across_threads_runs_and_processes(isa):
    reference = digests(isa, 1)
    for threads in THREAD_COUNTS:  # 1 again: a repeated run
        got = digests(isa, threads)
        mismatched = [k for k in reference if got[k] != reference[k]]
        assert not mismatched, f"{threads} threads: {mismatched}"
    child = python(f"import sys, json; sys.path.insert(0, {TESTS!r}); "
                   f"from test_determinism import digests; print(json.dumps(digests({isa!r}, 3)))",
                   timeout=300)
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout.strip().splitlines()[-1]) == reference


# Forward calls whose tiling follows the L2 size (csrc/cpu/cache_sizes.h): the inverted
# residual's row tiles, the separable tiles and the GEMM's pixel blocks.
TILED = {
    "inverted_residual": ((1, 24, 56, 56), [(144, 24, 1, 1), (144, 1, 3, 3), (24, 144, 1, 1)]),
    "separable": ((2, 64, 40, 40), [(64, 1, 3, 3), (96, 64, 1, 1)]),
    "pointwise": ((1, 400, 30, 30), [(72, 400, 1, 1)]),
}


def tiling_digests(isa):
    """sha256 of each TILED call's output (channels_last), by op name."""
    g = torch.Generator().manual_seed(11)
    out = {}
    with forced_isa(isa), torch.inference_mode():
        for name, (x_shape, w_shapes) in TILED.items():
            x = torch.randn(x_shape, generator=g).contiguous(memory_format=torch.channels_last)
            ws = [torch.randn(s, generator=g) / s[1] ** 0.5 for s in w_shapes]
            if name == "inverted_residual":
                y = dse.inverted_residual(x, ws[0], ws[1], ws[2], expand_activation="relu6",
                                          dw_activation="relu6", padding=1, residual=True)
            elif name == "separable":
                y = dse.separable(x, *ws, padding=1, dw_activation="relu")
            else:
                y = dse.pointwise(x, *ws, activation="relu")
            out[name] = hashlib.sha256(y.contiguous().numpy().tobytes()).hexdigest()
    return out


@pytest.mark.parametrize("isa", kernel_sets())
def test_bitwise_identical_for_any_cache_size(isa):
    """The tile budgets scale with the L2 size; DSCONV_L2_BYTES forces one. Other tilings
    (256 KiB and 2 MiB, the clamp's ends, one of them other than this machine's) give the
    same bits."""
    reference = tiling_digests(isa)
    for l2 in (256 * 1024, 2048 * 1024):
        child = python(f"import sys, json; sys.path.insert(0, {TESTS!r}); "
                       f"from test_determinism import tiling_digests; "
                       f"print(json.dumps(tiling_digests({isa!r})))",
                       env_extra={"DSCONV_L2_BYTES": str(l2)}, timeout=300)
        assert child.returncode == 0, child.stderr
        assert json.loads(child.stdout.strip().splitlines()[-1]) == reference, l2
