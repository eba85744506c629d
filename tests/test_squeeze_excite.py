"""dsconv_ext.squeeze_excite (y = x * gate(fc2(act(fc1(mean_hw(x)))))) against ATen in
float64: channel counts off the vector widths, S=1, 1x1 and long images, batch > 1, every
layout, kernel set, dtype, activation and gate; NaN, empty inputs, threads, gradients,
opcheck, compile, errors; nn.SqueezeExcite and what convert makes of squeeze-excite modules."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

import dsconv_ext as dse
from dsconv_ext import complexity as cx
from dsconv_ext import models
from _ref import assert_format, assert_kernels, assert_within_bound, randn, with_layout

ops = torch.ops.dsconv
ACTS = [None, "relu", "relu6", "hardswish"]
GATES = ["hardsigmoid", "sigmoid"]


def ref_se(x, w1, b1, w2, b2, activation="relu", gate="hardsigmoid"):
    """The unfused computation in ATen."""
    h = F.conv2d(x.mean((2, 3), keepdim=True), w1, b1)
    h = {None: lambda t: t, "relu": F.relu, "relu6": F.relu6, "hardswish": F.hardswish}[activation](h)
    s = F.conv2d(h, w2, b2)
    return x * (F.hardsigmoid(s) if gate == "hardsigmoid" else torch.sigmoid(s))


def make(gen, n, c, s, h, w, layout="nchw", dtype=torch.float32, biases=True):
    x = with_layout(randn(gen, n, c, h, w, dtype=dtype), layout)
    # Scores of a few units, so both gates see their curved and (hardsigmoid) flat parts.
    w1 = randn(gen, s, c, 1, 1, dtype=dtype, scale=3 / math.sqrt(c))
    w2 = randn(gen, c, s, 1, 1, dtype=dtype, scale=3 / math.sqrt(s))
    b1 = randn(gen, s, dtype=dtype) if biases else None
    b2 = randn(gen, c, dtype=dtype, scale=2) if biases else None
    return [x, w1, b1, w2, b2]


def check(tensors, activation="relu", gate="hardsigmoid", isa=None):
    x = tensors[0]
    before = x.clone()
    y = dse.squeeze_excite(*tensors, activation, gate)
    assert torch.equal(x, before)  # x is never written
    assert y.dtype == x.dtype and y.shape == x.shape
    assert_format(y, x)
    if isa is not None and y.numel():
        assert_kernels(isa, x.dtype, 2)  # the two matrix-vector products
    wide = [t.detach().double() if t is not None else None for t in tensors]
    expected = ref_se(*wide, activation, gate)
    # Bound: the scores' error is at most u * (H*W + C + S) times their magnitude (each
    # activation and gate has slope <= 1), y = x * gate adds one rounding.
    mean_abs = wide[0].abs().mean((2, 3), keepdim=True)
    h_abs = F.conv2d(mean_abs, wide[1].abs(), wide[2].abs() if wide[2] is not None else None)
    s_abs = F.conv2d(h_abs, wide[3].abs(), wide[4].abs() if wide[4] is not None else None)
    terms = x.shape[2] * x.shape[3] + x.shape[1] + tensors[1].shape[0] + 8
    assert_within_bound(y, expected, wide[0].abs() * s_abs, terms)
    return y


# (N, C, S, H, W): MobileNetV3 / EfficientNet SE shapes (scaled) and odd ones.
SHAPES = [
    (1, 72, 24, 28, 28),
    (1, 120, 32, 14, 14),
    (1, 960, 240, 7, 7),
    (2, 13, 1, 5, 7),      # S = 1, C off every vector width
    (3, 17, 5, 1, 1),      # a 1x1 image
    (1, 3, 2, 33, 17),     # pixels not a multiple of the summing block
    (2, 520, 9, 3, 2),     # channels over the NHWC channel block
    (1, 1, 1, 4, 4),
]
LAYOUTS = ["nchw", "channels_last", "strided", "transposed", "cl_sliced"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_aten(isa, gen, shape, layout):
    check(make(gen, *shape, layout=layout), isa=isa)


@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_activations_and_gates(isa, gen, layout, activation, gate):
    check(make(gen, 2, 37, 9, 6, 5, layout=layout), activation, gate, isa=isa)


@pytest.mark.parametrize("biases", [True, False])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_float64_and_biases(isa, gen, layout, biases):
    check(make(gen, 2, 19, 4, 7, 3, layout=layout, dtype=torch.float64, biases=biases),
          "hardswish", "sigmoid", isa=isa)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_nan_propagates_as_in_aten(gen, layout):
    x, w1, b1, w2, b2 = make(gen, 2, 6, 3, 4, 4, layout=layout)
    b2[2] = float("nan")  # one channel's score: only that channel's gate
    x[1, 4, 0, 0] = float("nan")  # one image's mean: the whole image through relu and fc2
    for gate in GATES:
        y = dse.squeeze_excite(x, w1, b1, w2, b2, "relu", gate)
        torch.testing.assert_close(y, ref_se(x, w1, b1, w2, b2, "relu", gate), equal_nan=True)
    assert y[0].isnan().sum() == 16 and y[1].isnan().all()


def test_empty(gen):
    w1, w2 = torch.randn(2, 4, 1, 1), torch.randn(4, 2, 1, 1)
    for shape in [(0, 4, 5, 5), (2, 4, 0, 3), (1, 4, 3, 0)]:
        for layout in ["nchw", "channels_last"]:
            x = with_layout(torch.randn(shape), layout)
            y = dse.squeeze_excite(x, w1, None, w2, None)
            assert y.shape == shape
            assert_format(y, x)


@pytest.mark.parametrize("shape", [(3, 72, 24, 28, 28), (1, 200, 8, 40, 40)],
                         ids=["batch3", "batch1-split"])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_any_thread_count_gives_the_same_bits(gen, layout, shape):
    tensors = make(gen, *shape, layout=layout)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = dse.squeeze_excite(*tensors)
        for threads in (2, 3, 4):
            torch.set_num_threads(threads)
            assert torch.equal(one, dse.squeeze_excite(*tensors))
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_gradients_match_aten(gen, layout):
    tensors = make(gen, 2, 7, 3, 5, 4, layout=layout, dtype=torch.float64)
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    ref_leaves = [t.detach().clone().requires_grad_() for t in tensors]
    g = torch.randn(tensors[0].shape, dtype=torch.float64, generator=gen)
    y = dse.squeeze_excite(*leaves, "hardswish", "sigmoid")
    assert_format(y, tensors[0])
    y.backward(g)
    ref_se(*ref_leaves, "hardswish", "sigmoid").backward(g)
    for t, r in zip(leaves, ref_leaves):
        torch.testing.assert_close(t.grad, r.grad)


@pytest.mark.parametrize("gate", GATES)
def test_gradcheck(gen, gate):
    leaves = [t.requires_grad_() for t in make(gen, 2, 3, 2, 3, 2, dtype=torch.float64)]
    fn = lambda *t: dse.squeeze_excite(*t, "relu6", gate)  # noqa: E731
    assert torch.autograd.gradcheck(fn, tuple(leaves))
    assert torch.autograd.gradgradcheck(fn, tuple(leaves))


def test_compile(gen):
    tensors = make(gen, 2, 24, 6, 8, 8, layout="channels_last")
    torch._dynamo.reset()
    fn = torch.compile(lambda *t: dse.squeeze_excite(*t, "relu", "hardsigmoid"), fullgraph=True)
    torch.testing.assert_close(fn(*tensors), dse.squeeze_excite(*tensors))


def test_fused_pieces_are_the_pointwise_op(gen):
    """The two products run on the pointwise kernels: fc1 and fc2 of this op equal
    dse.pointwise on the means (same kernels, same sums), so a 1x1 input (mean = x) gives
    x * gate(pointwise(pointwise(x))) bitwise."""
    x, w1, b1, w2, b2 = make(gen, 4, 40, 10, 1, 1, layout="channels_last")
    s = dse.pointwise(dse.pointwise(x, w1, b1, "relu"), w2, b2)
    assert torch.equal(dse.squeeze_excite(x, w1, b1, w2, b2), x * F.hardsigmoid(s))


def _bad(**kw):
    a = dict(x=torch.randn(1, 4, 3, 3), w1=torch.randn(2, 4, 1, 1), b1=torch.randn(2),
             w2=torch.randn(4, 2, 1, 1), b2=torch.randn(4), activation="relu", gate="hardsigmoid")
    a.update(kw)
    return a


@pytest.mark.parametrize("args,error,match", [
    (_bad(x=torch.randn(4, 3, 3)), RuntimeError, "x must be a 4-D tensor"),
    (_bad(w1=torch.randn(2, 5, 1, 1)), RuntimeError, "reduce_weight.shape\\[1\\] must equal the 4"),
    (_bad(w1=torch.randn(2, 4, 3, 3)), RuntimeError, "reduce_weight must be a 1x1 weight"),
    (_bad(w1=torch.randn(2, 4)), RuntimeError, "reduce_weight must be a 4-D tensor"),
    (_bad(b1=torch.randn(3)), RuntimeError, "reduce_bias must be a 1-D tensor of 2"),
    (_bad(w2=torch.randn(4, 3, 1, 1)), RuntimeError, "expand_weight.shape\\[1\\] must equal the 2"),
    (_bad(w2=torch.randn(5, 2, 1, 1), b2=torch.randn(5)), RuntimeError,
     "expand_weight.shape\\[0\\] must equal x's 4 channels"),
    (_bad(b2=torch.randn(2)), RuntimeError, "expand_bias must be a 1-D tensor of 4"),
    (_bad(w2=torch.randn(4, 2, 1, 1, dtype=torch.float64)), RuntimeError,
     "expand_weight has dtype Double but x has dtype Float"),
    (_bad(x=torch.randn(1, 4, 3, 3).half()), RuntimeError, "x must be float32 or float64"),
    (_bad(w1=torch.randn(2, 4, 1, 1, device="meta")), RuntimeError,
     "reduce_weight is on meta but x is on cpu"),
    (_bad(activation="gelu"), ValueError, "activation 'gelu' is not supported"),
    (_bad(activation="hardsigmoid"), ValueError, "activation 'hardsigmoid' is not supported"),
    (_bad(gate="relu"), ValueError, "gate 'relu' is not supported; expected one of 'hardsigmoid', 'sigmoid'"),
])
def test_errors(args, error, match):
    a = dict(args)
    for grad in (False, True):  # the fused kernel and the differentiable chain check alike
        x = a["x"].clone().requires_grad_(grad) if a["x"].is_floating_point() else a["x"]
        with pytest.raises(error, match=match):
            dse.squeeze_excite(x, a["w1"], a["b1"], a["w2"], a["b2"], a["activation"], a["gate"])


# ---------------------------------------------------------------- module and converter

class TorchvisionStyleSE(nn.Module):
    """The structure of torchvision.ops.SqueezeExcitation (avgpool, fc1, activation, fc2,
    scale_activation; `scale * input`)."""

    def __init__(self, c, s, activation=nn.ReLU, scale_activation=nn.Sigmoid):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, s, 1)
        self.fc2 = nn.Conv2d(s, c, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def _scale(self, x):
        return self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))

    def forward(self, x):
        return self._scale(x) * x


class FunctionalSE(nn.Module):
    """A block with a functional squeeze-excite inside its forward (the result is a GraphModule)."""

    def __init__(self, c, s):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1)
        self.reduce = nn.Conv2d(c, s, 1)
        self.expand = nn.Conv2d(s, c, 1)

    def forward(self, x):
        y = self.conv(x)
        g = torch.sigmoid(self.expand(F.relu6(self.reduce(y.mean((-2, -1), keepdim=True)))))
        return y.mul(g)


def _x(n=2, c=16, hw=9, layout="nchw"):
    return with_layout(torch.randn(n, c, hw, hw, generator=torch.Generator().manual_seed(3)), layout)


@pytest.mark.parametrize("gate", [nn.Hardsigmoid, nn.Sigmoid])
def test_module_from_modules(gate):
    torch.manual_seed(0)
    se = TorchvisionStyleSE(16, 4, scale_activation=gate).eval()
    m = dse.nn.SqueezeExcite.from_modules(se.fc1, se.fc2, se.activation, se.scale_activation)
    assert m.gate == {nn.Hardsigmoid: "hardsigmoid", nn.Sigmoid: "sigmoid"}[gate]
    for layout in ("nchw", "channels_last"):
        with torch.no_grad():
            torch.testing.assert_close(m(_x(layout=layout)), se(_x(layout=layout)))
    # torchvision's parameter names: its state_dict loads as it is.
    fresh = dse.nn.SqueezeExcite(16, 4, gate=m.gate)
    fresh.load_state_dict({k: v for k, v in se.state_dict().items()})
    with torch.no_grad():
        torch.testing.assert_close(fresh(_x()), m(_x()), rtol=0, atol=0)
    with pytest.raises(ValueError, match="SiLU is not an activation"):
        dse.nn.SqueezeExcite.from_modules(se.fc1, se.fc2, nn.SiLU(), gate())
    with pytest.raises(ValueError, match="Tanh is not a gate"):
        dse.nn.SqueezeExcite.from_modules(se.fc1, se.fc2, nn.ReLU(), nn.Tanh())
    with pytest.raises(ValueError, match="fc2 must map fc1's output back"):
        dse.nn.SqueezeExcite.from_modules(se.fc1, nn.Conv2d(4, 8, 1), nn.ReLU(), gate())


def test_module_training_gradients():
    torch.manual_seed(0)
    se = TorchvisionStyleSE(8, 3, scale_activation=nn.Hardsigmoid)
    m = dse.nn.SqueezeExcite.from_modules(se.fc1, se.fc2, se.activation, se.scale_activation)
    x = _x(c=8).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    m(x).square().sum().backward()
    se(x_ref).square().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(m.fc1.weight.grad, se.fc1.weight.grad)
    torch.testing.assert_close(m.fc2.bias.grad, se.fc2.bias.grad)


@pytest.mark.parametrize("make,graph_module", [
    # The model itself: a rewritten graph (the fused module takes fc1's place).
    (lambda: TorchvisionStyleSE(16, 4, scale_activation=nn.Hardsigmoid), True),
    (lambda: nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), TorchvisionStyleSE(16, 4)), False),
    (lambda: nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), models.SqueezeExcite(16, 4)), False),
    (lambda: FunctionalSE(16, 5), True),
])
def test_convert_fuses_squeeze_excite(make, graph_module):
    torch.manual_seed(0)
    original = make().eval()
    model, report = dse.convert(original, report=True)
    assert report.counts["squeeze_excite"] == 1, str(report)
    assert isinstance(model, fx.GraphModule) == graph_module
    fused = [m for m in model.modules() if isinstance(m, dse.nn.SqueezeExcite)]
    assert len(fused) == 1
    assert not any(isinstance(m, (nn.AdaptiveAvgPool2d, nn.Hardsigmoid, nn.Sigmoid))
                   for m in model.modules())
    for layout in ("nchw", "channels_last"):
        with torch.no_grad():
            torch.testing.assert_close(model(_x(layout=layout)), original(_x(layout=layout)))


def test_convert_leaves_unsupported_activation_alone():
    """SiLU between the convolutions (EfficientNet): no SqueezeExcite; the convolutions are
    converted one by one and the output is the same."""
    torch.manual_seed(0)
    original = TorchvisionStyleSE(16, 4, activation=nn.SiLU).eval()
    model, report = dse.convert(original, report=True)
    assert report.counts["squeeze_excite"] == 0 and report.counts["pointwise"] == 2
    with torch.no_grad():
        torch.testing.assert_close(model(_x()), original(_x()))


def test_converted_v3_large_same_outputs_and_macs():
    torch.manual_seed(0)
    original = models.mobilenet_v3_large(10).eval()
    model, report = dse.convert(original, report=True)
    assert report.counts["squeeze_excite"] == 8
    assert sum(isinstance(m, dse.nn.SqueezeExcite) for m in model.modules()) == 8
    assert cx.model_cost(model, (3, 96, 96)).macs == cx.model_cost(original, (3, 96, 96)).macs
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = original(x)
        torch.testing.assert_close(model(x), expected, rtol=1e-4,
                                   atol=1e-4 * expected.abs().max().item())
