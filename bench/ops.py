"""The benchmarked ops, each as dsconv_ext and ATen variants in NCHW and channels_last, and
the check of every variant against ATen before anything is timed.

dw:  depthwise 3x3, stride s, pad 1     ATen: F.conv2d(groups=C)
pw:  1x1 C_in -> C_out                   ATen: F.conv2d
sep: fused depthwise -> pointwise        ATen: the two F.conv2d calls in sequence
"""
import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, Dict

import torch
import torch.nn.functional as F

OPS = ("dw", "pw", "sep")
VARIANTS = ("dse_nchw", "dse_cl", "aten_nchw", "aten_cl")
DSE_VARIANTS = VARIANTS[:2]
ATEN_VARIANTS = VARIANTS[2:]


class MismatchError(AssertionError):
    """A variant disagrees with ATen: its timings would mean nothing."""


@dataclass
class Case:
    layer: object
    op: str
    variants: Dict[str, Callable[[], torch.Tensor]]


def make_case(dse, layer, op, batch, seed=0):
    """Inputs and the four variants of `op` on `layer`. Weights are scaled like a trained
    layer's (std 1/sqrt(fan_in)) so outputs are O(1) and float32 tolerances are meaningful."""
    g = torch.Generator().manual_seed(seed * 1000 + layer.id)
    c, s = layer.c_in, layer.stride
    hw = layer.out_hw if op == "pw" else layer.hw
    x = torch.randn(batch, c, hw, hw, generator=g)
    w_dw = torch.randn(c, 1, 3, 3, generator=g) / 3.0
    w_pw = torch.randn(layer.c_out, c, 1, 1, generator=g) / math.sqrt(c)

    def aten_dw(t):
        return F.conv2d(t, w_dw, None, s, 1, 1, c)

    ours, aten = {
        "dw": (lambda t: dse.depthwise(t, w_dw, stride=s, padding=1), aten_dw),
        "pw": (lambda t: dse.pointwise(t, w_pw), lambda t: F.conv2d(t, w_pw)),
        "sep": (lambda t: dse.separable(t, w_dw, w_pw, stride=s, padding=1),
                lambda t: F.conv2d(aten_dw(t), w_pw)),
    }[op]
    # The weights' channels_last form equals the contiguous one (their size-1 dims), so only
    # the activation changes layout.
    x_cl = x.contiguous(memory_format=torch.channels_last)
    variants = {"dse_nchw": partial(ours, x), "dse_cl": partial(ours, x_cl),
                "aten_nchw": partial(aten, x), "aten_cl": partial(aten, x_cl)}
    return Case(layer, op, variants)


def check(dse, case):
    """Run every variant once, compare with ATen NCHW (float32 tolerances of
    torch.testing.assert_close) and check the output's memory format. Returns
    {dse variant: kernel names it ran}; raises MismatchError."""
    expected = case.variants["aten_nchw"]()
    kernels = {}
    for name, fn in case.variants.items():
        out = fn()
        if name in DSE_VARIANTS:
            kernels[name] = dse.last_kernels()
        where = f"layer {case.layer.id} ({case.layer.label}) op {case.op} variant {name}"
        fmt = torch.channels_last if name.endswith("_cl") else torch.contiguous_format
        if not out.is_contiguous(memory_format=fmt):
            raise MismatchError(f"{where}: output is not {fmt} (strides {out.stride()})")
        try:
            torch.testing.assert_close(out, expected, rtol=1.3e-6, atol=1e-5)
        except AssertionError as e:
            raise MismatchError(f"{where} disagrees with ATen:\n{e}") from None
    return kernels
