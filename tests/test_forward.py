"""Every op vs ATen over a seeded all-pairs grid of shapes, geometry, layouts, activations,
biases and dtypes, under every kernel set of this CPU."""
import pytest
import torch

import dsconv_ext as dse
from _cases import AXES, build, check_forward, valid
from _ref import case_id, check_grads, missing_values, pairwise_grid, with_layout

GRIDS = {op: pairwise_grid(axes, valid, seed=7) for op, axes in AXES.items()}


def grid_params(op):
    return [pytest.param(i, case, id=f"{i}-{case_id(case)}") for i, case in enumerate(GRIDS[op])]


@pytest.mark.parametrize("op", sorted(GRIDS))
def test_grid_covers_every_value(op):
    assert missing_values(AXES[op], GRIDS[op]) == []
    assert all(valid(case) for case in GRIDS[op])


@pytest.mark.parametrize("index, case", grid_params("depthwise"))
def test_depthwise(isa, index, case):
    check_forward("depthwise", *build("depthwise", case, torch.Generator().manual_seed(index)), isa)


@pytest.mark.parametrize("index, case", grid_params("pointwise"))
def test_pointwise(isa, index, case):
    check_forward("pointwise", *build("pointwise", case, torch.Generator().manual_seed(index)), isa)


@pytest.mark.parametrize("index, case", grid_params("separable"))
def test_separable(isa, index, case):
    check_forward("separable", *build("separable", case, torch.Generator().manual_seed(index)), isa)


# ---- memory format, stated literally (the grid checks it through the rule in _ref) ----

def _all_ops(x, gen):
    c = x.shape[1]
    w_dw = torch.randn(2 * c, 1, 3, 3, generator=gen)
    w_pw = torch.randn(5, 2 * c, 1, 1, generator=gen)
    return [dse.depthwise(x, w_dw, padding=1),
            dse.pointwise(x, w_pw[:, :c].contiguous()),
            dse.separable(x, w_dw, w_pw, padding=1)]


def test_channels_last_in_channels_last_out(gen):
    x = torch.randn(2, 3, 6, 7, generator=gen).contiguous(memory_format=torch.channels_last)
    assert not x.is_contiguous()
    for y in _all_ops(x, gen):
        assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()


@pytest.mark.parametrize("layout", ["nchw", "strided", "transposed", "cl_sliced"])
def test_other_layouts_give_nchw(gen, layout):
    x = with_layout(torch.randn(2, 3, 6, 7, generator=gen), layout)
    assert layout == "nchw" or not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last))
    for y in _all_ops(x, gen):
        assert y.is_contiguous()


def test_ambiguous_channels_last_gives_nchw(gen):
    # One channel: channels_last-contiguous and NCHW-contiguous at once -> NCHW.
    x = torch.randn(2, 1, 6, 7, generator=gen).contiguous(memory_format=torch.channels_last)
    assert x.is_contiguous()
    for y in _all_ops(x, gen):
        assert y.is_contiguous()


# ---- work split over threads: rows of an image, image boundaries and separable tiles ----

LARGE = {
    # 3 images of 33 output rows: thread ranges start and end inside images.
    "depthwise": dict(kernel=3, stride=1, padding=1, dilation=1, multiplier=1, batch=3,
                      hw=(33, 33), channels=64, activation="relu6", bias=True),
    "pointwise": dict(batch=3, hw=(17, 19), channels=64, out_channels=72, activation="hardswish",
                      bias=True),
    # Tiles of several rows, the last one partial.
    "separable": dict(kernel=5, stride=2, padding=2, dilation=1, multiplier=2, batch=3,
                      hw=(65, 66), channels=32, out_channels=24, dw_activation="relu",
                      pw_activation=None, dw_bias=True, pw_bias=True),
    # C_in over the GEMM's K block (256 NCHW, 1024 NHWC), not a multiple of it; C_out ends
    # in a narrow edge tile.
    "pointwise-deep-k": dict(batch=2, hw=(5, 7), channels=300, out_channels=37,
                             activation="relu", bias=True),
    "pointwise-deeper-k": dict(batch=1, hw=(3, 5), channels=1030, out_channels=19,
                               activation="relu6", bias=True),
    # Pointwise weight over 256 KiB: tiles grow to 64 pixels, cut again for the threads.
    "separable-large-weight": dict(kernel=3, stride=1, padding=1, dilation=1, multiplier=1,
                                   batch=1, hw=(9, 10), channels=280, out_channels=260,
                                   dw_activation="relu6", pw_activation="hardswish",
                                   dw_bias=True, pw_bias=False),
    # A few pixels in all: matrix-vector products, threads splitting the output channels.
    "pointwise-few-pixels": dict(batch=1, hw=(1, 1), channels=1283, out_channels=150,
                                 activation="hardswish", bias=True),
    "pointwise-few-pixels-batch": dict(batch=2, hw=(1, 2), channels=200, out_channels=67,
                                       activation=None, bias=False),
    # One intermediate row is larger than the 64 KiB tile budget: one-row tiles.
    "separable-wide-rows": dict(kernel=3, stride=1, padding=1, dilation=1, multiplier=2, batch=2,
                                hw=(3, 40), channels=256, out_channels=4, dw_activation="hardswish",
                                pw_activation="relu", dw_bias=False, pw_bias=True),
}


@pytest.fixture
def many_threads():
    """At least 4 intra-op threads (even on a smaller machine), so the work is split."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(4, previous))
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("name", sorted(LARGE))
def test_large_split_across_threads(isa, many_threads, name, layout, dtype):
    op = name.split("-")[0]
    case = {**LARGE[name], "layout": layout, "weights": "contiguous", "dtype": dtype}
    gen = torch.Generator().manual_seed(5)
    tensors, kwargs = build(op, case, gen)
    check_forward(op, tensors, kwargs, isa)
    check_grads(op, tensors, kwargs, tuple(i for i, t in enumerate(tensors) if t is not None), gen)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("name", sorted(LARGE))
def test_thread_count_keeps_results_bitwise(isa, name, layout):
    # Tiles depend on the thread count; the arithmetic of each output element must not.
    op = name.split("-")[0]
    case = {**LARGE[name], "layout": layout, "weights": "contiguous", "dtype": torch.float32}
    tensors, kwargs = build(op, case, torch.Generator().manual_seed(6))
    fn = getattr(dse, op)
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3, 4):
            torch.set_num_threads(threads)
            with torch.no_grad():
                results.append(fn(*tensors, **kwargs))
    finally:
        torch.set_num_threads(previous)
    for threads, y in zip((2, 3, 4), results[1:]):
        assert torch.equal(y, results[0]), f"{threads} threads differ from 1"


# ---- pointwise calls with a few pixels in all ----

@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", [(1, 40, 1, 1), (3, 9, 1, 1), (2, 40, 1, 2), (1, 40, 2, 2),
                                   (1, 40, 1, 5)])
def test_few_pixels_run_matrix_vector_products_on_the_weight_as_is(isa, gen, shape, layout):
    """At most 4 pixels in all with contiguous channels (1x1 images, or NHWC) run the
    matrix-vector kernels, which read ATen's weight layout: no packed copy is made."""
    x = with_layout(torch.randn(*shape, generator=gen), layout)
    w = torch.randn(23, shape[1], 1, 1, generator=gen)
    b = torch.randn(23, generator=gen)
    misses = dse._C.packed_cache_misses()
    y = dse.pointwise(x, w, b, activation="relu6")
    n, _, h, wd = shape
    gemv = n * h * wd <= 4 and (layout == "channels_last" or h * wd == 1)
    assert [k.startswith("gemv_") for k in dse.last_kernels()] == [gemv], dse.last_kernels()
    assert (dse._C.packed_cache_misses() == misses) == (gemv or isa == "scalar")
    ref = torch.nn.functional.conv2d(x.double(), w.double(), b.double()).clamp(0, 6)
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)
