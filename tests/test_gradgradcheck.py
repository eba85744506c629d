"""Double backward: the autograd formulas of the four backward ops (torch.autograd.gradcheck
of each, float64) and torch.autograd.gradgradcheck of every op through each activation,
plus a gradient penalty compared with the same computation through F.conv2d. Without
those formulas PyTorch only warns and drops the terms through the backward ops."""
import warnings

import pytest
import torch
import torch.nn.functional as F

import dsconv_ext as dse
from _ref import ACTIVATIONS, KINKS, OPS
from test_gradcheck import params as gradcheck_params
from test_gradcheck import smooth_inputs

ops = torch.ops.dsconv
f64 = torch.float64


def randn(seed, *shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=f64)


# ---- the backward ops themselves: gradcheck is a direct check of their formulas ----

# (x shape, weight shape, stride, padding [t, b, l, r], dilation)
DW_GEOMETRIES = {
    "plain": ((1, 3, 5, 5), (3, 1, 3, 3), [1, 1], [1, 1, 1, 1], [1, 1]),
    "s2-asym-dil-m2": ((2, 2, 7, 6), (4, 1, 3, 2), [2, 1], [0, 1, 2, 0], [1, 2]),
    "s2x2-m2": ((1, 2, 6, 7), (4, 1, 2, 3), [2, 2], [1, 0, 0, 1], [2, 1]),
}


@pytest.mark.parametrize("geometry", DW_GEOMETRIES)
def test_depthwise_backward_ops(geometry):
    x_shape, w_shape, stride, padding, dilation = DW_GEOMETRIES[geometry]
    x, w = randn(1, *x_shape), randn(2, *w_shape)
    geo = (stride, padding, dilation)
    g = randn(3, *ops.depthwise(x, w, None, *geo, None).shape)
    g, x, w = (t.requires_grad_() for t in (g, x, w))
    assert torch.autograd.gradcheck(
        lambda g, w: ops.depthwise_backward_input(g, w, list(x_shape), *geo), (g, w))
    assert torch.autograd.gradcheck(
        lambda g, x: ops.depthwise_backward_weight(g, x, list(w_shape), *geo), (g, x))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_pointwise_backward_ops(layout):
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = randn(1, 2, 4, 3, 2).contiguous(memory_format=fmt).requires_grad_()
    w = randn(2, 3, 4, 1, 1).requires_grad_()
    g = randn(3, 2, 3, 3, 2).contiguous(memory_format=fmt).requires_grad_()
    assert torch.autograd.gradcheck(ops.pointwise_backward_input, (g, w))
    assert torch.autograd.gradcheck(ops.pointwise_backward_weight, (g, x))


def _backward_op_cases():
    geo = ([2, 1], [0, 1, 2, 0], [1, 2])
    x, w = randn(1, 2, 2, 7, 6), randn(2, 4, 1, 3, 2)
    g = randn(3, *ops.depthwise(x, w, None, *geo, None).shape)
    xp, wp, gp = randn(4, 2, 4, 3, 2), randn(5, 3, 4, 1, 1), randn(6, 2, 3, 3, 2)
    return {
        "depthwise_backward_input":
            (lambda a, b: ops.depthwise_backward_input(a, b, list(x.shape), *geo), g, w),
        "depthwise_backward_weight":
            (lambda a, b: ops.depthwise_backward_weight(a, b, list(w.shape), *geo), g, x),
        "pointwise_backward_input": (ops.pointwise_backward_input, gp, wp),
        "pointwise_backward_weight": (ops.pointwise_backward_weight, gp, xp),
    }


@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("name", list(_backward_op_cases()))
def test_backward_op_one_input_requires_grad(name, which):
    # Each setup saves only what the requested gradient needs; the gradient of the one
    # input that requires grad equals the one computed with both requiring grad.
    fn, a, b = _backward_op_cases()[name]
    out_grad = randn(7, *fn(a, b).shape)
    both = [a.clone().requires_grad_(), b.clone().requires_grad_()]
    expected = torch.autograd.grad(fn(*both), both, out_grad)[which]
    one = [a.clone().requires_grad_(which == 0), b.clone().requires_grad_(which == 1)]
    (got,) = torch.autograd.grad(fn(*one), one[which], out_grad)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


# ---- gradgradcheck of the public ops (second derivatives through the activations) ----

def run_gradgradcheck(op, case):
    tensors, kwargs = smooth_inputs(op, case)
    leaves = [t.detach().requires_grad_() for t in tensors if t is not None]
    slots = [i for i, t in enumerate(tensors) if t is not None]

    def fn(*diff):
        args = list(tensors)
        for i, t in zip(slots, diff):
            args[i] = t
        return OPS[op](*args, **kwargs)

    # fast_mode: one random projection of each Jacobian (catches any missing or wrong term
    # with probability 1) instead of every entry, which takes ~4x longer.
    assert torch.autograd.gradgradcheck(fn, tuple(leaves), fast_mode=True)


def params(op):
    return gradcheck_params(op, always_bias=True)


@pytest.mark.parametrize("case", params("depthwise"))
def test_depthwise(case):
    run_gradgradcheck("depthwise", case)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_depthwise_asymmetric_padding_stride2(activation):
    # Explicit [top, bottom, left, right] padding with stride 2, dilation and multiplier 2
    # (the public API pads asymmetrically only for 'same', which needs stride 1). Full
    # (not fast-mode) gradgradcheck: every entry of the second-order Jacobians.
    geo = ([2, 1], [0, 1, 2, 0], [1, 2])
    for seed in range(100):
        x = randn(3 * seed, 1, 2, 6, 5)
        w, b = randn(3 * seed + 1, 4, 1, 3, 2) * 2, randn(3 * seed + 2, 4) * 2
        pre = ops.depthwise(x, w, b, *geo, None)
        if all((pre - k).abs().min() >= 1e-3 for k in KINKS[activation]):
            break
    else:
        raise AssertionError("no kink-free inputs in 100 seeds")
    assert torch.autograd.gradgradcheck(
        lambda x, w, b: ops.depthwise(x, w, b, *geo, activation),
        tuple(t.requires_grad_() for t in (x, w, b)))


@pytest.mark.parametrize("case", params("pointwise"))
def test_pointwise(case):
    run_gradgradcheck("pointwise", case)


@pytest.mark.parametrize("case", params("separable"))
def test_separable(case):
    run_gradgradcheck("separable", case)


# ---- a gradient penalty, against ATen ----

@pytest.mark.parametrize("op", ["depthwise", "pointwise", "separable"])
def test_gradient_penalty_matches_aten(op):
    x = randn(1, 1, 3, 5, 5)
    if op == "depthwise":
        ws = [randn(2, 3, 1, 3, 3)]
        ours = lambda x, w: dse.depthwise(x, w, padding=1)  # noqa: E731
        ref = lambda x, w: F.conv2d(x, w, padding=1, groups=3)  # noqa: E731
    elif op == "pointwise":
        ws = [randn(2, 4, 3, 1, 1)]
        ours, ref = dse.pointwise, F.conv2d
    else:
        ws = [randn(2, 6, 1, 3, 3), randn(3, 4, 6, 1, 1)]
        ours = lambda x, w: dse.separable(x, w[0], w[1], stride=2, padding=1)  # noqa: E731
        ref = lambda x, w: F.conv2d(F.conv2d(x, w[0], stride=2, padding=1, groups=3), w[1])  # noqa: E731

    def run(conv):
        xs = x.clone().requires_grad_()
        wl = [w.clone().requires_grad_() for w in ws]
        (gx,) = torch.autograd.grad(conv(xs, wl if op == "separable" else wl[0]).square().sum(),
                                    xs, create_graph=True)
        gx.sum().backward()
        return [xs.grad] + [w.grad for w in wl]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "autograd kernel was not registered" fallback
        got = run(ours)
    expected = run(ref)
    for g, e in zip(got, expected):
        assert g is not None and g.abs().max() > 0
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


# ---- first-order gradient for a subset of inputs, then a second backward to the rest ----
# (regression: the recomputed pre-activation inside backward once saved only what that
# first pass needed, so the second pass found its inputs missing)

@pytest.mark.parametrize("activation", ["hardswish", "relu6", None])
@pytest.mark.parametrize("op", ["pointwise", "separable"])
def test_second_backward_reaches_inputs_the_first_skipped(op, activation):
    x = randn(3, 1, 6, 5, 5)
    ws = [randn(4, 6, 1, 1, 1), randn(5, 4, 6, 1, 1)]
    act = F.hardswish if activation == "hardswish" else F.relu6 if activation == "relu6" else (lambda t: t)
    if op == "pointwise":
        ours = lambda x, w: dse.pointwise(x, w[1], activation=activation)  # noqa: E731
        ref = lambda x, w: act(F.conv2d(x, w[1]))  # noqa: E731
    else:
        ours = lambda x, w: dse.separable(x, w[0], w[1], padding=1, dw_activation="relu",  # noqa: E731
                                          pw_activation=activation)
        ref = lambda x, w: act(F.conv2d(F.relu(F.conv2d(x, w[0], padding=1, groups=6)), w[1]))  # noqa: E731

    def run(conv):
        xs = x.clone().requires_grad_()
        wl = [w.clone().requires_grad_() for w in ws]
        (gx,) = torch.autograd.grad(conv(xs, wl).square().sum(), xs, create_graph=True)
        gx.square().sum().backward()
        return [w.grad if w.grad is not None else torch.zeros_like(w) for w in wl]

    for got, expected in zip(run(ours), run(ref)):
        torch.testing.assert_close(got, expected)
