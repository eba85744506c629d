"""dsconv_ext.nn modules and fold_bn: same outputs as the nn.Conv2d / BatchNorm / activation
modules they stand for, nn.Conv2d's parameter names and initialization, from_modules, errors."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dsconv_ext as dse
from dsconv_ext.nn import DepthwiseConv2d, PointwiseConv2d, SeparableConv2d

pytestmark = pytest.mark.usefixtures("one_thread")

ACT_MODULES = {None: nn.Identity, "relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish}


def random_bn(channels, seed=0):
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels, eps=1e-3)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(channels, generator=g))
        bn.running_var.copy_(torch.rand(channels, generator=g) + 0.5)
        bn.weight.copy_(torch.rand(channels, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(channels, generator=g))
    return bn.eval()


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def x_of(c, h=9, w=11, seed=1):
    return torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(seed))


DEPTHWISE_CASES = [  # (in, out, kernel, stride, padding, dilation)
    (4, 4, 3, 1, 1, 1), (4, 8, 3, 2, 1, 1), (3, 3, 5, 1, "same", 1), (4, 4, (3, 1), 1, (1, 0), 1),
    (5, 5, 3, 1, "valid", 2), (4, 12, (1, 3), (2, 1), (0, 1), 1)]


@pytest.mark.parametrize("case", DEPTHWISE_CASES, ids=str)
@pytest.mark.parametrize("activation", dse.ACTIVATIONS)
def test_depthwise_matches_conv2d(case, activation):
    c_in, c_out, k, s, p, d = case
    torch.manual_seed(0)
    conv = nn.Conv2d(c_in, c_out, k, s, p, d, groups=c_in)
    torch.manual_seed(0)
    ours = DepthwiseConv2d(c_in, c_out, k, s, p, d, activation=activation)
    # Same initialization as nn.Conv2d (same random draws), same parameter names and shapes.
    assert list(ours.state_dict()) == ["weight", "bias"]
    close(ours.weight, conv.weight)
    close(ours.bias, conv.bias)
    assert (ours.groups, ours.in_channels, ours.out_channels) == (c_in, c_in, c_out)
    x = x_of(c_in)
    close(ours(x), ACT_MODULES[activation]()(conv(x)))


@pytest.mark.parametrize("activation", dse.ACTIVATIONS)
def test_pointwise_matches_conv2d(activation):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 1, bias=False)
    torch.manual_seed(0)
    ours = PointwiseConv2d(6, 5, bias=False, activation=activation)
    assert list(ours.state_dict()) == ["weight"]
    close(ours.weight, conv.weight)
    x = x_of(6)
    close(ours(x), ACT_MODULES[activation]()(conv(x)))
    assert (ours.kernel_size, ours.stride, ours.groups) == ((1, 1), (1, 1), 1)


def test_conv2d_state_dict_loads():
    conv = nn.Conv2d(4, 8, 3, padding=1, groups=4)
    dw = DepthwiseConv2d(4, 8, 3, padding=1)
    dw.load_state_dict(conv.state_dict())
    x = x_of(4)
    close(dw(x), conv(x))
    conv1 = nn.Conv2d(8, 3, 1)
    pw = PointwiseConv2d(8, 3)
    pw.load_state_dict(conv1.state_dict())
    close(pw(conv(x)), conv1(conv(x)))


def test_separable_matches_two_convs():
    sep = SeparableConv2d(4, 6, 3, stride=2, padding=1, depth_multiplier=2, dw_bias=True,
                          dw_activation="relu6", pw_activation="hardswish")
    assert list(sep.state_dict()) == ["depthwise.weight", "depthwise.bias", "pointwise.weight",
                                      "pointwise.bias"]
    assert sep.depthwise.weight.shape == (8, 1, 3, 3) and sep.pointwise.weight.shape == (6, 8, 1, 1)
    assert (sep.in_channels, sep.out_channels, sep.kernel_size, sep.stride, sep.padding) == \
        (4, 6, (3, 3), (2, 2), (1, 1))
    x = x_of(4)
    d, p = sep.depthwise, sep.pointwise
    expected = F.hardswish(F.conv2d(F.relu6(F.conv2d(x, d.weight, d.bias, 2, 1, groups=4)),
                                    p.weight, p.bias))
    close(sep(x), expected)
    # The stages are usable on their own.
    close(p(d(x)), expected)
    assert sep.depthwise.bias is not None and SeparableConv2d(4, 6, 3).depthwise.bias is None


def test_reset_parameters_and_dtype():
    m = DepthwiseConv2d(3, 6, 5, dtype=torch.float64)
    assert m.weight.dtype == torch.float64
    bound = 1 / 5  # 1/sqrt(fan_in), fan_in = 1*5*5
    with torch.no_grad():
        m.weight.fill_(10)
    m.reset_parameters()
    assert m.weight.abs().max() <= bound and m.bias.abs().max() <= bound
    assert m(x_of(3).double()).dtype == torch.float64


def test_channels_last_in_channels_last_out():
    sep = SeparableConv2d(4, 6, 3, padding=1, pw_activation="relu")
    x = x_of(4).contiguous(memory_format=torch.channels_last)
    y = sep(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    close(y, sep(x.contiguous()))


def test_extra_repr():
    assert repr(DepthwiseConv2d(8, 16, 3, 2, 1, bias=False, activation="relu6")) == (
        "DepthwiseConv2d(8, 16, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), bias=False, "
        "activation='relu6')")
    assert repr(DepthwiseConv2d(8, 8, (3, 1), padding="same", dilation=2)) == (
        "DepthwiseConv2d(8, 8, kernel_size=(3, 1), stride=(1, 1), padding='same', "
        "dilation=(2, 2))")
    assert repr(PointwiseConv2d(8, 4, activation="hardswish")) == \
        "PointwiseConv2d(8, 4, activation='hardswish')"
    r = repr(SeparableConv2d(8, 4, 3, padding=1))
    assert r.startswith("SeparableConv2d(\n  8, 4, kernel_size=(3, 3), stride=(1, 1)\n")
    assert "(depthwise): DepthwiseConv2d(8, 8," in r and "(pointwise): PointwiseConv2d(8, 4)" in r


def test_gradients_reach_parameters():
    sep = SeparableConv2d(3, 4, 3, padding=1, dw_bias=True, dw_activation="hardswish").double()
    ref = [p.detach().clone().requires_grad_() for p in sep.parameters()]
    x = x_of(3).double()
    sep(x).square().sum().backward()
    w_dw, b_dw, w_pw, b_pw = ref
    y = F.conv2d(F.hardswish(F.conv2d(x, w_dw, b_dw, padding=1, groups=3)), w_pw, b_pw)
    y.square().sum().backward()
    for p, r in zip(sep.parameters(), ref):
        torch.testing.assert_close(p.grad, r.grad)


def test_compile_fullgraph():
    torch._dynamo.reset()
    model = nn.Sequential(DepthwiseConv2d(3, 6, 3, padding=1, activation="relu"),
                          PointwiseConv2d(6, 4, activation="relu6"),
                          SeparableConv2d(4, 5, 3, stride=2, padding=1, pw_activation="hardswish"))
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    x = x_of(3).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = compiled(x)
    close(y, model(x))
    assert y.is_contiguous(memory_format=torch.channels_last)
    y.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in model.parameters())
    torch._dynamo.reset()


# ---------------------------------------------------------------- from_modules and fold_bn

@pytest.mark.parametrize("activation", ["relu6", nn.Hardswish(), nn.ReLU(inplace=True),
                                        nn.Hardtanh(0.0, 6.0), None, nn.Identity()], ids=str)
def test_depthwise_from_modules(activation):
    conv = nn.Conv2d(4, 8, 3, 2, 1, groups=4, bias=False)
    bn = random_bn(8)
    before = conv.weight.detach().clone()
    m = DepthwiseConv2d.from_modules(conv, bn, activation)
    act = ACT_MODULES[activation] if isinstance(activation, (str, type(None))) else lambda: activation
    x = x_of(4)
    close(m(x), act()(bn(conv(x))))
    assert torch.equal(conv.weight, before)  # the given modules are unchanged
    assert m.weight.data_ptr() != conv.weight.data_ptr()


def test_pointwise_and_separable_from_modules():
    dw, dw_bn = nn.Conv2d(6, 6, 5, padding=2, groups=6), random_bn(6, seed=1)
    pw, pw_bn = nn.Conv2d(6, 3, 1, bias=False), random_bn(3, seed=2)
    x = x_of(6)
    m = PointwiseConv2d.from_modules(pw, pw_bn, nn.ReLU6())
    close(m(x), F.relu6(pw_bn(pw(x))))
    sep = SeparableConv2d.from_modules(dw, pw, dw_bn=dw_bn, dw_activation=nn.ReLU(),
                                       pw_bn=pw_bn, pw_activation="hardswish")
    close(sep(x), F.hardswish(pw_bn(pw(F.relu(dw_bn(dw(x)))))))
    # Without BatchNorm and bias, no bias appears.
    assert PointwiseConv2d.from_modules(pw).bias is None


def test_fold_bn_conv2d():
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=False)  # any nn.Conv2d, here a standard one
    bn = random_bn(5)
    folded = dse.fold_bn(conv, bn)
    assert type(folded) is nn.Conv2d and folded.bias is not None and conv.bias is None
    x = x_of(3)
    close(folded(x), bn(conv(x)))
    dw = DepthwiseConv2d(5, 5, 3, padding=1)
    close(dse.fold_bn(dw, bn)(x_of(5)), bn(dw(x_of(5))))
    sep = SeparableConv2d(3, 5, 3, padding=1, dw_activation="relu")
    close(dse.fold_bn(sep, bn)(x), bn(sep(x)))


class BatchNormRelu(nn.BatchNorm2d):
    def forward(self, x):
        return F.relu(super().forward(x))


def test_fold_bn_errors():
    conv = nn.Conv2d(4, 4, 3, groups=4)
    with pytest.raises(RuntimeError, match="training mode.*eval"):
        dse.fold_bn(conv, nn.BatchNorm2d(4))  # a new BatchNorm is in training mode
    with pytest.raises(ValueError, match="running statistics"):
        dse.fold_bn(conv, nn.BatchNorm2d(4, track_running_stats=False).eval())
    with pytest.raises(ValueError, match="BatchNorm has 5 channels"):
        dse.fold_bn(conv, random_bn(5))
    with pytest.raises(TypeError, match="overrides BatchNorm's forward"):
        dse.fold_bn(conv, BatchNormRelu(4).eval())
    with pytest.raises(TypeError, match="expected a BatchNorm"):
        dse.fold_bn(conv, nn.ReLU())
    with pytest.raises(ValueError, match="before the BatchNorm"):
        dse.fold_bn(DepthwiseConv2d(4, 4, 3, activation="relu"), random_bn(4))
    with pytest.raises(TypeError, match="fold_bn folds into"):
        dse.fold_bn(nn.Linear(4, 4), random_bn(4))


@pytest.mark.parametrize("make, error, message", [
    (lambda: DepthwiseConv2d(4, 6, 3), ValueError, "multiple of in_channels"),
    (lambda: DepthwiseConv2d(4, 4, 3, 2, "same"), ValueError, "padding='same' needs stride 1"),
    (lambda: DepthwiseConv2d(4, 4, 3, padding="full"), ValueError, "padding must be"),
    (lambda: DepthwiseConv2d(0, 4, 3), ValueError, "in_channels must be a positive int"),
    (lambda: PointwiseConv2d(4, 4, activation="gelu"), ValueError, "activation must be one of"),
    (lambda: SeparableConv2d(4, 4, 3, depth_multiplier=0), ValueError, "depth_multiplier"),
    (lambda: SeparableConv2d.from_parts(DepthwiseConv2d(4, 8, 3), PointwiseConv2d(4, 2)),
     ValueError, "takes 4 channels but the depthwise stage gives 8"),
    (lambda: DepthwiseConv2d.from_modules(nn.Conv2d(4, 4, 3)), ValueError, "it is dense"),
    (lambda: DepthwiseConv2d.from_modules(nn.Conv2d(16, 4, 3)), ValueError, "standard 3x3"),
    (lambda: DepthwiseConv2d.from_modules(nn.Conv2d(4, 4, 3, groups=4, padding_mode="circular")),
     ValueError, "padding_mode='circular'"),
    (lambda: PointwiseConv2d.from_modules(nn.Conv2d(4, 4, 1, stride=2)), ValueError, "stride"),
    (lambda: PointwiseConv2d.from_modules(nn.Conv2d(4, 4, 1, groups=2)), ValueError, "grouped"),
    (lambda: PointwiseConv2d.from_modules(nn.Linear(4, 4)), TypeError, "expects an nn.Conv2d"),
    (lambda: PointwiseConv2d.from_modules(nn.Conv2d(4, 4, 1), activation=nn.SiLU()), ValueError,
     "SiLU is not an activation the ops apply"),
])
def test_errors(make, error, message):
    with pytest.raises(error, match=message):
        make()
