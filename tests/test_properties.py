"""Property-based (hypothesis, derandomized) comparisons with ATen: the public ops over
drawn shapes and arguments, and the raw ops with explicit, possibly asymmetric padding,
backward ops included."""
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st

from _cases import DTYPES, build, check_forward
from _ref import (ACTIVATIONS, LAYOUTS, assert_format, assert_kernels, assert_within_bound,
                  randn, ref_depthwise, ref_separable, with_layout)
from _strategies import cases, seeds

ops = torch.ops.dsconv
small = st.integers(1, 3)


@given(case=cases("depthwise"), seed=seeds)
def test_depthwise(isa, case, seed):
    check_forward("depthwise", *build("depthwise", case, torch.Generator().manual_seed(seed)), isa)


@given(case=cases("pointwise"), seed=seeds)
def test_pointwise(isa, case, seed):
    check_forward("pointwise", *build("pointwise", case, torch.Generator().manual_seed(seed)), isa)


@given(case=cases("separable"), seed=seeds)
def test_separable(isa, case, seed):
    check_forward("separable", *build("separable", case, torch.Generator().manual_seed(seed)), isa)


# ---- raw ops: explicit [top, bottom, left, right] padding ----

@st.composite
def raw_geometry(draw):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride, dilation = (draw(small), draw(small)), (draw(small), draw(small))
    pad = [draw(st.integers(0, 3)) for _ in range(4)]
    least = [max(1, d * (k - 1) + 1 - a - b)
             for k, d, a, b in zip(kernel, dilation, pad[0::2], pad[1::2])]
    hw = tuple(draw(st.integers(lo, lo + 7)) for lo in least)
    return dict(kernel=kernel, stride=stride, pad=pad, dilation=dilation, hw=hw,
                batch=draw(small), channels=draw(st.integers(1, 9)), multiplier=draw(small),
                layout=draw(st.sampled_from(LAYOUTS)), dtype=draw(st.sampled_from(DTYPES)))


def raw_inputs(g, gen):
    n, c, m = g["batch"], g["channels"], g["multiplier"]
    x = with_layout(randn(gen, n, c, *g["hw"], dtype=g["dtype"]), g["layout"])
    w = randn(gen, c * m, 1, *g["kernel"], dtype=g["dtype"])
    return x, w


def padded(t, pad):
    top, bottom, left, right = pad
    return F.pad(t, (left, right, top, bottom))


@given(g=raw_geometry(), activation=st.sampled_from(ACTIVATIONS), bias=st.booleans(), seed=seeds)
def test_raw_depthwise_asymmetric_padding(isa, g, activation, bias, seed):
    gen = torch.Generator().manual_seed(seed)
    x, w = raw_inputs(g, gen)
    b = randn(gen, w.shape[0], dtype=x.dtype) if bias else None
    y = ops.depthwise(x, w, b, g["stride"], g["pad"], g["dilation"], activation)
    assert_format(y, x)
    assert_kernels(isa, x.dtype, 1)
    xd, wd, bd = x.double(), w.double(), None if b is None else b.double()
    geo = dict(stride=g["stride"], dilation=g["dilation"])
    expected = ref_depthwise(padded(xd, g["pad"]), wd, bd, activation=activation, **geo)
    mag = ref_depthwise(padded(xd.abs(), g["pad"]), wd.abs(), None if b is None else bd.abs(), **geo)
    assert_within_bound(y, expected, mag, w.shape[2] * w.shape[3])


@given(g=raw_geometry(), out_channels=st.integers(1, 9), acts=st.tuples(
    st.sampled_from(ACTIVATIONS), st.sampled_from(ACTIVATIONS)), seed=seeds)
def test_raw_separable_asymmetric_padding(isa, g, out_channels, acts, seed):
    gen = torch.Generator().manual_seed(seed)
    x, w = raw_inputs(g, gen)
    w_pw = randn(gen, out_channels, w.shape[0], 1, 1, dtype=x.dtype)
    b_dw, b_pw = randn(gen, w.shape[0], dtype=x.dtype), randn(gen, out_channels, dtype=x.dtype)
    y = ops.separable(x, w, w_pw, b_dw, b_pw, g["stride"], g["pad"], g["dilation"], *acts)
    assert_format(y, x)
    assert_kernels(isa, x.dtype, 2)
    geo = dict(stride=g["stride"], dilation=g["dilation"])
    wide = [t.double() for t in (w, w_pw, b_dw, b_pw)]
    expected = ref_separable(padded(x.double(), g["pad"]), *wide, dw_activation=acts[0],
                             pw_activation=acts[1], **geo)
    mag = ref_separable(padded(x.double().abs(), g["pad"]), *[t.abs() for t in wide], **geo)
    assert_within_bound(y, expected, mag, w.shape[2] * w.shape[3] + w.shape[0])


@given(g=raw_geometry(), grad_layout=st.sampled_from(LAYOUTS), seed=seeds)
def test_raw_depthwise_backward(isa, g, grad_layout, seed):
    """The backward ops are the transposes of the forward op: compare with ATen's autograd
    of the (explicitly padded) convolution."""
    gen = torch.Generator().manual_seed(seed)
    x, w = raw_inputs(g, gen)
    stride, pad, dilation = g["stride"], g["pad"], g["dilation"]
    out = ops.depthwise(x, w, None, stride, pad, dilation, None)
    gy = with_layout(randn(gen, *out.shape, dtype=x.dtype), grad_layout)

    def aten_grads(xd, wd, gyd):
        xd, wd = xd.detach().requires_grad_(), wd.detach().requires_grad_()
        y = F.conv2d(padded(xd, pad), wd, None, stride, 0, dilation, groups=xd.shape[1])
        return torch.autograd.grad(y, (xd, wd), gyd)

    ref_gx, ref_gw = aten_grads(x.double(), w.double(), gy.double())
    mag_gx, mag_gw = aten_grads(x.double().abs(), w.double().abs(), gy.double().abs())

    gx = ops.depthwise_backward_input(gy, w, list(x.shape), stride, pad, dilation)
    assert_format(gx, gy)
    assert_kernels(isa, x.dtype, 1)
    assert_within_bound(gx, ref_gx, mag_gx, w.shape[2] * w.shape[3] * g["multiplier"], "grad x")

    gw = ops.depthwise_backward_weight(gy, x, list(w.shape), stride, pad, dilation)
    assert gw.is_contiguous()
    assert_kernels(isa, x.dtype, 1)
    assert_within_bound(gw, ref_gw, mag_gw, out.shape[0] * out.shape[2] * out.shape[3], "grad w")


@given(batch=small, hw=st.tuples(st.integers(1, 7), st.integers(1, 7)), cin=st.integers(1, 20),
       cout=st.integers(1, 20), layouts=st.tuples(st.sampled_from(LAYOUTS), st.sampled_from(LAYOUTS)),
       dtype=st.sampled_from(DTYPES), seed=seeds)
def test_raw_pointwise_backward(isa, batch, hw, cin, cout, layouts, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    x = with_layout(randn(gen, batch, cin, *hw, dtype=dtype), layouts[0])
    w = randn(gen, cout, cin, 1, 1, dtype=dtype)
    gy = with_layout(randn(gen, batch, cout, *hw, dtype=dtype), layouts[1])

    def aten_grads(xd, wd, gyd):
        xd, wd = xd.detach().requires_grad_(), wd.detach().requires_grad_()
        return torch.autograd.grad(F.conv2d(xd, wd), (xd, wd), gyd)

    ref_gx, ref_gw = aten_grads(x.double(), w.double(), gy.double())
    mag_gx, mag_gw = aten_grads(x.double().abs(), w.double().abs(), gy.double().abs())

    gx = ops.pointwise_backward_input(gy, w)
    assert_format(gx, gy)
    assert_kernels(isa, dtype, 1)
    assert_within_bound(gx, ref_gx, mag_gx, cout, "grad x")

    gw = ops.pointwise_backward_weight(gy, x)
    assert gw.is_contiguous()
    assert_kernels(isa, dtype, 1)
    assert_within_bound(gw, ref_gw, mag_gw, batch * hw[0] * hw[1], "grad w")
