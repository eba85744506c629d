"""dsconv_ext.global_avg_pool against F.adaptive_avg_pool2d(x, 1): shapes around the NHWC
pixel block and the 16-channel step, batch > 1, every input layout, float32 and float64; the
same bits on any thread count; empty inputs, errors, gradients, opcheck, compile; the
GlobalAvgPool2d module and what convert makes of nn.AdaptiveAvgPool2d."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dsconv_ext as dse
from dsconv_ext.nn import GlobalAvgPool2d

from _ref import LAYOUTS, assert_format, with_layout

# (N, C, H, W): channels below, at and off the 16-wide step; pixels below, at and past the
# 32-pixel NHWC block, and a 1x1 image.
SHAPES = [(1, 960, 7, 7), (2, 37, 5, 3), (3, 8, 1, 1), (1, 16, 4, 8), (2, 17, 11, 13),
          (1, 5, 33, 1), (4, 64, 2, 2)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_adaptive_avg_pool2d(gen, shape, layout, dtype):
    x = with_layout(torch.randn(*shape, generator=gen, dtype=dtype) + 3, layout)
    y = dse.global_avg_pool(x)
    assert y.shape == (shape[0], shape[1], 1, 1) and y.dtype == dtype
    assert_format(y, x)
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(y, F.adaptive_avg_pool2d(x, 1), **tol)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_same_bits_on_any_thread_count(gen, layout):
    x = with_layout(torch.randn(2, 72, 56, 56, generator=gen), layout)
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3, 4):
            torch.set_num_threads(threads)
            results.append(dse.global_avg_pool(x))
    finally:
        torch.set_num_threads(previous)
    assert all(torch.equal(results[0], r) for r in results[1:])


def test_empty_inputs():
    for shape in [(0, 4, 3, 3), (2, 0, 3, 3)]:
        y = dse.global_avg_pool(torch.randn(*shape))
        assert y.shape == (shape[0], shape[1], 1, 1)
    x = torch.randn(2, 3, 0, 4)  # no pixels: ATen's mean of nothing
    torch.testing.assert_close(dse.global_avg_pool(x), F.adaptive_avg_pool2d(x, 1), equal_nan=True)
    assert dse.global_avg_pool(x).isnan().all()


def test_errors():
    with pytest.raises(RuntimeError, match=r"x must be a 4-D tensor \[N, C, H, W\], got a 3-D"):
        dse.global_avg_pool(torch.randn(3, 4, 4))
    with pytest.raises(RuntimeError, match="x must be float32 or float64 on cpu, got Half"):
        dse.global_avg_pool(torch.randn(1, 3, 4, 4).half())
    with pytest.raises(RuntimeError, match="must be float32 or float64 on cpu, got Long"):
        dse.global_avg_pool(torch.ones(1, 3, 4, 4, dtype=torch.long))


def test_gradients(gen):
    x = torch.randn(2, 5, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(dse.global_avg_pool, (x,))
    assert torch.autograd.gradgradcheck(dse.global_avg_pool, (x,))
    g = torch.randn(2, 5, 1, 1, generator=gen, dtype=torch.float64)
    got, = torch.autograd.grad(dse.global_avg_pool(x), x, g)
    want, = torch.autograd.grad(F.adaptive_avg_pool2d(x, 1), x, g)
    torch.testing.assert_close(got, want)


def test_opcheck_and_compile(gen):
    x = torch.randn(2, 24, 5, 5, generator=gen).contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(torch.ops.dsconv.global_avg_pool, (x,))
    torch.library.opcheck(torch.ops.dsconv.global_avg_pool, (x.clone().requires_grad_(),))
    torch._dynamo.reset()
    fn = torch.compile(dse.global_avg_pool, fullgraph=True)
    torch.testing.assert_close(fn(x), dse.global_avg_pool(x))


def test_module(gen):
    m = GlobalAvgPool2d()
    assert isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size == 1 and m.state_dict() == {}
    x = torch.randn(2, 6, 5, 5, generator=gen)
    assert torch.equal(m(x), dse.global_avg_pool(x))
    for other in (torch.randn(6, 5, 5, generator=gen),          # 3-D: nn's forward
                  torch.randn(2, 6, 5, 5, generator=gen).bfloat16()):  # no CPU kernels
        torch.testing.assert_close(m(other), F.adaptive_avg_pool2d(other, 1))


def test_convert_replaces_the_head_pool_only():
    """The pool of a classifier head becomes a GlobalAvgPool2d; a squeeze-excite's pool is
    fused with it; other output sizes and subclasses stay."""
    model = dse.models.mobilenet_v3_small(10, 0.5).eval()
    converted, report = dse.convert(model, report=True)
    assert type(converted.pool) is GlobalAvgPool2d
    assert report.counts["global_avg_pool"] == 1 and "1 global average pool" in str(report)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), model(x), rtol=1e-4, atol=1e-4)

    class MyPool(nn.AdaptiveAvgPool2d):
        pass

    shared = nn.AdaptiveAvgPool2d((1, 1))
    seq = nn.Sequential(shared, nn.AdaptiveAvgPool2d(2), MyPool(1), shared).eval()
    converted, report = dse.convert(seq, report=True)
    assert [type(m) for m in converted] == [GlobalAvgPool2d, nn.AdaptiveAvgPool2d, MyPool,
                                            GlobalAvgPool2d]
    assert converted[0] is converted[3] and report.counts["global_avg_pool"] == 1
    assert type(dse.convert(nn.AdaptiveAvgPool2d(1).eval())) is GlobalAvgPool2d
