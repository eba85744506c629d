"""The CUDA kernels on a GPU: every op vs ATen (on the GPU, float64) over the all-pairs grid
in float32, float16, bfloat16 and float64; gradients vs ATen; gradcheck (float64); opcheck;
torch.compile with CUDA graphs next to an nn.Linear (a launch off the current stream
breaks the capture); streams and devices; deterministic weight gradients. Without a GPU, or
with an extension built without CUDA, every test here skips and says why."""
import pytest
import torch
import torch.nn.functional as F

import dsconv_ext as dse
import test_gradcheck as gradcheck_cases
import test_opcheck as opcheck_cases
from _cases import AXES, build, check_forward, valid
from _ref import case_id, check_grads, pairwise_grid, to_device


def _skip_reason():
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    if not torch._C._dispatch_has_kernel_for_dispatch_key("dsconv::depthwise", "CUDA"):
        return "dsconv_ext was built without CUDA kernels (needs a CUDA torch and nvcc at build time)"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))

@pytest.fixture(autouse=True)
def exact_aten():
    """ATen's float32 convolutions and matmuls without TF32, so they are a float32 reference."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
CUDA_AXES = {op: {**axes, "dtype": DTYPES} for op, axes in AXES.items()}
GRIDS = {op: pairwise_grid(axes, valid, seed=11) for op, axes in CUDA_AXES.items()}


def on_gpu(tensors, kwargs):
    return [to_device(t, "cuda") for t in tensors], kwargs


def grid_params(op):
    return [pytest.param(i, case, id=f"{i}-{case_id(case)}") for i, case in enumerate(GRIDS[op])]


@pytest.mark.parametrize("op, index, case",
                         [pytest.param(op, *p.values, id=f"{op}-{p.id}")
                          for op in sorted(GRIDS) for p in grid_params(op)])
def test_forward_grid(op, index, case):
    tensors, kwargs = on_gpu(*build(op, case, torch.Generator().manual_seed(index)))
    y = check_forward(op, tensors, kwargs, isa=None)
    assert y.is_cuda


# Gradients (input, weights, biases) vs ATen's autograd in float64 on every fourth grid
# case: the backward kernels see every layout, geometry and dtype there too.
@pytest.mark.parametrize("op, index, case",
                         [pytest.param(op, *p.values, id=f"{op}-{p.id}")
                          for op in sorted(GRIDS) for p in grid_params(op)[::4]])
def test_grads_grid(op, index, case):
    gen = torch.Generator().manual_seed(index)
    tensors, kwargs = on_gpu(*build(op, case, gen))
    wrt = [i for i, t in enumerate(tensors) if t is not None]
    check_grads(op, tensors, kwargs, wrt, gen)


@pytest.mark.parametrize("op", ["depthwise", "pointwise", "separable"])
def test_gradcheck(op):
    for param in gradcheck_cases.params(op):
        gradcheck_cases.run_gradcheck(op, param.values[0], device="cuda")


@pytest.mark.parametrize("op, args", [pytest.param(op, args, id=f"{op}-{name}")
                                      for op, name, args in opcheck_cases.cases()])
def test_opcheck(op, args):
    torch.library.opcheck(getattr(torch.ops.dsconv, op), tuple(to_device(a, "cuda") for a in args))


def _block(gen, dtype=torch.float32):
    """A separable block and an nn.Linear on the GPU."""
    w_dw = torch.randn(8, 1, 3, 3, generator=gen).to("cuda", dtype)
    w_pw = torch.randn(16, 8, 1, 1, generator=gen).to("cuda", dtype)
    linear = torch.nn.Linear(16 * 7 * 7, 10).to("cuda", dtype)

    def fn(x):
        y = dse.separable(x, w_dw, w_pw, stride=2, padding=1, dw_activation="relu6",
                          pw_activation="hardswish")
        return linear(dse.depthwise(y, torch.ones(16, 1, 1, 1, device="cuda", dtype=dtype)).flatten(1))

    def reference(x):
        y = F.conv2d(x, w_dw, stride=2, padding=1, groups=8).clamp(0, 6)
        return linear(F.hardswish(F.conv2d(y, w_pw)).flatten(1))

    return fn, reference


def test_compile_reduce_overhead_next_to_linear():
    gen = torch.Generator().manual_seed(0)
    fn, reference = _block(gen)
    compiled = torch.compile(fn, mode="reduce-overhead")
    for step in range(4):  # warm-up runs, then CUDA graph capture and replays
        x = torch.randn(2, 8, 14, 14, generator=gen).cuda()
        torch.testing.assert_close(compiled(x), reference(x), rtol=1e-4, atol=1e-4,
                                   msg=lambda m: f"step {step}: {m}")


def test_side_stream():
    """Work queued on a side stream is seen by the op called on that stream (the op runs on
    the current stream, so it is ordered after the producer)."""
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(8, 32, 56, 56, generator=gen).cuda()
    w = torch.randn(32, 1, 3, 3, generator=gen).cuda()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(10_000_000)  # the producer is slow: a wrong-stream read would race it
        x = x0 * 2
        y = dse.depthwise(x, w, padding=1)
    torch.cuda.current_stream().wait_stream(side)
    torch.testing.assert_close(y, F.conv2d(x0 * 2, w, padding=1, groups=32), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_tensors_on_another_device():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 9, 9, generator=gen).to("cuda:1")
    w = torch.randn(4, 1, 3, 3, generator=gen).to("cuda:1")
    w_pw = torch.randn(5, 4, 1, 1, generator=gen).to("cuda:1")
    with torch.cuda.device(0):
        y = dse.separable(x, w, w_pw, padding=1)
    assert y.device == x.device
    torch.testing.assert_close(y, F.conv2d(F.conv2d(x, w, padding=1, groups=4), w_pw))


def test_mixed_devices_rejected():
    x = torch.randn(1, 3, 5, 5, device="cuda")
    with pytest.raises(RuntimeError, match="weight"):
        dse.depthwise(x, torch.randn(3, 1, 3, 3))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_weight_gradients_deterministic(layout):
    gen = torch.Generator().manual_seed(3)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(16, 48, 28, 28, generator=gen).cuda().contiguous(memory_format=fmt)
    gy = torch.randn(16, 48, 28, 28, generator=gen).cuda().contiguous(memory_format=fmt)
    gy_pw = torch.randn(16, 24, 28, 28, generator=gen).cuda().contiguous(memory_format=fmt)
    ops = torch.ops.dsconv
    for _ in range(2):
        runs = [(ops.depthwise_backward_weight(gy, x, [48, 1, 3, 3], [1, 1], [1, 1, 1, 1], [1, 1]),
                 ops.pointwise_backward_weight(gy_pw, x)) for _ in range(3)]
        for dw, pw in runs[1:]:
            assert torch.equal(dw, runs[0][0]) and torch.equal(pw, runs[0][1])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_mobilenet_layer(dtype):
    """A MobileNet-sized layer (the int32 fast paths, 3x3 s1 and s2) in 16-bit types."""
    gen = torch.Generator().manual_seed(4)
    for stride in (1, 2):
        case = dict(kernel=3, stride=stride, padding=1, dilation=1, multiplier=1, batch=2,
                    hw=(56, 56), channels=64, layout="channels_last", weights="contiguous",
                    dtype=dtype, out_channels=128, dw_activation="relu6", pw_activation=None,
                    dw_bias=True, pw_bias=True)
        check_forward("separable", *on_gpu(*build("separable", case, gen)), isa=None)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_converter_takes_half_convs_on_cuda(dtype):
    from dsconv_ext._recognize import conv_kind
    assert conv_kind(torch.nn.Conv2d(4, 4, 3, groups=4).to("cuda", dtype)) == ("depthwise", "")


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_inverted_residual_on_cuda(layout):
    """The block on CUDA (the chain of the CUDA ops) matches the CPU op, forward and backward."""
    from test_inverted_residual import make_block
    tensors, kwargs = make_block(torch.Generator().manual_seed(3), batch=2, cin=8, mid=24, cout=8,
                                 hw=(13, 11), layout=layout, dtype=torch.float64)
    cpu = [t.clone().requires_grad_() if t is not None else None for t in tensors]
    gpu = [to_device(t, "cuda").requires_grad_() if t is not None else None for t in tensors]
    y_cpu, y_gpu = dse.inverted_residual(*cpu, **kwargs), dse.inverted_residual(*gpu, **kwargs)
    torch.testing.assert_close(y_gpu.cpu(), y_cpu)
    assert y_gpu.stride() == y_cpu.stride()
    y_cpu.sum().backward()
    y_gpu.sum().backward()
    for a, b in zip(cpu, gpu):
        if a is not None:
            torch.testing.assert_close(b.grad.cpu(), a.grad)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_squeeze_excite_on_cuda(layout):
    """squeeze_excite on CUDA (the chain of ATen / dsconv CUDA ops) matches the CPU op, forward
    and backward."""
    from test_squeeze_excite import make
    tensors = make(torch.Generator().manual_seed(3), 2, 24, 6, 9, 7, layout=layout,
                   dtype=torch.float64)
    cpu = [t.clone().requires_grad_() for t in tensors]
    gpu = [to_device(t, "cuda").requires_grad_() for t in tensors]
    y_cpu = dse.squeeze_excite(*cpu, "hardswish", "sigmoid")
    y_gpu = dse.squeeze_excite(*gpu, "hardswish", "sigmoid")
    torch.testing.assert_close(y_gpu.cpu(), y_cpu)
    assert y_gpu.stride() == y_cpu.stride()
    y_cpu.sum().backward()
    y_gpu.sum().backward()
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b.grad.cpu(), a.grad)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_pointwise_residual_on_cuda(layout):
    """pointwise with a residual on CUDA (the kernel, then ATen's add) matches the CPU op,
    forward and backward."""
    from test_pointwise_residual import _case
    tensors = _case(torch.Generator().manual_seed(3), (2, 12, 10, 5, 7), torch.float64, layout,
                    "nchw")
    cpu = [t.clone().requires_grad_() for t in tensors]
    gpu = [to_device(t, "cuda").requires_grad_() for t in tensors]
    y_cpu = dse.pointwise(cpu[0], cpu[1], cpu[2], "relu6", cpu[3])
    y_gpu = dse.pointwise(gpu[0], gpu[1], gpu[2], "relu6", gpu[3])
    torch.testing.assert_close(y_gpu.cpu(), y_cpu)
    assert y_gpu.stride() == y_cpu.stride()
    y_cpu.square().sum().backward()
    y_gpu.square().sum().backward()
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b.grad.cpu(), a.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_global_avg_pool_on_cuda(layout, dtype):
    """global_avg_pool on CUDA (ATen's mean) matches ATen's adaptive_avg_pool2d, in the op's
    memory format, forward and backward."""
    x = torch.randn(2, 40, 7, 9, device="cuda", dtype=dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    y = dse.global_avg_pool(x)
    want = F.adaptive_avg_pool2d(x, 1)
    torch.testing.assert_close(y, want)
    assert y.is_contiguous(memory_format=torch.channels_last if layout == "channels_last"
                           else torch.contiguous_format)
    g = torch.randn_like(y)
    torch.testing.assert_close(torch.autograd.grad(y, x, g)[0], torch.autograd.grad(want, x, g)[0])
