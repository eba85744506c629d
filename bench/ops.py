"""The benchmarked ops, each as dsconv_ext and ATen variants in NCHW and channels_last, and
the check of every variant against ATen before anything is timed.

dw:  depthwise kxk, stride s, pad k//2, activation    ATen: F.conv2d(groups=C) + activation
pw:  1x1 C_in -> C_out, activation                    ATen: F.conv2d + activation
sep: fused depthwise -> act -> pointwise -> act       ATen: the same ops in sequence

Each case also carries the op as an nn.Module with the same weights (`module`), from which
the peers (bench/peers) build their graphs.
"""
import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

OPS = ("dw", "pw", "sep")
VARIANTS = ("dse_nchw", "dse_cl", "aten_nchw", "aten_cl")
DSE_VARIANTS = VARIANTS[:2]
ATEN_VARIANTS = VARIANTS[2:]


class MismatchError(AssertionError):
    """A variant disagrees with ATen: its timings would mean nothing."""


ATEN_ACT = {None: lambda t: t, "relu": F.relu, "relu6": F.relu6, "hardswish": F.hardswish}
MODULE_ACT = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish}


@dataclass
class Case:
    layer: object
    op: str
    variants: Dict[str, Callable[[], torch.Tensor]]
    module: Optional[nn.Module] = None   # the op as conv(+act) modules, for the peers
    x: Optional[torch.Tensor] = None     # its NCHW input


def conv_module(weight, stride=1, padding=0, groups=1, act=None):
    """nn.Conv2d (no bias) holding `weight`, then the activation module (if any)."""
    o, ipg, kh, kw = weight.shape
    conv = nn.Conv2d(ipg * groups, o, (kh, kw), stride, padding, groups=groups, bias=False)
    conv.weight.data.copy_(weight)
    return [conv] + ([MODULE_ACT[act]()] if act else [])


def make_case(dse, layer, op, batch, seed=0):
    """Inputs and the four variants of `op` on `layer`. Weights are scaled like a trained
    layer's (std 1/sqrt(fan_in)) so outputs are O(1) and float32 tolerances are meaningful."""
    g = torch.Generator().manual_seed(seed * 1000 + layer.id)
    c, s, k, p = layer.c_in, layer.stride, layer.kernel, layer.pad
    hw = layer.out_hw if op == "pw" else layer.hw
    x = torch.randn(batch, c, hw, hw, generator=g)
    w_dw = torch.randn(c, 1, k, k, generator=g) / k
    w_pw = torch.randn(layer.c_out, c, 1, 1, generator=g) / math.sqrt(c)
    a_dw, a_pw = layer.activation("dw"), layer.activation("pw")

    def aten_dw(t):
        return ATEN_ACT[a_dw](F.conv2d(t, w_dw, None, s, p, 1, c))

    def aten_pw(t):
        return ATEN_ACT[a_pw](F.conv2d(t, w_pw))

    dw_mod = conv_module(w_dw, s, p, c, a_dw)
    pw_mod = conv_module(w_pw, act=a_pw)
    ours, aten, mods = {
        "dw": (lambda t: dse.depthwise(t, w_dw, stride=s, padding=p, activation=a_dw), aten_dw,
               dw_mod),
        "pw": (lambda t: dse.pointwise(t, w_pw, activation=a_pw), aten_pw, pw_mod),
        "sep": (lambda t: dse.separable(t, w_dw, w_pw, stride=s, padding=p,
                                        dw_activation=a_dw, pw_activation=a_pw),
                lambda t: aten_pw(aten_dw(t)), dw_mod + pw_mod),
    }[op]
    # The weights' channels_last form equals the contiguous one (their size-1 dims), so only
    # the activation changes layout.
    x_cl = x.contiguous(memory_format=torch.channels_last)
    variants = {"dse_nchw": partial(ours, x), "dse_cl": partial(ours, x_cl),
                "aten_nchw": partial(aten, x), "aten_cl": partial(aten, x_cl)}
    return Case(layer, op, variants, nn.Sequential(*mods).eval(), x)


def max_error(out, expected):
    """Largest |out - expected| relative to the largest |expected| (at least 1)."""
    out = out.detach().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    ref = expected.detach().numpy()
    if out.shape != ref.shape:
        raise MismatchError(f"output shape {out.shape}, expected {ref.shape}")
    return float(np.abs(out - ref).max() / max(1.0, float(np.abs(ref).max())))


def check(dse, case, peers=None, peer_tol=1e-4):
    """Run every variant once, compare with ATen NCHW (dsconv_ext: float32 tolerances of
    torch.testing.assert_close, else MismatchError; peers: max error relative to max |output|
    at most peer_tol, else the peer is rejected for this case) and check the output's memory
    format. Returns ({dse variant: kernel names it ran}, {variant: max relative error},
    {rejected peer: why})."""
    expected = case.variants["aten_nchw"]()
    kernels, errors, rejected = {}, {}, {}
    where = f"layer {case.layer.id} ({case.layer.label}) op {case.op}"
    for name, fn in case.variants.items():
        out = fn()
        if name in DSE_VARIANTS:
            kernels[name] = dse.last_kernels()
        fmt = torch.channels_last if name.endswith("_cl") else torch.contiguous_format
        if not out.is_contiguous(memory_format=fmt):
            raise MismatchError(f"{where} variant {name}: output is not {fmt} "
                                f"(strides {out.stride()})")
        try:
            torch.testing.assert_close(out, expected, rtol=1.3e-6, atol=1e-5)
        except AssertionError as e:
            raise MismatchError(f"{where} variant {name} disagrees with ATen:\n{e}") from None
        errors[name] = max_error(out, expected)
    errors.update(check_peers(peers or {}, expected, rejected, peer_tol))
    return kernels, errors, rejected


def check_peers(peers, expected, rejected, tol):
    """{peer: max relative error} for each runner in `peers` (run once); peers off by more
    than `tol`, or failing, are added to `rejected` with the reason."""
    errors = {}
    for name, runner in peers.items():
        try:
            runner.run()
            errors[name] = max_error(runner.output(), expected)
        except Exception as e:  # a peer failing is reported, not fatal
            rejected[name] = f"{type(e).__name__}: {e}"
            continue
        if errors[name] > tol:
            rejected[name] = f"max error {errors[name]:.2e} > {tol:g} (relative to max |output|)"
    return errors
