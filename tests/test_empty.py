"""Empty inputs. Batch 0 matches ATen (values and gradients). Where ATen raises or returns
a wrongly shaped result, dsconv returns what the formula gives, and the tests say so:

| case                                   | ATen 2.13 F.conv2d                    | dsconv                          |
|----------------------------------------|---------------------------------------|---------------------------------|
| zero channels, dw weight [0, 1, k, k]  | RuntimeError (groups=0)               | [N, 0, OH, OW]                  |
| pointwise C_in = 0, C_out > 0          | [N, 0, H, W] (drops C_out)            | act(bias) as [N, C_out, H, W]   |
| pointwise C_out = 0                    | RuntimeError                          | [N, 0, H, W]                    |
| separable with C = 0, C_out > 0        | (the two ATen errors above)           | pw_act(pw_bias) [N, C_out, ...] |
| H = 0 with padding (depthwise)         | RuntimeError (only zero batch/chan.)  | act(bias) over the padded output|
| H = 0, pointwise                       | RuntimeError                          | [N, C_out, 0, W]                |
| H = 0, no padding (depthwise)          | RuntimeError                          | RuntimeError naming weight      |
"""
import pytest
import torch

import dsconv_ext as dse
from _ref import ACTIVATIONS, activate, assert_format, ref_depthwise, ref_pointwise, ref_separable

FORMATS = [torch.contiguous_format, torch.channels_last]


def leaf(*shape, fmt=torch.contiguous_format):
    g = torch.Generator().manual_seed(sum(shape))
    return torch.randn(*shape, generator=g).contiguous(memory_format=fmt).requires_grad_()


def forward_and_grads(fn, args):
    y = fn(*args)
    diff = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    grads = torch.autograd.grad(y, diff, torch.ones_like(y), allow_unused=False)
    return y, grads


def batch0_cases(fmt):
    x = leaf(0, 3, 7, 9, fmt=fmt)
    w, b = leaf(6, 1, 3, 3), leaf(6)
    p, pb = leaf(4, 6, 1, 1), leaf(4)
    xp = leaf(0, 6, 5, 4, fmt=fmt)
    return [
        ("depthwise", lambda *a: dse.depthwise(*a, stride=2, padding=1, activation="relu"),
         lambda *a: ref_depthwise(*a, stride=2, padding=1, activation="relu"), (x, w, b)),
        ("pointwise", lambda *a: dse.pointwise(*a, activation="hardswish"),
         lambda *a: ref_pointwise(*a, activation="hardswish"), (xp, p, pb)),
        ("separable", lambda *a: dse.separable(*a, padding="same", pw_activation="relu6"),
         lambda *a: ref_separable(*a, padding="same", pw_activation="relu6"), (x, w, p, b, pb)),
    ]


@pytest.mark.parametrize("fmt", FORMATS, ids=["nchw", "channels_last"])
@pytest.mark.parametrize("which", [0, 1, 2], ids=["depthwise", "pointwise", "separable"])
def test_batch_zero_matches_aten(isa, fmt, which):
    _, ours, aten, args = batch0_cases(fmt)[which]
    y, grads = forward_and_grads(ours, args)
    y_ref, grads_ref = forward_and_grads(aten, args)
    assert y.shape == y_ref.shape and y.numel() == 0
    assert_format(y, args[0])  # an empty tensor is NCHW-contiguous too: NCHW out
    for got, ref in zip(grads, grads_ref):
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref)  # zeros (weights, biases) and empty (x)


def test_zero_channels_depthwise():
    x, w, b = leaf(2, 0, 7, 9), leaf(0, 1, 3, 3), leaf(0)
    with pytest.raises(RuntimeError):
        ref_depthwise(x, w, b, padding=1)  # ATen: groups=0 is refused
    y, (gx, gw, gb) = forward_and_grads(lambda *a: dse.depthwise(*a, padding=1), (x, w, b))
    assert y.shape == (2, 0, 7, 9)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == b.shape


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_pointwise_without_input_channels_is_the_bias(activation):
    x, w, b = leaf(2, 0, 3, 4), leaf(5, 0, 1, 1), leaf(5)
    assert ref_pointwise(x, w, b).shape == (2, 0, 3, 4)  # ATen drops C_out
    y, (gx, gw, gb) = forward_and_grads(lambda *a: dse.pointwise(*a, activation=activation), (x, w, b))
    expected = activate(b.detach(), activation)[None, :, None, None].expand(2, 5, 3, 4)
    torch.testing.assert_close(y, expected)
    b_ref = b.detach().requires_grad_()
    (gb_ref,) = torch.autograd.grad(activate(b_ref, activation).sum() * 24, b_ref)  # 2*3*4 ones
    torch.testing.assert_close(gb, gb_ref)
    assert gx.shape == x.shape and gw.shape == w.shape


def test_pointwise_without_output_channels():
    x, w = leaf(2, 3, 4, 4), leaf(0, 3, 1, 1)
    with pytest.raises(RuntimeError):
        ref_pointwise(x, w)
    y, (gx, gw) = forward_and_grads(dse.pointwise, (x, w))
    assert y.shape == (2, 0, 4, 4)
    torch.testing.assert_close(gx, torch.zeros_like(x))
    assert gw.shape == w.shape


@pytest.mark.parametrize("pw_activation", ACTIVATIONS)
def test_separable_without_input_channels_is_the_bias(pw_activation):
    x, w_dw, w_pw, b_pw = leaf(1, 0, 5, 5), leaf(0, 1, 3, 3), leaf(3, 0, 1, 1), leaf(3)
    y = dse.separable(x, w_dw, w_pw, None, b_pw, stride=2, padding=1, pw_activation=pw_activation)
    expected = activate(b_pw.detach(), pw_activation)[None, :, None, None].expand(1, 3, 3, 3)
    torch.testing.assert_close(y, expected)
    (gb,) = torch.autograd.grad(y.sum(), b_pw)
    b_ref = b_pw.detach().requires_grad_()
    (gb_ref,) = torch.autograd.grad(activate(b_ref, pw_activation).sum() * 9, b_ref)
    torch.testing.assert_close(gb, gb_ref)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_zero_height_with_padding_is_the_bias(activation):
    x, w, b = leaf(2, 3, 0, 4), leaf(3, 1, 1, 1), leaf(3)
    with pytest.raises(RuntimeError):
        ref_depthwise(x, w, b, padding=1)
    y = dse.depthwise(x, w, b, padding=1, activation=activation)
    expected = activate(b.detach(), activation)[None, :, None, None].expand(2, 3, 2, 6)
    torch.testing.assert_close(y, expected)


def test_zero_height_pointwise():
    x, w = leaf(2, 3, 0, 4), leaf(5, 3, 1, 1)
    with pytest.raises(RuntimeError):
        ref_pointwise(x, w)
    y, (gx, gw) = forward_and_grads(dse.pointwise, (x, w))
    assert y.shape == (2, 5, 0, 4)
    assert gx.shape == x.shape
    torch.testing.assert_close(gw, torch.zeros_like(w))


def test_zero_height_without_padding_is_an_error():
    with pytest.raises(RuntimeError, match="weight"):
        dse.depthwise(torch.randn(2, 3, 0, 4), torch.randn(3, 1, 1, 1))


@pytest.mark.parametrize("name, args", [
    ("depthwise", (leaf(0, 3, 5, 5), leaf(3, 1, 3, 3), leaf(3), [1, 1], [1, 1, 1, 1], [1, 1], "relu")),
    ("depthwise", (leaf(2, 0, 5, 5), leaf(0, 1, 3, 3), None, [1, 1], [0, 0, 0, 0], [1, 1], None)),
    ("pointwise", (leaf(0, 3, 5, 5, fmt=torch.channels_last), leaf(4, 3, 1, 1), leaf(4), "relu6")),
    ("separable", (leaf(0, 3, 5, 5), leaf(3, 1, 3, 3), leaf(4, 3, 1, 1), leaf(3), leaf(4), [1, 1],
                   [1, 1, 1, 1], [1, 1], "relu", "hardswish")),
], ids=["dw-batch0", "dw-channels0", "pw-batch0-cl", "sep-batch0"])
def test_opcheck_empty(name, args):
    torch.library.opcheck(getattr(torch.ops.dsconv, name), args)
