"""The packed-weight cache (csrc/ops/packed_weight_cache.h): repeated calls with one weight
pack it once; in-place updates of the weight are seen; it is bounded (256 entries, 256 MiB,
least recently used first) and thread-safe; a packing depends on the call's shape as well
as on the weight."""
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import torch.nn.functional as F

import dsconv_ext as dse
from _ref import forced_isa, kernel_sets, ref_depthwise

MAX_ENTRIES = 256
MAX_BYTES = 256 << 20
cache_size, misses, clear = dse._C.packed_cache_size, dse._C.packed_cache_misses, dse._C.packed_cache_clear

# Packing kernels run only for the SIMD kernel sets (the scalar kernels read ATen's layout).
SIMD = [isa for isa in kernel_sets() if isa != "scalar"]
pytestmark = pytest.mark.skipif(not SIMD, reason="no SIMD kernel set: nothing is packed")


@pytest.fixture(autouse=True)
def simd():
    with forced_isa(SIMD[-1]):
        clear()
        yield
        clear()


def x_cl(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).contiguous(memory_format=torch.channels_last)


# Each op on a channels_last input, so every one of them packs a weight (dw: taps-major,
# pw: GEMM panels). Weights are given as a list (updated in place by the tests).
OPS = {
    "pointwise": (lambda x, w: dse.pointwise(x, w[0]), lambda: [torch.randn(8, 12, 1, 1)]),
    "depthwise": (lambda x, w: dse.depthwise(x, w[0], padding=1), lambda: [torch.randn(12, 1, 3, 3)]),
    "separable": (lambda x, w: dse.separable(x, w[0], w[1], padding=1),
                  lambda: [torch.randn(12, 1, 3, 3), torch.randn(8, 12, 1, 1)]),
}


def fresh_result(fn, x, weights):
    """The op with copies of the weights: packed anew, so the right result bit for bit."""
    return fn(x, [w.detach().clone() for w in weights])


@pytest.mark.parametrize("op", sorted(OPS))
def test_repeated_calls_pack_once(op):
    fn, make = OPS[op]
    x, weights = x_cl(2, 12, 9, 9), make()
    before = misses()
    y = fn(x, weights)
    packed = misses() - before
    assert packed == len(weights)
    for _ in range(5):
        assert torch.equal(fn(x, weights), y)
    assert misses() - before == packed


def _add(w, i):
    w.add_(1.0)


def _copy(w, i):
    w.copy_(torch.randn(w.shape, generator=torch.Generator().manual_seed(i)))


def _view(w, i):  # a write through a view shares the version counter
    w.view(-1)[::3].mul_(-2.0)


def _detached(w, i):
    w.detach().sub_(0.5)


def _zero(w, i):
    w.zero_()


UPDATES = {"add_": _add, "copy_": _copy, "view-mul_": _view, "detach-sub_": _detached, "zero_": _zero}


@pytest.mark.parametrize("update", sorted(UPDATES))
@pytest.mark.parametrize("op", sorted(OPS))
def test_inplace_update_is_seen(op, update):
    fn, make = OPS[op]
    x = x_cl(1, 12, 7, 7)
    weights = [torch.nn.Parameter(w) for w in make()]
    with torch.no_grad():
        before = fn(x, weights)
        for i, w in enumerate(weights):
            UPDATES[update](w, i)
        after = fn(x, weights)
        expected = fresh_result(fn, x, weights)
    assert not torch.equal(after, before)
    assert torch.equal(after, expected)


@pytest.mark.parametrize("optimizer", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    lambda p: torch.optim.Adam(p, lr=0.1, foreach=True),
    lambda p: torch.optim.AdamW(p, lr=0.1, foreach=False),
], ids=["sgd", "adam-foreach", "adamw-loop"])
def test_optimizer_steps_are_seen(optimizer):
    """A training loop: each step's forward sees the weights the previous step wrote."""
    torch.manual_seed(0)
    module = dse.nn.SeparableConv2d(12, 8, 3, padding=1, dw_activation="relu6")
    opt = optimizer(module.parameters())
    x = x_cl(2, 12, 8, 8)
    for _ in range(3):
        opt.zero_grad()
        y = module(x)
        with torch.no_grad():
            expected = F.conv2d(F.relu6(F.conv2d(x, module.depthwise.weight, module.depthwise.bias,
                                                 padding=1, groups=12)),
                                module.pointwise.weight, module.pointwise.bias)
        torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
        y.square().mean().backward()
        opt.step()


def test_load_state_dict_is_seen():
    torch.manual_seed(1)
    a, b = dse.nn.SeparableConv2d(12, 8, 3, padding=1), dse.nn.SeparableConv2d(12, 8, 3, padding=1)
    x = x_cl(1, 12, 6, 6)
    with torch.no_grad():
        before = a(x)
        a.load_state_dict(b.state_dict())
        after = a(x)
        assert not torch.equal(after, before)
        assert torch.equal(after, b(x))


def test_writes_through_data_are_not_seen_documented_limit():
    """README, Limits: `w.data` is a tensor with its own version counter, so writes through
    it (like writes through w.numpy()) do not invalidate the packed copy; clearing the
    cache (or updating w itself) does."""
    w = torch.randn(8, 12, 1, 1)
    x = x_cl(1, 12, 5, 5)
    dse.pointwise(x, w)
    w.data.add_(1.0)
    stale = dse.pointwise(x, w)
    clear()
    assert not torch.equal(stale, dse.pointwise(x, w))


def test_entry_bound():
    x = x_cl(1, 4, 3, 3)
    weights = [torch.randn(4, 4, 1, 1) for _ in range(MAX_ENTRIES + 40)]
    for w in weights:
        dse.pointwise(x, w)
    assert cache_size() == MAX_ENTRIES
    # The most recently used stay: calling the last weights again packs nothing.
    before = misses()
    for w in weights[-10:]:
        dse.pointwise(x, w)
    assert misses() == before
    # ...the least recently used were evicted: the first weight is packed again.
    dse.pointwise(x, weights[0])
    assert misses() == before + 1
    # Entries of dead weights are dropped at the next packing.
    del weights, w
    dse.pointwise(x, torch.randn(4, 4, 1, 1))
    assert cache_size() <= 2


def test_byte_bound():
    """Nine live 32 MiB weights: at most eight packed copies (256 MiB) are kept. (NHWC input:
    the GEMM panels are 2048 = a multiple of every tile width, so a packed copy is 32 MiB; 6
    pixels, more than the matrix-vector path takes.)"""
    x = x_cl(1, 4096, 3, 2)
    weights = [torch.full((2048, 4096, 1, 1), float(i) / 4096) for i in range(9)]
    for i, w in enumerate(weights):
        y = dse.pointwise(x, w)
        torch.testing.assert_close(y, (x.sum(1, keepdim=True) * i / 4096).expand(y.shape), rtol=1e-4, atol=1e-4)
    assert cache_size() == MAX_BYTES // (2048 * 4096 * 4)


def test_depthwise_weight_reused_with_another_channel_split():
    """Regression (found while fuzzing the cache): one [6, 1, 3, 3] weight serves a 6-channel
    input (multiplier 1) and a 3-channel one (multiplier 2). The NHWC input-gradient packing
    depends on that split; the cache returned the first call's packing for the second."""
    w = torch.randn(6, 1, 3, 3, generator=torch.Generator().manual_seed(2))
    for channels in (6, 3, 6, 3):
        x = x_cl(2, channels, 8, 8, seed=channels).requires_grad_()
        y = dse.depthwise(x, w, padding=1)
        gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
        gx, = torch.autograd.grad(y, x, gy)
        xr = x.detach().double().requires_grad_()
        ref, = torch.autograd.grad(ref_depthwise(xr, w.double(), padding=1), xr, gy.double())
        torch.testing.assert_close(gx, ref.float(), rtol=1e-5, atol=1e-5)


def test_concurrent_use_with_evictions_and_updates():
    """16 threads, each with its own 24 weights (384 in all: evictions run while other threads
    look up), updating them in place between calls; every result equals a fresh packing."""
    threads, per_thread = 16, 24
    start = threading.Barrier(threads)

    def worker(i):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(1, 6, 5, 5, generator=g).contiguous(memory_format=torch.channels_last)
        weights = [torch.randn(4 + i % 3, 6, 1, 1, generator=g) for _ in range(per_thread)]
        start.wait()
        bad = 0
        for rnd in range(3):
            for w in weights:
                y = dse.pointwise(x, w)
                bad += not torch.equal(y, dse.pointwise(x, w.clone()))
                w.add_(rnd + 1.0)
        return bad

    with ThreadPoolExecutor(threads) as pool:
        assert sum(pool.map(worker, range(threads))) == 0
    assert cache_size() <= MAX_ENTRIES
