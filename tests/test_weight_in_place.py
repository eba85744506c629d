"""1x1 weights stored input-major (dsconv_ext.nn.input_major), which the CPU kernels read in
place instead of caching a packed copy: the pointwise, separable and inverted-residual ops
give the same results as with the contiguous weight, on every kernel set and layout, and
pack nothing for them; PointwiseConv2d.weight_in_place_ keeps the layout through .to() and
state_dict; convert(pack_weights=False) lays out the right modules and changes no output."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dsconv_ext as dse
from _ref import ref_pointwise, with_layout
from dsconv_ext.nn import input_major, is_input_major

misses = dse._C.packed_cache_misses


def transposed(w):
    """Input-major without padding: W^T made contiguous, viewed back."""
    co, ci = w.shape[:2]
    return w.reshape(co, ci).t().contiguous().t()[:, :, None, None]


LAYOUTS = ["nchw", "channels_last"]
# (C_in, C_out, H, W): odd widths and channel counts off the vector width, the 4x24 tile's
# C_out, padded strides (C_out from 64 up), a single pixel and a few (the matrix-vector range).
PW_SHAPES = [(3, 5, 7, 9), (16, 24, 6, 5), (24, 72, 5, 7), (40, 120, 9, 4), (7, 64, 3, 3),
             (33, 130, 5, 5), (64, 17, 1, 1), (9, 40, 1, 3)]


@pytest.mark.parametrize("lay_out", [input_major, transposed], ids=["padded", "transposed"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", PW_SHAPES, ids=str)
def test_pointwise_reads_input_major_weight_in_place(isa, gen, shape, layout, lay_out):
    ci, co, h, w = shape
    x = with_layout(torch.randn(2, ci, h, w, generator=gen), layout)
    weight = torch.randn(co, ci, 1, 1, generator=gen)
    bias = torch.randn(co, generator=gen)
    inner = lay_out(weight)
    assert is_input_major(inner) and torch.equal(inner, weight)
    before = misses()
    y = dse.pointwise(x, inner, bias, activation="hardswish")
    assert misses() == before, "an input-major weight was packed"
    assert y.is_contiguous(memory_format=torch.channels_last if layout == "channels_last"
                           else torch.contiguous_format)
    ref = ref_pointwise(x.double(), weight.double(), bias.double(), "hardswish")
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)
    if h * w > 1:  # the same GEMM as with the packed weight: the same sums in the same order
        assert torch.equal(y, dse.pointwise(x, weight, bias, activation="hardswish"))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("stride", [1, 2])
def test_separable_reads_input_major_weight_in_place(isa, gen, layout, stride):
    x = with_layout(torch.randn(2, 40, 11, 9, generator=gen), layout)
    dw, pw = torch.randn(40, 1, 3, 3, generator=gen), torch.randn(72, 40, 1, 1, generator=gen)
    expected = dse.separable(x, dw, pw, stride=stride, padding=1, pw_activation="relu")
    before = misses()  # the depthwise weight is packed by now
    y = dse.separable(x, dw, input_major(pw), stride=stride, padding=1, pw_activation="relu")
    assert misses() == before
    assert torch.equal(y, expected)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("stride,residual", [(1, True), (2, False)])
def test_inverted_residual_reads_input_major_weights_in_place(isa, gen, layout, stride,
                                                              residual):
    x = with_layout(torch.randn(1, 24, 15, 13, generator=gen), layout)
    ew, dw = torch.randn(144, 24, 1, 1, generator=gen), torch.randn(144, 1, 3, 3, generator=gen)
    pw = torch.randn(24, 144, 1, 1, generator=gen)
    eb, db, pb = (torch.randn(n, generator=gen) for n in (144, 144, 24))

    def block(e, p):
        return dse.inverted_residual(x, e, dw, p, eb, db, pb, stride=stride, padding=1,
                                     expand_activation="relu6", dw_activation="relu6",
                                     residual=residual)
    expected = block(ew, pw)
    before = misses()
    y = block(input_major(ew), input_major(pw))
    assert misses() == before
    assert torch.equal(y, expected)


def test_gradients_match_the_contiguous_weight(gen):
    x = torch.randn(2, 12, 5, 6, generator=gen, dtype=torch.float64)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(20, 12, 1, 1, generator=gen, dtype=torch.float64)
    grads = []
    for weight in (w.clone(), input_major(w)):
        weight.requires_grad_()
        x.grad = None
        dse.pointwise(x, weight, activation="relu6").square().sum().backward()
        grads.append((x.grad.clone(), weight.grad.clone()))
    torch.testing.assert_close(grads[0], grads[1])
    wi = input_major(w).requires_grad_()
    torch.autograd.gradcheck(lambda a, b: dse.pointwise(a, b), (x.detach().requires_grad_(), wi))


def test_module_keeps_the_layout_through_to_and_state_dict(gen):
    conv = nn.Conv2d(40, 96, 1)
    m = dse.nn.PointwiseConv2d.from_modules(conv).weight_in_place_()
    param = m.weight
    assert is_input_major(m.weight) and not m.weight.is_contiguous()
    assert torch.equal(m.weight, conv.weight) and "weight_in_place=True" in repr(m)
    m = m.to(memory_format=torch.channels_last)  # would copy a 4-d weight to channels_last
    assert m.weight is param and is_input_major(m.weight)
    m = m.double()
    assert is_input_major(m.weight) and m.weight.dtype == torch.float64
    m = m.float()
    state = m.state_dict()
    assert state["weight"].shape == (96, 40, 1, 1)
    back = nn.Conv2d(40, 96, 1)
    back.load_state_dict(state)
    assert torch.equal(back.weight, conv.weight)
    fresh = dse.nn.PointwiseConv2d(40, 96).weight_in_place_()
    fresh.load_state_dict(conv.state_dict())
    assert is_input_major(fresh.weight) and torch.equal(fresh.weight, conv.weight)
    x = torch.randn(1, 40, 7, 7, generator=gen)
    torch.testing.assert_close(fresh(x), conv(x), rtol=1e-5, atol=1e-5)
    fresh.load_state_dict(conv.state_dict(), assign=True)
    assert is_input_major(fresh.weight) and torch.equal(fresh.weight, conv.weight)
    m.weight_in_place_(False)
    assert m.weight is param and m.weight.is_contiguous()


def test_optimizer_steps_an_input_major_weight(gen):
    m = dse.nn.PointwiseConv2d(8, 16).weight_in_place_()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    before = m.weight.detach().clone()
    x = torch.randn(2, 8, 4, 4, generator=gen)
    m(x).square().sum().backward()
    expected = before - 0.1 * m.weight.grad
    opt.step()
    assert is_input_major(m.weight)
    torch.testing.assert_close(m.weight.detach(), expected)


def _block_net():
    """Stem, an inverted residual with squeeze-excite, a separable pair and a head."""
    torch.manual_seed(0)

    class SE(nn.Module):
        def __init__(self, c, s):
            super().__init__()
            self.pool, self.fc1, self.relu = nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, s, 1), nn.ReLU()
            self.fc2, self.gate = nn.Conv2d(s, c, 1), nn.Hardsigmoid()

        def forward(self, x):
            return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))

    def cbr(ci, co, k=1, s=1, g=1):
        return [nn.Conv2d(ci, co, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(co), nn.ReLU6()]
    body = nn.Sequential(*cbr(3, 16, 3, 2), *cbr(16, 96), *cbr(96, 96, 3, 1, 96), SE(96, 24),
                         nn.Conv2d(96, 24, 1), *cbr(24, 24, 3, 1, 24), *cbr(24, 40),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(40, 10))
    for bn in body.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.2, 0.2), bn.running_var.uniform_(0.5, 2)
    return body.eval()


def test_convert_without_packing_changes_no_output():
    model = _block_net()
    packed = dse.convert(model)
    in_place = dse.convert(model, pack_weights=False)
    pws = [m for m in in_place.modules() if isinstance(m, dse.nn.PointwiseConv2d)]
    se_fcs = {id(se.fc1) for se in in_place.modules() if isinstance(se, dse.nn.SqueezeExcite)}
    se_fcs |= {id(se.fc2) for se in in_place.modules() if isinstance(se, dse.nn.SqueezeExcite)}
    assert se_fcs and len(pws) > len(se_fcs)
    for m in pws:
        assert m.weight_in_place == (id(m) not in se_fcs)
        assert is_input_major(m.weight) == (id(m) not in se_fcs)
    assert not any(getattr(m, "weight_in_place", False) for m in packed.modules())
    x = torch.randn(2, 3, 40, 36).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = packed(x)
        in_place(x)  # packs what it still packs: depthwise and stem weights
        before = misses()
        y = in_place(x)
        assert misses() == before
    assert torch.equal(y, expected)
    torch.testing.assert_close(y, model(x), rtol=1e-4, atol=1e-4)


def test_compile_with_input_major_weights():
    model = dse.convert(_block_net(), pack_weights=False)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model, fullgraph=True)
        torch.testing.assert_close(compiled(x), expected, rtol=1e-5, atol=1e-5)


def test_cuda_copy_is_contiguous():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    m = dse.nn.PointwiseConv2d(8, 64).weight_in_place_().cuda()
    assert m.weight.is_contiguous()
    x = torch.randn(1, 8, 5, 5, device="cuda")
    torch.testing.assert_close(m(x), F.conv2d(x, m.weight, m.bias), rtol=1e-4, atol=1e-4)
    assert is_input_major(m.cpu().weight)
