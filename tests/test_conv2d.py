"""dsconv_ext.conv2d (a network's first layer: dense convolution, bias and activation fused)
against ATen: geometry, padding (asymmetric 'same' too), layouts, dtypes, batch, every kernel
set; gradients through the composite; opcheck, compile, threads, errors and empty inputs."""
import pytest
import torch
import torch.nn.functional as F

import dsconv_ext as dse
from _ref import ACTIVATIONS, activate, assert_format, assert_kernels, assert_within_bound, randn, with_layout

CASES = [  # (C_in, C_out, hw, kernel, stride, padding, dilation)
    (3, 32, (33, 30), 3, 2, 1, 1),        # the MobileNet first layer
    (3, 16, (17, 19), 3, 2, 1, 1),
    (3, 24, (16, 16), 3, 1, "same", 1),
    (3, 17, (12, 13), 2, 1, "same", 1),   # even kernel: asymmetric padding
    (1, 5, (9, 11), 5, 1, 2, 2),
    (4, 33, (10, 9), (3, 1), (1, 2), (1, 0), 1),
    (8, 40, (7, 8), 1, 2, 0, 1),
    (2, 3, (5, 4), 3, 3, 0, 1),
    (3, 8, (1, 1), 3, 1, 1, 1),           # every tap but the centre is padding
    (20, 9, (6, 7), 3, 1, 1, 1),          # wider inputs work too
]


def ref(x, w, b, stride, padding, dilation, activation):
    if padding == "same":  # F.conv2d pads an even kernel's extra row/column after
        return activate(F.conv2d(x, w, b, stride, "same", dilation), activation)
    return activate(F.conv2d(x, w, b, stride, padding, dilation), activation)


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_matches_aten(isa, gen, case, layout):
    cin, cout, hw, k, stride, padding, dilation = case
    x = with_layout(randn(gen, 2, cin, *hw), layout)
    kh, kw = (k, k) if isinstance(k, int) else k
    w = randn(gen, cout, cin, kh, kw)
    b = randn(gen, cout)
    for i, act in enumerate(ACTIVATIONS):
        y = dse.conv2d(x, w, b if i % 2 else None, stride, padding, dilation, act)
        assert_kernels(isa, x.dtype, 1)
        assert_format(y, x)
        bb = b.double() if i % 2 else None
        expected = ref(x.double(), w.double(), bb, stride, padding, dilation, act)
        magnitude = ref(x.double().abs(), w.double().abs(), None if bb is None else bb.abs(),
                        stride, padding, dilation, None)
        assert_within_bound(y, expected, magnitude, cin * kh * kw)


def test_float64(gen):
    x = randn(gen, 1, 3, 11, 12, dtype=torch.float64)
    w = randn(gen, 7, 3, 3, 3, dtype=torch.float64)
    y = dse.conv2d(x, w, None, 2, 1, 1, "hardswish")
    torch.testing.assert_close(y, F.hardswish(F.conv2d(x, w, None, 2, 1)))


def test_gradients_and_gradcheck(gen):
    x = randn(gen, 2, 3, 7, 6, dtype=torch.float64).requires_grad_()
    w = randn(gen, 5, 3, 3, 3, dtype=torch.float64).requires_grad_()
    b = randn(gen, 5, dtype=torch.float64).requires_grad_()
    torch.autograd.gradcheck(lambda x, w, b: dse.conv2d(x, w, b, 2, 1, 1, "relu6"), (x, w, b))
    torch.autograd.gradgradcheck(lambda x, w, b: dse.conv2d(x, w, b, 1, "same", 1, "hardswish"),
                                 (x, w, b))


def test_opcheck(gen):
    x = randn(gen, 2, 3, 9, 8).contiguous(memory_format=torch.channels_last)
    w = randn(gen, 6, 3, 3, 3)
    b = randn(gen, 6)
    torch.library.opcheck(torch.ops.dsconv.conv2d, (x, w, b, [2, 2], [1, 1, 1, 1], [1, 1], "relu"))
    torch.library.opcheck(torch.ops.dsconv.conv2d, (x.requires_grad_(), w, None, [1, 1],
                                                    [0, 1, 0, 1], [1, 1], None))


def test_compile_fullgraph(gen):
    torch._dynamo.reset()
    try:
        x = randn(gen, 1, 3, 16, 16)
        w = randn(gen, 8, 3, 3, 3)
        fn = torch.compile(lambda x: dse.conv2d(x, w, None, 2, 1, 1, "relu6"), fullgraph=True)
        torch.testing.assert_close(fn(x), F.relu6(F.conv2d(x, w, None, 2, 1)), rtol=1e-5, atol=1e-5)
    finally:
        torch._dynamo.reset()


def test_any_thread_count_gives_the_same_bits(gen):
    x = randn(gen, 3, 3, 37, 29).contiguous(memory_format=torch.channels_last)
    w = randn(gen, 35, 3, 3, 3)
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3, 4):
            torch.set_num_threads(threads)
            results.append(dse.conv2d(x, w, None, 2, 1, 1, "hardswish"))
    finally:
        torch.set_num_threads(previous)
    assert all(torch.equal(results[0], r) for r in results[1:])


@pytest.mark.parametrize("make, match", [
    (lambda: (torch.randn(1, 3, 8, 8), torch.randn(4, 2, 3, 3)), "weight.shape\\[1\\] must equal"),
    (lambda: (torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3)), "weight"),
    (lambda: (torch.randn(3, 8, 8), torch.randn(4, 3, 3, 3)), "x"),
    (lambda: (torch.randn(1, 3, 2, 2), torch.randn(4, 3, 5, 5)), "kernel"),
])
def test_errors(make, match):
    x, w = make()
    with pytest.raises((RuntimeError, ValueError), match=match):
        dse.conv2d(x, w)


def test_empty_batch_and_all_padding_output(gen):
    w = randn(gen, 4, 3, 3, 3)
    assert dse.conv2d(torch.empty(0, 3, 8, 8), w, None, 1, 1).shape == (0, 4, 8, 8)
    x = randn(gen, 1, 3, 1, 1)
    torch.testing.assert_close(dse.conv2d(x, w, None, 1, 2), F.conv2d(x, w, None, 1, 2))


def test_channels_last_weight_is_packed_once(gen):
    """A channels_last model's dense weight is not contiguous: the packed copy is cached for
    the weight itself, not made again from a per-call contiguous copy."""
    x = randn(gen, 1, 3, 10, 10).contiguous(memory_format=torch.channels_last)
    w = randn(gen, 8, 3, 3, 3).contiguous(memory_format=torch.channels_last)
    assert not w.is_contiguous()
    first = dse.conv2d(x, w, None, 2, 1)
    misses = dse._C.packed_cache_misses()
    second = dse.conv2d(x, w, None, 2, 1)
    assert dse._C.packed_cache_misses() == misses
    assert torch.equal(first, second)
    torch.testing.assert_close(first, F.conv2d(x, w, None, 2, 1), rtol=1e-5, atol=1e-5)
