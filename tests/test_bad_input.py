"""Bad and unusual input, as a matrix: each call either raises a clear error (type, and the
offending argument named in the message) or returns what ATen returns. Covers what
test_errors.py does not: sizes whose index math would overflow 64 bits, huge outputs,
NaN/Inf values, overlapping and zero-stride (expanded) tensors, storage offsets, paddings
far larger than the input, requires_grad paths, raw backward ops with bad geometry.

The whole matrix (and test_errors.py's) also runs in a child process, so a crash would be
reported as a failure instead of killing pytest, and a normal call after it must still be
correct (nothing left in a bad state)."""
import json
import math
import os
import re

import pytest
import torch

import dsconv_ext as dse
from _child import python
from _ref import ref_depthwise, ref_pointwise, ref_separable

TESTS = os.path.dirname(os.path.abspath(__file__))
ops = torch.ops.dsconv
I64 = 2**63 - 1
RT, VE = RuntimeError, ValueError


def t(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


X = t(2, 3, 7, 9)
W = t(6, 1, 3, 3, seed=1)
B = t(6, seed=2)
PW = t(4, 6, 1, 1, seed=3)
PB = t(4, seed=4)
GY = t(2, 6, 7, 9, seed=5)
CL = torch.channels_last


def poisoned(x, value, *index):
    x = x.clone()
    x[index] = value
    return x


def error(exc, name):
    """Raises exc with `name` (an argument name, or a regex when it starts with '~') in the message."""
    return ("error", exc, name)


def aten(reference):
    """Returns what `reference` (the same call on ATen) returns, NaN where it has NaN."""
    return ("aten", reference)


def dw(**kw):
    return lambda: dse.depthwise(**{"x": X, "weight": W, "bias": B, **kw})


def ref_dw(**kw):
    return lambda: ref_depthwise(**{"x": X, "w": W, "b": B, **kw})


def sep(**kw):
    return lambda: dse.separable(**{"x": X, "dw_weight": W, "pw_weight": PW, "dw_bias": B,
                                    "pw_bias": PB, "padding": 1, **kw})


def ref_sep(**kw):
    return lambda: ref_separable(**{"x": X, "w_dw": W, "w_pw": PW, "b_dw": B, "b_pw": PB,
                                    "padding": 1, **kw})


def backward_after_inplace_update():
    x, w = X.clone().requires_grad_(), W.clone().requires_grad_()
    y = dse.depthwise(x, w, padding=1)
    with torch.no_grad():
        w.add_(1.0)  # saved for backward, then modified: autograd must refuse
    y.sum().backward()


def backward_with_wrong_grad_shape():
    x = X.clone().requires_grad_()
    dse.separable(x, W, PW, padding=1).backward(torch.ones(2, 4, 7, 8))


MATRIX = [
    # --- 64-bit overflow in the geometry: a clear error, never a wrapped-around size ---
    ("dw-padding-int64-max", dw(padding=I64), error(VE, "padding")),
    ("dw-padding-2^62", dw(padding=2**62), error(VE, "padding")),
    ("dw-dilation-int64-max", dw(dilation=I64), error(VE, "dilation")),
    ("dw-dilation-2^62-padding-2^62", dw(dilation=2**62, padding=2**62), error(VE, "dilation")),
    ("dw-padding-beyond-int64", dw(padding=2**64), error(RT, "padding")),
    ("dw-same-padding-2^62", dw(padding="same", dilation=2**62), error(VE, "dilation")),
    ("sep-dilation-2^62", sep(dilation=(2**62, 1)), error(VE, "dilation")),
    ("sep-padding-int64-max", sep(padding=(0, I64)), error(VE, "padding")),
    ("raw-dw-asymmetric-padding-int64-max",
     lambda: ops.depthwise(X, W, None, [1, 1], [I64, 0, 0, 0], [1, 1], None), error(VE, "padding")),
    ("raw-dw-bwd-weight-dilation-2^62", lambda: ops.depthwise_backward_weight(
        GY, X, [6, 1, 3, 3], [1, 1], [1, 1, 1, 1], [2**62, 1]), error(VE, "dilation")),
    ("raw-dw-bwd-input-size-2^40", lambda: ops.depthwise_backward_input(
        GY, W, [2, 3, 2**40, 2**40], [1, 1], [1, 1, 1, 1], [1, 1]), error(RT, "grad_out")),
    ("raw-dw-bwd-weight-kernel-2^62", lambda: ops.depthwise_backward_weight(
        GY, X, [6, 1, 2**62, 2**62], [1, 1], [1, 1, 1, 1], [1, 1]), error(RT, "weight_size")),
    # --- outputs too large to allocate (16+ TiB): ATen's allocation error, nothing touched ---
    ("dw-output-2^31-per-side", dw(padding=2**31), error(RT, "~overflow|allocate")),
    ("dw-output-too-large", dw(padding=2**20), error(RT, "~allocate")),
    # outputs with more than 2^63 elements: refused before any size or stride math on them
    # (the sanitizer build checks signed overflow)
    ("sep-output-2^31-per-side", sep(padding=2**31), error(RT, "~overflow")),
    ("conv2d-output-2^31-per-side", lambda: dse.conv2d(X, t(5, 3, 3, 3, seed=6), padding=2**31),
     error(RT, "~overflow")),
    ("pw-expanded-input-output-over-2^63", lambda: dse.pointwise(
        t(1, 6, 1, 1).expand(1, 6, 2**30, 2**30), t(16, 6, 1, 1)), error(RT, "~overflow")),
    ("pw-expanded-input-2^34-pixels", lambda: dse.pointwise(
        t(1, 6, 1, 1).expand(1, 6, 2**17, 2**17), PW), error(RT, "~allocate")),
    # --- extreme but valid geometry: ATen's result ---
    ("dw-stride-int64-max", dw(stride=I64), aten(ref_dw(stride=I64))),
    ("dw-dilation-2^40-1x1-kernel", dw(weight=W[:, :, :1, :1], dilation=2**40),
     aten(ref_dw(w=W[:, :, :1, :1], dilation=2**40))),
    ("dw-padding-far-larger-than-input", dw(padding=(40, 3)), aten(ref_dw(padding=(40, 3)))),
    ("sep-padding-far-larger-than-input", sep(padding=25, dw_activation="relu"),
     aten(ref_sep(padding=25, dw_activation="relu"))),
    # --- NaN and Inf propagate as in ATen ---
    ("dw-x-nan", dw(x=poisoned(X, math.nan, 0, 1, 3, 4), padding=1),
     aten(ref_dw(x=poisoned(X, math.nan, 0, 1, 3, 4), padding=1))),
    ("dw-x-inf-channels-last", dw(x=poisoned(X, math.inf, 1, 2, 0, 0).contiguous(memory_format=CL), padding=1),
     aten(ref_dw(x=poisoned(X, math.inf, 1, 2, 0, 0), padding=1))),
    ("dw-x-minus-inf-relu", dw(x=poisoned(X, -math.inf, 0, 0, 6, 8), activation="relu"),
     aten(ref_dw(x=poisoned(X, -math.inf, 0, 0, 6, 8), activation="relu"))),
    ("dw-weight-nan-relu6", dw(weight=poisoned(W, math.nan, 2, 0, 1, 1), activation="relu6"),
     aten(ref_dw(w=poisoned(W, math.nan, 2, 0, 1, 1), activation="relu6"))),
    ("dw-bias-inf-hardswish", dw(bias=poisoned(B, math.inf, 3), activation="hardswish"),
     aten(ref_dw(b=poisoned(B, math.inf, 3), activation="hardswish"))),
    ("dw-bias-minus-inf-hardswish", dw(bias=poisoned(B, -math.inf, 0), activation="hardswish"),
     aten(ref_dw(b=poisoned(B, -math.inf, 0), activation="hardswish"))),
    ("pw-x-nan-channels-last", lambda: dse.pointwise(poisoned(GY, math.nan, 1, 4, 2, 2).contiguous(memory_format=CL), PW),
     aten(lambda: ref_pointwise(poisoned(GY, math.nan, 1, 4, 2, 2), PW))),
    ("pw-weight-inf-relu", lambda: dse.pointwise(GY, poisoned(PW, math.inf, 1, 2, 0, 0), activation="relu"),
     aten(lambda: ref_pointwise(GY, poisoned(PW, math.inf, 1, 2, 0, 0), activation="relu"))),
    ("sep-x-nan-relu", sep(x=poisoned(X, math.nan, 1, 0, 2, 5), dw_activation="relu", pw_activation="relu"),
     aten(ref_sep(x=poisoned(X, math.nan, 1, 0, 2, 5), dw_activation="relu", pw_activation="relu"))),
    ("sep-dw-bias-inf-relu6", sep(dw_bias=poisoned(B, math.inf, 5), dw_activation="relu6"),
     aten(ref_sep(b_dw=poisoned(B, math.inf, 5), dw_activation="relu6"))),
    ("sep-pw-bias-nan", sep(pw_bias=poisoned(PB, math.nan, 2)), aten(ref_sep(b_pw=poisoned(PB, math.nan, 2)))),
    # Regression: relu (every kernel set) and relu6 (SIMD) turned NaN into 0.
    ("dw-x-nan-relu-channels-last", dw(x=poisoned(X, math.nan, 0, 2, 3, 3).contiguous(memory_format=CL),
                                       weight=W[::2], bias=None, activation="relu"),
     aten(ref_dw(x=poisoned(X, math.nan, 0, 2, 3, 3), w=W[::2], b=None, activation="relu"))),
    ("pw-x-nan-relu6", lambda: dse.pointwise(poisoned(GY, math.nan, 0, 1, 1, 1), PW, activation="relu6"),
     aten(lambda: ref_pointwise(poisoned(GY, math.nan, 0, 1, 1, 1), PW, activation="relu6"))),
    ("sep-x-nan-relu6-channels-last", sep(x=poisoned(X, math.nan, 1, 1, 4, 4).contiguous(memory_format=CL),
                                          dw_activation="relu6", pw_activation="relu6"),
     aten(ref_sep(x=poisoned(X, math.nan, 1, 1, 4, 4), dw_activation="relu6", pw_activation="relu6"))),
    # --- overlapping, zero-stride and offset tensors: read as their values ---
    ("dw-x-expanded", dw(x=X[:1, :, :1].expand(2, 3, 7, 9), padding=1),
     aten(ref_dw(x=X[:1, :, :1].expand(2, 3, 7, 9), padding=1))),
    ("dw-x-overlapping-windows", dw(x=torch.arange(60.).as_strided((2, 3, 7, 9), (5, 3, 2, 1)), padding=1),
     aten(ref_dw(x=torch.arange(60.).as_strided((2, 3, 7, 9), (5, 3, 2, 1)), padding=1))),
    ("dw-x-storage-offset", dw(x=t(3, 3, 7, 9)[1:]), aten(ref_dw(x=t(3, 3, 7, 9)[1:]))),
    ("dw-weight-expanded", dw(weight=W[:1].expand(6, 1, 3, 3)), aten(ref_dw(w=W[:1].expand(6, 1, 3, 3)))),
    ("dw-bias-expanded-scalar", dw(bias=torch.tensor(0.5).expand(6)), aten(ref_dw(b=torch.tensor(0.5).expand(6)))),
    ("pw-weight-overlapping", lambda: dse.pointwise(GY, torch.arange(30.).div(30).as_strided((4, 6, 1, 1), (2, 1, 1, 1))),
     aten(lambda: ref_pointwise(GY, torch.arange(30.).div(30).as_strided((4, 6, 1, 1), (2, 1, 1, 1))))),
    ("pw-x-expanded-channels", lambda: dse.pointwise(GY[:, :1].expand(2, 6, 7, 9), PW),
     aten(lambda: ref_pointwise(GY[:, :1].expand(2, 6, 7, 9), PW))),
    ("sep-x-expanded-channels-last", sep(x=X[:, :, :1, :1].expand(2, 3, 7, 9).contiguous(memory_format=CL)[:, :, :, :8]),
     aten(ref_sep(x=X[:, :, :1, :1].expand(2, 3, 7, 9)[:, :, :, :8]))),
    ("sep-pw-weight-expanded", sep(pw_weight=PW[:, :1].expand(4, 6, 1, 1)),
     aten(ref_sep(w_pw=PW[:, :1].expand(4, 6, 1, 1)))),
    # --- more malformed calls: dtypes, devices, ranks, geometry of the raw backward ops ---
    ("dw-x-uint8", dw(x=(X > 0).to(torch.uint8)), error(RT, "x")),
    ("dw-x-float8", dw(x=X.to(torch.float8_e4m3fn)), error(RT, "x")),
    ("sep-pw-bias-int64", sep(pw_bias=PB.long()), error(RT, "pw_bias")),
    ("sep-dw-weight-meta", sep(dw_weight=W.to("meta")), error(RT, "dw_weight")),
    ("raw-dw-bwd-input-weight-meta", lambda: ops.depthwise_backward_input(
        GY, W.to("meta"), [2, 3, 7, 9], [1, 1], [1, 1, 1, 1], [1, 1]), error(RT, "weight")),
    ("raw-pw-bwd-input-weight-int", lambda: ops.pointwise_backward_input(
        t(2, 4, 5, 5), PW.int()), error(RT, "weight")),
    ("raw-pw-bwd-weight-x-rank3", lambda: ops.pointwise_backward_weight(t(2, 4, 5, 5), t(2, 6, 5)),
     error(RT, "x")),
    ("raw-dw-bwd-weight-x-rank5", lambda: ops.depthwise_backward_weight(
        GY, X[None], [6, 1, 3, 3], [1, 1], [1, 1, 1, 1], [1, 1]), error(RT, "x")),
    ("raw-dw-bwd-input-stride-0", lambda: ops.depthwise_backward_input(
        GY, W, [2, 3, 7, 9], [0, 1], [1, 1, 1, 1], [1, 1]), error(VE, "stride")),
    ("raw-dw-bwd-weight-dilation-negative", lambda: ops.depthwise_backward_weight(
        GY, X, [6, 1, 3, 3], [1, 1], [1, 1, 1, 1], [-1, 1]), error(VE, "dilation")),
    ("raw-dw-bwd-weight-size-zero-kernel", lambda: ops.depthwise_backward_weight(
        GY, X, [6, 1, 0, 3], [1, 1], [1, 1, 1, 1], [1, 1]), error(VE, "weight_size")),
    ("raw-dw-bwd-weight-padding-negative", lambda: ops.depthwise_backward_weight(
        GY, X, [6, 1, 3, 3], [1, 1], [1, -1, 1, 1], [1, 1]), error(VE, "padding")),
    ("raw-sep-pw-bias-rank2", lambda: ops.separable(X, W, PW, None, PB[None], [1, 1], [1, 1, 1, 1], [1, 1]),
     error(RT, "pw_bias")),
    # --- requires_grad paths: the same checks through autograd, and autograd's own ---
    ("dw-requires-grad-weight-shape", dw(x=X.clone().requires_grad_(), weight=t(6, 2, 3, 3).requires_grad_()),
     error(RT, "weight")),
    ("sep-requires-grad-pw-channels", sep(dw_weight=W.clone().requires_grad_(), pw_weight=t(4, 5, 1, 1)),
     error(RT, "pw_weight")),
    ("pw-requires-grad-bias-dtype", lambda: dse.pointwise(GY, PW.clone().requires_grad_(), PB.double()),
     error(RT, "bias")),
    ("backward-after-inplace-update", backward_after_inplace_update, error(RT, "~modified by an inplace operation")),
    ("backward-wrong-grad-shape", backward_with_wrong_grad_shape, error(RT, "~[Mm]ismatch in shape")),
]


def names_argument(message, name):
    if name.startswith("~"):
        return re.search(name[1:], message) is not None
    return re.search(rf"(?<![\w]){re.escape(name)}(?!\w)", message) is not None


def check_case(fn, expect):
    """Raises AssertionError unless fn() behaves as `expect` says."""
    if expect[0] == "error":
        _, exc, name = expect
        try:
            fn()
        except Exception as e:  # noqa: BLE001 -- the type is what is checked
            assert type(e) is exc, f"{type(e).__name__} instead of {exc.__name__}: {e}"
            assert names_argument(str(e), name), f"message does not name {name!r}: {e}"
            return
        raise AssertionError(f"no error; expected {exc.__name__} naming {name!r}")
    y = fn()
    with torch.no_grad():
        expected = expect[1]()
    assert y.shape == expected.shape, f"shape {tuple(y.shape)} != {tuple(expected.shape)}"
    nan = expected.isnan()
    assert torch.equal(y.isnan(), nan), (
        f"NaN at {int((y.isnan() != nan).sum())} other places than ATen's")
    torch.testing.assert_close(y[~nan], expected[~nan], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fn, expect", [pytest.param(f, e, id=i) for i, f, e in MATRIX])
def test_bad_input(isa, fn, expect):
    check_case(fn, expect)


def test_matrix_size_and_ids():
    ids = [c[0] for c in MATRIX]
    assert len(ids) == len(set(ids)) and len(ids) >= 30


def run_all_and_check_after():
    """Every case of this matrix and of test_errors.py in this process, then a normal call
    of each op checked against ATen. Returns {case id: failure message} for failures."""
    import test_errors
    failures = {}
    cases = [(i, f, e) for i, f, e in MATRIX]
    cases += [(f"errors:{i}", f, error(exc, name)) for i, f, exc, name in test_errors.CASES]
    for case_id, fn, expect in cases:
        try:
            check_case(fn, expect)
        except AssertionError as e:
            failures[case_id] = str(e)
    try:
        check_case(sep(padding="same", dw_activation="relu6"), aten(ref_sep(padding="same", dw_activation="relu6")))
        check_case(dw(stride=2), aten(ref_dw(stride=2)))
        check_case(lambda: dse.pointwise(GY, PW, PB), aten(lambda: ref_pointwise(GY, PW, PB)))
    except AssertionError as e:
        failures["normal call after the matrix"] = str(e)
    return failures


def test_matrix_in_a_child_process():
    child = python(f"import sys, json; sys.path.insert(0, {TESTS!r}); "
                   "from test_bad_input import run_all_and_check_after; "
                   "print(json.dumps(run_all_and_check_after()))", timeout=300)
    assert child.returncode == 0, f"child died with {child.returncode}: {child.stderr[-3000:]}"
    assert json.loads(child.stdout.strip().splitlines()[-1]) == {}


def test_process_fine_after_matrix_in_this_process():
    assert run_all_and_check_after() == {}
