"""pointwise's residual argument (a block's skip connection, added after the activation as
each tile is stored) and the InvertedResidual that holds a squeeze-excite, which uses it:
values against ATen on every kernel set, both layouts and both kernel families (matrix-vector
at a few pixels, GEMM), gradients, errors, and what convert makes of MobileNetV3's blocks."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dsconv_ext as dse
from dsconv_ext import models
from dsconv_ext.nn import DepthwiseConv2d, InvertedResidual, PointwiseConv2d, SqueezeExcite
from _ref import assert_format, ref_pointwise, with_layout

# (batch, C_in, C_out, H, W): matrix-vector shapes (at most 4 pixels in all) and GEMM shapes
# with partial tiles, one with several K blocks.
SHAPES = [(1, 16, 24, 1, 1), (3, 8, 9, 1, 1), (1, 13, 17, 2, 2), (2, 33, 17, 5, 7),
          (1, 40, 40, 14, 14), (2, 1030, 19, 3, 5)]


def _case(gen, shape, dtype, layout, residual_layout, bias=True):
    n, ci, co, h, w = shape
    x = with_layout(torch.randn(n, ci, h, w, generator=gen, dtype=dtype), layout)
    weight = torch.randn(co, ci, 1, 1, generator=gen, dtype=dtype)
    b = torch.randn(co, generator=gen, dtype=dtype) if bias else None
    r = with_layout(torch.randn(n, co, h, w, generator=gen, dtype=dtype), residual_layout)
    return x, weight, b, r


@pytest.mark.parametrize("activation", dse.ACTIVATIONS)
@pytest.mark.parametrize("layouts", [("nchw", "nchw"), ("channels_last", "channels_last"),
                                     ("channels_last", "nchw"), ("nchw", "strided"),
                                     ("channels_last", "cl_sliced")],
                         ids=lambda v: "-".join(v))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_aten_then_the_add(isa, gen, shape, layouts, activation):
    for dtype in (torch.float32, torch.float64):
        x, weight, b, r = _case(gen, shape, dtype, *layouts)
        y = dse.pointwise(x, weight, b, activation, residual=r)
        want = ref_pointwise(x.double(), weight.double(), b.double(), activation) + r.double()
        tol = 1e-4 if dtype == torch.float32 else 1e-10
        torch.testing.assert_close(y.double(), want, rtol=tol, atol=tol * shape[1] ** 0.5)
        assert_format(y, x)


def test_input_major_weight_and_empty_output(gen):
    x, weight, b, r = _case(gen, (2, 24, 40, 6, 5), torch.float32, "channels_last", "nchw")
    y = dse.pointwise(x, dse.nn.input_major(weight), b, "relu6", r)
    torch.testing.assert_close(y, ref_pointwise(x, weight, b, "relu6") + r, rtol=1e-5, atol=1e-4)
    empty = torch.empty(0, 24, 6, 5)
    assert dse.pointwise(empty, weight, b, None, torch.empty(0, 40, 6, 5)).shape == (0, 40, 6, 5)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation", dse.ACTIVATIONS)
def test_gradients(gen, activation, bias):
    x, weight, b, r = _case(gen, (2, 6, 5, 3, 4), torch.float64, "nchw", "channels_last", bias)
    x = 2 * x  # pre-activations across relu6's / hardswish's kinks
    args = [t.requires_grad_() for t in (x, weight, b, r) if t is not None]

    def fn(*a):
        return dse.pointwise(a[0], a[1], a[2] if bias else None, activation, a[-1])

    torch.autograd.gradcheck(fn, args)
    torch.autograd.gradgradcheck(fn, args)


def test_gradient_of_the_residual_alone(gen):
    x, weight, b, r = _case(gen, (1, 6, 5, 3, 4), torch.float32, "nchw", "nchw")
    r.requires_grad_()
    gy = torch.randn(1, 5, 3, 4, generator=gen)
    (g,) = torch.autograd.grad(dse.pointwise(x, weight, b, "relu", r), r, gy)
    assert torch.equal(g, gy)


def test_bad_residuals_are_refused(gen):
    x, weight, b, r = _case(gen, (2, 6, 5, 3, 4), torch.float32, "nchw", "nchw")
    for bad, match in [(r[:, :4], r"output's shape \[2, 5, 3, 4\], got \[2, 4, 3, 4\]"),
                       (r[0], "output's shape"), (r.double(), "residual has dtype Double"),
                       (r.to("meta"), "residual is on meta")]:
        with pytest.raises(RuntimeError, match=match):
            dse.pointwise(x, weight, b, None, bad)


def test_compile_fullgraph(gen):
    x, weight, b, r = _case(gen, (1, 8, 16, 5, 5), torch.float32, "channels_last", "channels_last")
    torch._dynamo.reset()
    try:
        fn = torch.compile(lambda x, r: dse.pointwise(x, weight, b, "hardswish", residual=r),
                           fullgraph=True)
        torch.testing.assert_close(fn(x, r), ref_pointwise(x, weight, b, "hardswish") + r,
                                   rtol=1e-5, atol=1e-4)
    finally:
        torch._dynamo.reset()


# ---------------------------------------------------------------- the block with a squeeze-excite

def _se_block(gen, residual=True, expand=True):
    torch.manual_seed(gen.initial_seed())
    e = PointwiseConv2d(16, 48, activation="hardswish") if expand else None
    mid = 48 if expand else 16
    d = DepthwiseConv2d(mid, mid, kernel_size=5, padding=2, activation="hardswish")
    se = SqueezeExcite(mid, 12)
    p = PointwiseConv2d(mid, 16)
    return InvertedResidual.from_parts(e, d, p, residual=residual, se=se), (e, d, se, p)


@pytest.mark.parametrize("expand", [True, False])
@pytest.mark.parametrize("residual", [True, False])
def test_block_with_squeeze_excite_is_its_parts_in_order(gen, residual, expand):
    block, (e, d, se, p) = _se_block(gen, residual, expand)
    assert [n for n, _ in block.named_children()] == (["expand"] if expand else []) + \
        ["depthwise", "se", "project"]
    x = torch.randn(2, 16, 9, 11, generator=gen).contiguous(memory_format=torch.channels_last)
    h = d(e(x)) if expand else d(x)
    want = p(se(h)) + (x if residual else 0)
    torch.testing.assert_close(block(x), want, rtol=1e-5, atol=1e-5)
    x.requires_grad_()
    got = torch.autograd.grad(block(x).square().sum(), [x, d.weight, se.fc1.weight])
    want = torch.autograd.grad((p(se(d(e(x)) if expand else d(x))) + (x if residual else 0))
                               .square().sum(), [x, d.weight, se.fc1.weight])
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)


def test_block_with_squeeze_excite_refuses_bad_parts(gen):
    _, (e, d, se, p) = _se_block(gen)
    with pytest.raises(ValueError, match="needs a project stage"):
        InvertedResidual.from_parts(e, d, None, se=se)
    with pytest.raises(TypeError, match="se must be a SqueezeExcite"):
        InvertedResidual.from_parts(e, d, p, se=nn.Identity())
    with pytest.raises(ValueError, match="se takes 20"):
        InvertedResidual.from_parts(e, d, p, se=SqueezeExcite(20, 5))


def test_convert_fuses_mobilenet_v3_blocks_with_their_residual_add():
    model = models.mobilenet_v3_large(10, 0.5).eval()
    converted, report = dse.convert(model, report=True)
    blocks = [m for m in converted.modules()
              if isinstance(m, InvertedResidual) and m.se is not None]
    originals = [m for m in model.features if getattr(m, "use_residual", False)
                 and any(isinstance(c, models.SqueezeExcite) for c in m.modules())]
    # the 3 blocks with a squeeze-excite but no residual are one module too
    assert len(blocks) == 8 and sum(b.residual for b in blocks) == len(originals) == 5
    assert sum("mul -> pointwise+bn -> add" in r.pattern for r in report.replaced) == 5
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), model(x), rtol=1e-4, atol=1e-4)
    with torch.profiler.profile() as prof, torch.no_grad():
        converted(x)
    ops = {e.name for e in prof.events()}
    assert "aten::add" not in ops and "aten::hardswish" not in ops and "aten::hardswish_" not in ops
