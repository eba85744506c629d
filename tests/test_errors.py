"""Bad input: every case raises the documented exception type (tensor problems
RuntimeError, bad scalar arguments ValueError) with a message naming the offending argument."""
import re

import pytest
import torch

import dsconv_ext as dse

ops = torch.ops.dsconv
g = torch.Generator().manual_seed(0)
X = torch.randn(2, 3, 7, 9, generator=g)          # C = 3
W = torch.randn(6, 1, 3, 3, generator=g)          # multiplier 2
B = torch.randn(6, generator=g)
PW = torch.randn(4, 6, 1, 1, generator=g)         # 6 -> 4 channels
PB = torch.randn(4, generator=g)
GY = torch.randn(2, 6, 7, 9, generator=g)          # grad of a padding=1 depthwise of X


def dw(**kw):
    args = dict(x=X, weight=W, bias=B)
    args.update(kw)
    return lambda: dse.depthwise(**args)


def pw(**kw):
    args = dict(x=torch.randn(2, 6, 5, 5), weight=PW, bias=PB)
    args.update(kw)
    return lambda: dse.pointwise(**args)


def sep(**kw):
    args = dict(x=X, dw_weight=W, pw_weight=PW, dw_bias=B, pw_bias=PB, padding=1)
    args.update(kw)
    return lambda: dse.separable(**args)


RT, VE = RuntimeError, ValueError
CASES = [
    # --- depthwise: tensors ---
    ("dw-x-rank3", dw(x=X[0]), RT, "x"),
    ("dw-x-rank5", dw(x=X[None]), RT, "x"),
    ("dw-x-none", dw(x=None), RT, "x"),
    ("dw-weight-rank3", dw(weight=W[0]), RT, "weight"),
    ("dw-weight-shape1", dw(weight=torch.randn(6, 2, 3, 3)), RT, "weight"),
    ("dw-weight-not-multiple", dw(weight=torch.randn(4, 1, 3, 3), bias=None), RT, "weight"),
    ("dw-weight-fewer-than-C", dw(weight=torch.randn(0, 1, 3, 3), bias=None), RT, "weight"),
    ("dw-weight-empty-kernel", dw(weight=torch.randn(6, 1, 0, 3)), RT, "weight"),
    ("dw-bias-length", dw(bias=torch.randn(3)), RT, "bias"),
    ("dw-bias-rank", dw(bias=B[None]), RT, "bias"),
    ("dw-kernel-too-large", dw(weight=torch.randn(3, 1, 9, 9), bias=None), RT, "weight"),
    ("dw-kernel-too-large-dilated", dw(dilation=(4, 1)), RT, "weight"),
    ("dw-x-int", dw(x=X.int()), RT, "x"),
    ("dw-x-long", dw(x=X.long()), RT, "x"),
    ("dw-x-bool", dw(x=X > 0), RT, "x"),
    ("dw-x-complex", dw(x=X.to(torch.complex64)), RT, "x"),
    ("dw-x-float16", dw(x=X.half(), weight=W.half(), bias=B.half()), RT, "x"),
    ("dw-x-bfloat16", dw(x=X.bfloat16(), weight=W.bfloat16(), bias=B.bfloat16()), RT, "x"),
    ("dw-weight-int", dw(weight=W.int()), RT, "weight"),
    ("dw-weight-float16", dw(weight=W.half()), RT, "weight"),
    ("dw-bias-int", dw(bias=B.int()), RT, "bias"),
    ("dw-weight-float64", dw(weight=W.double()), RT, "weight"),
    ("dw-bias-float64", dw(bias=B.double()), RT, "bias"),
    ("dw-x-float64", dw(x=X.double()), RT, "weight"),
    ("dw-weight-meta", dw(weight=W.to("meta")), RT, "weight"),
    ("dw-weight-meta-grad", dw(weight=W.to("meta").requires_grad_()), RT, "weight"),
    ("dw-bias-meta", dw(bias=B.to("meta")), RT, "bias"),
    ("dw-x-meta", dw(x=X.to("meta")), RT, "weight"),
    # --- depthwise: scalar arguments ---
    ("dw-stride-0", dw(stride=0), VE, "stride"),
    ("dw-stride-negative", dw(stride=(1, -1)), VE, "stride"),
    ("dw-stride-float", dw(stride=1.5), VE, "stride"),
    ("dw-stride-triple", dw(stride=(1, 1, 1)), VE, "stride"),
    ("dw-dilation-0", dw(dilation=0), VE, "dilation"),
    ("dw-dilation-negative", dw(dilation=(-1, 1)), VE, "dilation"),
    ("dw-dilation-bool", dw(dilation=True), VE, "dilation"),
    ("dw-padding-negative", dw(padding=-1), VE, "padding"),
    ("dw-padding-pair-negative", dw(padding=(0, -2)), VE, "padding"),
    ("dw-padding-triple", dw(padding=(1, 1, 1)), VE, "padding"),
    ("dw-padding-string", dw(padding="full"), VE, "padding"),
    ("dw-padding-same-stride2", dw(padding="same", stride=2), VE, "padding"),
    ("dw-padding-same-stride-pair", dw(padding="same", stride=(1, 2)), VE, "stride"),
    ("dw-activation-unknown", dw(activation="gelu"), VE, "activation"),
    ("dw-activation-none-string", dw(activation="none"), VE, "activation"),
    ("dw-activation-case", dw(activation="ReLU"), VE, "activation"),
    ("dw-activation-unknown-grad", dw(x=X.clone().requires_grad_(), activation="swish"), VE,
     "activation"),
    # --- pointwise ---
    ("pw-x-rank", pw(x=torch.randn(6, 5, 5)), RT, "x"),
    ("pw-weight-rank", pw(weight=PW[:, :, 0]), RT, "weight"),
    ("pw-weight-not-1x1", pw(weight=torch.randn(4, 6, 3, 3)), RT, "weight"),
    ("pw-weight-channels", pw(weight=torch.randn(4, 5, 1, 1)), RT, "weight"),
    ("pw-bias-length", pw(bias=torch.randn(6)), RT, "bias"),
    ("pw-x-int", pw(x=torch.ones(2, 6, 5, 5, dtype=torch.int32)), RT, "x"),
    ("pw-x-float16", pw(x=torch.randn(2, 6, 5, 5).half(), weight=PW.half(), bias=PB.half()), RT, "x"),
    ("pw-weight-float64", pw(weight=PW.double()), RT, "weight"),
    ("pw-bias-float64", pw(bias=PB.double()), RT, "bias"),
    ("pw-weight-meta", pw(weight=PW.to("meta")), RT, "weight"),
    ("pw-activation", pw(activation="tanh"), VE, "activation"),
    # --- separable ---
    ("sep-x-rank", sep(x=X[0]), RT, "x"),
    ("sep-dw-weight-rank", sep(dw_weight=W[0]), RT, "dw_weight"),
    ("sep-dw-weight-shape1", sep(dw_weight=torch.randn(6, 3, 3, 3)), RT, "dw_weight"),
    ("sep-dw-weight-not-multiple", sep(dw_weight=torch.randn(5, 1, 3, 3)), RT, "dw_weight"),
    ("sep-pw-weight-rank", sep(pw_weight=PW[0]), RT, "pw_weight"),
    ("sep-pw-weight-channels", sep(pw_weight=torch.randn(4, 3, 1, 1)), RT, "pw_weight"),
    ("sep-pw-weight-not-1x1", sep(pw_weight=torch.randn(4, 6, 1, 2)), RT, "pw_weight"),
    ("sep-dw-bias-length", sep(dw_bias=torch.randn(3)), RT, "dw_bias"),
    ("sep-pw-bias-length", sep(pw_bias=torch.randn(6)), RT, "pw_bias"),
    ("sep-kernel-too-large", sep(padding=0, dw_weight=torch.randn(6, 1, 8, 3)), RT, "dw_weight"),
    ("sep-x-complex", sep(x=X.to(torch.complex128)), RT, "x"),
    ("sep-x-float16", sep(x=X.half()), RT, "x"),
    ("sep-dw-weight-float64", sep(dw_weight=W.double()), RT, "dw_weight"),
    ("sep-pw-weight-float64", sep(pw_weight=PW.double()), RT, "pw_weight"),
    ("sep-pw-bias-float64", sep(pw_bias=PB.double()), RT, "pw_bias"),
    ("sep-pw-weight-meta", sep(pw_weight=PW.to("meta")), RT, "pw_weight"),
    ("sep-dw-bias-meta", sep(dw_bias=B.to("meta")), RT, "dw_bias"),
    ("sep-stride-0", sep(stride=0), VE, "stride"),
    ("sep-dilation-0", sep(dilation=(1, 0)), VE, "dilation"),
    ("sep-padding-negative", sep(padding=(-1, 0)), VE, "padding"),
    ("sep-padding-string", sep(padding="SAME"), VE, "padding"),
    ("sep-padding-same-stride2", sep(padding="same", stride=2), VE, "padding"),
    ("sep-dw-activation", sep(dw_activation="elu"), VE, "dw_activation"),
    ("sep-pw-activation", sep(pw_activation="sigmoid"), VE, "pw_activation"),
    # --- raw ops ---
    ("raw-dw-padding-length", lambda: ops.depthwise(X, W, None, [1, 1], [1, 1, 1], [1, 1]), VE, "padding"),
    ("raw-dw-padding-negative", lambda: ops.depthwise(X, W, None, [1, 1], [1, 1, -1, 1], [1, 1]), VE, "padding"),
    ("raw-dw-stride-length", lambda: ops.depthwise(X, W, None, [1, 1, 1], [0, 0, 0, 0], [1, 1]), VE, "stride"),
    ("raw-sep-padding-length", lambda: ops.separable(X, W, PW, None, None, [1, 1], [1, 1], [1, 1]), VE, "padding"),
    ("raw-dw-bwd-input-grad-shape", lambda: ops.depthwise_backward_input(
        GY[:, :, :5], W, [2, 3, 7, 9], [1, 1], [1, 1, 1, 1], [1, 1]), RT, "grad_out"),
    ("raw-dw-bwd-input-size-negative", lambda: ops.depthwise_backward_input(
        GY, W, [2, 3, -7, 9], [1, 1], [1, 1, 1, 1], [1, 1]), VE, "input_size"),
    ("raw-dw-bwd-input-size-length", lambda: ops.depthwise_backward_input(
        GY, W, [2, 3, 7], [1, 1], [1, 1, 1, 1], [1, 1]), VE, "input_size"),
    ("raw-dw-bwd-input-weight-channels", lambda: ops.depthwise_backward_input(
        GY, W, [2, 4, 7, 9], [1, 1], [1, 1, 1, 1], [1, 1]), RT, "weight"),
    ("raw-dw-bwd-input-dtype", lambda: ops.depthwise_backward_input(
        GY, W.double(), [2, 3, 7, 9], [1, 1], [1, 1, 1, 1], [1, 1]), RT, "weight"),
    ("raw-dw-bwd-weight-size-shape1", lambda: ops.depthwise_backward_weight(
        GY, X, [6, 2, 3, 3], [1, 1], [1, 1, 1, 1], [1, 1]), VE, "weight_size"),
    ("raw-dw-bwd-weight-size-multiple", lambda: ops.depthwise_backward_weight(
        GY, X, [5, 1, 3, 3], [1, 1], [1, 1, 1, 1], [1, 1]), RT, "weight_size"),
    ("raw-dw-bwd-weight-too-large", lambda: ops.depthwise_backward_weight(
        GY, X, [6, 1, 11, 3], [1, 1], [1, 1, 1, 1], [1, 1]), RT, "weight_size"),
    ("raw-dw-bwd-weight-grad-shape", lambda: ops.depthwise_backward_weight(
        GY[:, :3], X, [6, 1, 3, 3], [1, 1], [1, 1, 1, 1], [1, 1]), RT, "grad_out"),
    ("raw-dw-bwd-weight-dtype", lambda: ops.depthwise_backward_weight(
        GY.double(), X, [6, 1, 3, 3], [1, 1], [1, 1, 1, 1], [1, 1]), RT, "grad_out"),
    ("raw-dw-bwd-weight-meta", lambda: ops.depthwise_backward_weight(
        GY, X.to("meta"), [6, 1, 3, 3], [1, 1], [1, 1, 1, 1], [1, 1]), RT, "x"),
    ("raw-pw-bwd-input-channels", lambda: ops.pointwise_backward_input(
        torch.randn(2, 5, 4, 4), PW), RT, "grad_out"),
    ("raw-pw-bwd-input-rank", lambda: ops.pointwise_backward_input(
        torch.randn(2, 4, 4), PW), RT, "grad_out"),
    ("raw-pw-bwd-weight-spatial", lambda: ops.pointwise_backward_weight(
        torch.randn(2, 4, 4, 4), torch.randn(2, 6, 4, 5)), RT, "grad_out"),
    ("raw-pw-bwd-weight-dtype", lambda: ops.pointwise_backward_weight(
        torch.randn(2, 4, 4, 4), torch.randn(2, 6, 4, 4, dtype=torch.float64)), RT, "grad_out"),
]


def names_argument(message, name):
    """`name` occurs in the message as a name of its own (not inside e.g. dw_weight)."""
    return re.search(rf"(?<![\w]){re.escape(name)}(?!\w)", message) is not None


@pytest.mark.parametrize("fn, exc, name", [pytest.param(f, e, n, id=i) for i, f, e, n in CASES])
def test_bad_input(fn, exc, name):
    with pytest.raises(Exception) as info:
        fn()
    assert type(info.value) is exc, f"{type(info.value).__name__}: {info.value}"
    assert names_argument(str(info.value), name), str(info.value)


def test_case_ids_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


def test_meta_weight_never_gives_a_meta_result():
    # ATen's F.conv2d quietly accepts a meta weight with a cpu input; dsconv refuses.
    with pytest.raises(RuntimeError, match="meta"):
        dse.depthwise(X, W.to("meta"))


def test_all_meta_is_shape_inference():
    # All tensors on meta is a legitimate call: the fake kernel gives shape and format.
    y = dse.separable(X.to("meta").contiguous(memory_format=torch.channels_last), W.to("meta"),
                      PW.to("meta"), padding=1)
    assert y.is_meta and y.shape == (2, 4, 7, 9)
    assert y.is_contiguous(memory_format=torch.channels_last)
