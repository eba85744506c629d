"""Thread safety: 16 Python threads calling every op (forward, the fused inverted-residual
block and squeeze-excite, backward through autograd, and the raw backward ops) at the same time on different shapes, with more than one intra-op
thread each, get exactly what serial calls get, and each thread's last_kernels() describes
its own last call. (The packed-weight cache under threads: test_packed_cache.py.)"""
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import dsconv_ext as dse
from _ref import ACTIVATIONS

THREADS = 16
ROUNDS = 3
ops = torch.ops.dsconv


def workload(i):
    """A different problem per thread: channels, size, kernel, stride, layout, activation."""
    g = torch.Generator().manual_seed(100 + i)
    c, k, stride = 4 + 2 * i, (3, 5)[i % 2], 1 + i % 2
    x = torch.randn(1 + i % 3, c, 20 + i, 25 - i % 4, generator=g)
    if i % 2:
        x = x.contiguous(memory_format=torch.channels_last)
    w_dw = torch.randn(2 * c, 1, k, k, generator=g).requires_grad_()
    w_pw = torch.randn(3 + i, 2 * c, 1, 1, generator=g).requires_grad_()
    b = torch.randn(3 + i, generator=g).requires_grad_()
    act = ACTIVATIONS[i % len(ACTIVATIONS)]
    return x, w_dw, w_pw, b, dict(stride=stride, padding=k // 2, dilation=1 + i % 2), act


def run(i):
    """Every op once, with the kernel record read after each; then a backward pass."""
    x, w_dw, w_pw, b, geo, act = workload(i)
    out, records = [], []
    with torch.no_grad():
        out.append(dse.depthwise(x, w_dw, None, activation=act, **geo))
        records.append(dse.last_kernels())
        out.append(dse.pointwise(out[0], w_pw, b, activation=act))
        records.append(dse.last_kernels())
    y = dse.separable(x, w_dw, w_pw, None, b, dw_activation=act, pw_activation="relu6", **geo)
    records.append(dse.last_kernels())
    out.append(y.detach())
    with torch.no_grad():  # the fused block: expand to 2c, depthwise, project back to c
        c, g = x.shape[1], torch.Generator().manual_seed(200 + i)
        w_e, w_p = torch.randn(2 * c, c, 1, 1, generator=g), torch.randn(c, 2 * c, 1, 1, generator=g)
        residual = geo["stride"] == 1 and geo["dilation"] == 1
        out.append(dse.inverted_residual(x, w_e, w_dw, w_p, None, None, b[:1].expand(c).contiguous(),
                                         expand_activation="relu6", dw_activation=act,
                                         residual=residual, **geo))
        records.append(dse.last_kernels())
        # squeeze-excite: c -> 3 -> c channels
        out.append(dse.squeeze_excite(x, w_e[:3], b[:3], w_p[:, :3], None, act,
                                      "hardsigmoid" if i % 2 else "sigmoid"))
        records.append(dse.last_kernels())
    out += torch.autograd.grad(y.square().sum(), (w_dw, w_pw, b))
    # The backward ops called directly, on the forward outputs as grad_out.
    k = w_dw.shape[2]
    geo_raw = ([geo["stride"]] * 2, [k // 2] * 4, [geo["dilation"]] * 2)
    gy_dw, gy_pw = out[0], out[1]
    with torch.no_grad():
        out.append(ops.depthwise_backward_input(gy_dw, w_dw, list(x.shape), *geo_raw))
        out.append(ops.depthwise_backward_weight(gy_dw, x, list(w_dw.shape), *geo_raw))
        out.append(ops.pointwise_backward_input(gy_pw, w_pw))
        out.append(ops.pointwise_backward_weight(gy_pw, gy_dw))
    records.append(dse.last_kernels())
    return out, records


@pytest.fixture(params=[1, 3], ids=["intra1", "intra3"])
def intra_op_threads(request):
    previous = torch.get_num_threads()
    torch.set_num_threads(request.param)
    try:
        yield request.param
    finally:
        torch.set_num_threads(previous)


def test_concurrent_calls_match_serial(isa, intra_op_threads):
    serial = [run(i) for i in range(THREADS)]
    start = threading.Barrier(THREADS)

    def worker(i):
        start.wait()
        return [run(i) for _ in range(ROUNDS)]

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(worker, range(THREADS)))

    for i, rounds in enumerate(results):
        expected_out, expected_records = serial[i]
        assert len(expected_records[0]) == 1 and len(expected_records[2]) == 2
        assert len(expected_records[3]) == 3 and len(expected_records[4]) == 2
        assert len(expected_records[5]) == 1
        assert len(expected_out) == 12
        for out, records in rounds:
            assert records == expected_records, f"thread {i}"
            for got, expected in zip(out, expected_out):
                assert got.shape == expected.shape and got.stride() == expected.stride()
                assert torch.equal(got, expected), f"thread {i}"
