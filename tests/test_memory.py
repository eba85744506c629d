"""Memory: resident set size (/proc/self/statm) does not grow over 10,000 calls of each op,
forward and backward ops, with the packed-weight cache hit on every call or missed on every
call (a new weight each time). Growth is 0 here; a leak of ~100 bytes per call would exceed
the tolerance (a kept 2x2 slice of each output, ~190 bytes, grows RSS by 1.9 MiB)."""
import os

import pytest
import torch

import dsconv_ext as dse

CALLS = 10_000
WARMUP = 1_000
TOLERANCE = 1 << 20  # bytes: allocator noise, not leaks (1 MiB / 10,000 calls ~ 100 B/call)
ops = torch.ops.dsconv
PAGE = os.sysconf("SC_PAGE_SIZE")

# One intra-op thread: a leak shows as well, and tiny calls do not wait on a second thread
# that a busy machine has descheduled.
pytestmark = [pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc"),
              pytest.mark.usefixtures("one_thread")]


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


g = torch.Generator().manual_seed(0)
X = torch.randn(1, 8, 10, 10, generator=g).contiguous(memory_format=torch.channels_last)
W = torch.randn(16, 1, 3, 3, generator=g)
B = torch.randn(16, generator=g)
PW = torch.randn(12, 16, 1, 1, generator=g)
GY = torch.randn(1, 16, 10, 10, generator=g)
GP = torch.randn(1, 12, 10, 10, generator=g)
MID = torch.randn(1, 16, 10, 10, generator=g).contiguous(memory_format=torch.channels_last)
GEO = ([1, 1], [1, 1, 1, 1], [1, 1])

CALLS_OF = {
    "depthwise": lambda: dse.depthwise(X, W, B, padding=1, activation="relu"),
    "depthwise-new-weight": lambda: dse.depthwise(X, W.clone(), B, padding=1),
    "pointwise": lambda: dse.pointwise(MID, PW, activation="hardswish"),
    "separable": lambda: dse.separable(X, W, PW, B, None, padding=1, pw_activation="relu6"),
    "depthwise_backward_input": lambda: ops.depthwise_backward_input(GY, W, [1, 8, 10, 10], *GEO),
    "depthwise_backward_weight": lambda: ops.depthwise_backward_weight(GY, X, [16, 1, 3, 3], *GEO),
    "pointwise_backward_input": lambda: ops.pointwise_backward_input(GP, PW),
    "pointwise_backward_weight": lambda: ops.pointwise_backward_weight(GP, MID),
}


@pytest.mark.parametrize("name", sorted(CALLS_OF))
def test_no_growth_over_repeated_calls(name):
    call = CALLS_OF[name]
    for _ in range(WARMUP):
        call()
    before = rss()
    for _ in range(CALLS):
        call()
    grown = rss() - before
    assert grown < TOLERANCE, f"RSS grew by {grown / 2**20:.1f} MiB over {CALLS} calls"


def test_no_growth_with_autograd():
    """Forward and backward through autograd (graph built and freed each call); fewer calls
    as each runs four ops."""
    leaves = [t.clone().requires_grad_() for t in (X, W, PW)]

    def step():
        dse.separable(*leaves, padding=1, dw_activation="relu6").sum().backward()

    for _ in range(WARMUP // 4):
        step()
    before = rss()
    for _ in range(CALLS // 4):
        step()
    grown = rss() - before
    assert grown < TOLERANCE, f"RSS grew by {grown / 2**20:.1f} MiB over {CALLS // 4} steps"
