"""Every registered kernel of every kernel set this CPU runs, driven through the ops with
shapes chosen so dispatch must pick exactly that kernel (asserted), over channel counts
that are not multiples of the vector width, widths 1..17, odd heights, stride 2 on odd
sizes and every activation (forward), padding and batch > 1 (backward), against ATen. The
cases come from the kernel registry (csrc/cpu/kernels.def), so a new kernel is covered by
adding its line."""
import itertools

import pytest
import torch
import torch.nn.functional as F

import dsconv_ext as dse
from _cases import check_forward
from _ref import ACTIVATIONS, assert_within_bound, randn, with_layout

CHANNELS = (1, 3, 7, 15, 17, 33)
WIDTHS = tuple(range(1, 18))
HEIGHTS = (5, 7)

# Kernel sizes that no specialized kernel claims, for the generic entries.
GENERIC_KERNELS = ((2, 3), (3, 1), (7, 7))


def registry_cases():
    supported = set(dse.supported_cpu_capabilities())
    for entry in dse._C.kernel_registry():
        if entry["isa"] in supported:
            yield pytest.param(entry, id=entry["name"])


def _choices(fixed, options):
    return (fixed,) if fixed else options


def dw_geometries(entry):
    """(kernel, stride, dilation, multiplier) tuples the entry must serve."""
    kh, kw = entry["kernel"]
    kernels = [(kh, kw)] if kh else list(GENERIC_KERNELS)
    sh, sw = entry["stride"]
    strides = list(itertools.product(_choices(sh, (1, 2)), _choices(sw, (1, 2))))
    dilations = _choices(entry["dilation"], (1, 2))
    multipliers = _choices(entry["multiplier"], (1, 2))
    return list(itertools.product(kernels, strides, dilations, multipliers))


def sweep():
    """(i, channels, width): every width three times, channels cycling (each 8-9 times)."""
    for i, w in enumerate(WIDTHS * 3):
        yield i, CHANNELS[i % len(CHANNELS)], w


def dw_cases(entry):
    """Sweeps widths and channels, cycling the geometry, height, activation and bias so
    each value of each recurs across the sweep."""
    geometries = dw_geometries(entry)
    for i, c, w in sweep():
        kernel, stride, dilation, multiplier = geometries[i % len(geometries)]
        pad = tuple(dilation * (k - 1) // 2 for k in kernel)
        yield dict(channels=c, height=HEIGHTS[i % len(HEIGHTS)], width=w, kernel=kernel,
                   stride=stride, padding=pad, dilation=dilation, multiplier=multiplier,
                   activation=ACTIVATIONS[i % len(ACTIVATIONS)], bias=i % 3 != 0)


def fits(case):
    return all(size + 2 * p >= case["dilation"] * (k - 1) + 1
               for size, p, k in zip((case["height"], case["width"]), case["padding"], case["kernel"]))


def dw_backward_cases(entry):
    """Like dw_cases, also cycling the padding (none, half and the whole span of the kernel)
    and the batch. NCHW input-gradient cases avoid stride 1 with multiplier 1, which the ops
    layer runs as a forward convolution with the flipped kernel (NHWC does so only for
    images of 40x40 pixels and more, larger than these)."""
    geometries = dw_geometries(entry)
    if entry["op"] == "dw_backward_input" and entry["layout"] != "nhwc":
        geometries = [g for g in geometries if g[1] != (1, 1) or g[3] > 1]
    for i, c, w in sweep():
        kernel, stride, dilation, multiplier = geometries[i % len(geometries)]
        pad = tuple(dilation * (k - 1) * (i % 3) // 2 for k in kernel)
        yield dict(channels=c, height=HEIGHTS[i % len(HEIGHTS)], width=w, kernel=kernel,
                   stride=stride, padding=pad, dilation=dilation, multiplier=multiplier,
                   batch=1 + i % 3)


def dw_backward_reference(op, x, w, gy, geometry):
    """ATen's gradient (float64) of one backward op, and the same sum over absolute values
    (the per-element error scale)."""
    def grad(x, w, gy):
        x, w = x.double().requires_grad_(), w.double().requires_grad_()
        y = torch.nn.functional.conv2d(x, w, None, groups=x.shape[1], **geometry)
        return torch.autograd.grad(y, x if op == "dw_backward_input" else w, gy.double())[0]
    return grad(x, w, gy), grad(x.abs(), w.abs(), gy.abs())


def check_dw_backward(entry, case, gen, dtype, layout):
    """One backward case through the op; returns False where the layout cannot be expressed."""
    c, m, n = case["channels"], case["multiplier"], case["batch"]
    x = with_layout(randn(gen, n, c, case["height"], case["width"], dtype=dtype), layout)
    w = randn(gen, c * m, 1, *case["kernel"], dtype=dtype)
    geometry = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"])
    y_hw = [(size + 2 * p - case["dilation"] * (k - 1) - 1) // s + 1 for size, p, k, s in
            zip((case["height"], case["width"]), case["padding"], case["kernel"], case["stride"])]
    gy = with_layout(randn(gen, n, c * m, *y_hw, dtype=dtype), layout)
    if layout == "channels_last" and (x.is_contiguous() or gy.is_contiguous()):
        return False  # also NCHW-contiguous (C or H*W is 1): computed as NCHW
    args = (list(geometry["stride"]), [p for p in case["padding"] for _ in (0, 1)],
            [geometry["dilation"]] * 2)
    if entry["op"] == "dw_backward_input":
        got = torch.ops.dsconv.depthwise_backward_input(gy, w, list(x.shape), *args)
        terms = m * w.shape[2] * w.shape[3]
    else:
        got = torch.ops.dsconv.depthwise_backward_weight(gy, x, list(w.shape), *args)
        terms = n * gy.shape[2] * gy.shape[3]
    assert dse.last_kernels() == [entry["name"]], (case, dse.last_kernels())
    expected, magnitude = dw_backward_reference(entry["op"], x, w, gy, geometry)
    assert_within_bound(got, expected, magnitude, terms, what=f"{entry['op']} {case}")
    return True


@pytest.mark.parametrize("entry", list(registry_cases()))
def test_registered_kernel(entry, gen):
    previous = dse.cpu_capability()
    dse.set_cpu_capability(entry["isa"])
    dtype = getattr(torch, entry["dtype"])
    layout = "channels_last" if entry["layout"] == "nhwc" else "nchw"
    checked = 0
    try:
        if entry["op"] == "dw_forward":
            for case in dw_cases(entry):
                if not fits(case):
                    continue
                c, m = case["channels"], case["multiplier"]
                x = with_layout(randn(gen, 2, c, case["height"], case["width"], dtype=dtype), layout)
                if layout == "channels_last" and x.is_contiguous():
                    continue  # also NCHW-contiguous (C or H*W is 1): computed as NCHW
                w = randn(gen, c * m, 1, *case["kernel"], dtype=dtype)
                b = randn(gen, c * m, dtype=dtype) if case["bias"] else None
                kwargs = dict(stride=case["stride"], padding=case["padding"],
                              dilation=case["dilation"], activation=case["activation"])
                check_forward("depthwise", [x, w, b], kwargs, dse.cpu_capability())
                assert dse.last_kernels() == [entry["name"]], (case, dse.last_kernels())
                checked += 1
        elif entry["op"] in ("dw_backward_input", "dw_backward_weight"):
            for case in dw_backward_cases(entry):
                if fits(case):
                    checked += check_dw_backward(entry, case, gen, dtype, layout)
        elif entry["op"] == "pw_backward_weight":
            for i, c, w_ in sweep():
                co = (1, 5, 16, 17, 40)[i % 5]
                x = with_layout(randn(gen, 1 + i % 3, c, HEIGHTS[i % 2], w_, dtype=dtype),
                                ("nchw", "channels_last")[i % 2])
                gy = randn(gen, x.shape[0], co, x.shape[2], x.shape[3], dtype=dtype)
                gw = torch.ops.dsconv.pointwise_backward_weight(gy, x)
                assert dse.last_kernels() == [entry["name"]], dse.last_kernels()
                expected = torch.einsum("nohw,nihw->oi", gy.double(), x.double())[..., None, None]
                terms = x.shape[0] * x.shape[2] * x.shape[3]
                torch.testing.assert_close(gw.double(), expected, rtol=0,
                                           atol=4 * terms * torch.finfo(dtype).eps * 16)
                checked += 1
        elif entry["op"] == "conv_forward":
            for case in dw_cases(entry):  # the geometry, widths, activations; C_in 1..8
                if not fits(case):
                    continue
                cin, cout = 1 + case["channels"] % 8, (1, 5, 16, 17, 40)[case["width"] % 5]
                x = with_layout(randn(gen, 2, cin, case["height"], case["width"], dtype=dtype), layout)
                if layout == "channels_last" and x.is_contiguous():
                    x = with_layout(randn(gen, 2, cin + 1, case["height"], case["width"] + 1, dtype=dtype),
                                    layout)
                w = randn(gen, cout, x.shape[1], *case["kernel"], dtype=dtype)
                b = randn(gen, cout, dtype=dtype) if case["bias"] else None
                kwargs = dict(stride=case["stride"], padding=case["padding"],
                              dilation=case["dilation"], activation=case["activation"])
                y = dse.conv2d(x, w, b, **kwargs)
                assert dse.last_kernels() == [entry["name"]], (case, dse.last_kernels())
                act = {None: lambda t: t, "relu": F.relu, "relu6": F.relu6,
                       "hardswish": F.hardswish}[case["activation"]]
                geometry = {k: kwargs[k] for k in ("stride", "padding", "dilation")}
                expected = act(F.conv2d(x.double(), w.double(), None if b is None else b.double(),
                                        **geometry))
                magnitude = F.conv2d(x.double().abs(), w.double().abs(),
                                     None if b is None else b.double().abs(), **geometry)
                assert_within_bound(y, expected, magnitude, x.shape[1] * w.shape[2] * w.shape[3])
                checked += 1
        elif entry["op"] == "pw_gemv":
            # At most 4 pixels in all: batches of 1x1 images (either layout), NHWC images.
            for i, c, w_ in sweep():
                co = (1, 5, 16, 17, 40)[i % 5]
                n, h, wd = ((1, 1, 1), (3, 1, 1), (2, 1, 2), (1, 2, 2), (4, 1, 1))[i % 5]
                cin = c + 8 * w_  # 9..169: every remainder modulo the vector widths
                x_layout = ("nchw", "channels_last")[i % 2] if h * wd == 1 else "channels_last"
                x = with_layout(randn(gen, n, cin, h, wd, dtype=dtype), x_layout)
                w = randn(gen, co, cin, 1, 1, dtype=dtype)
                b = randn(gen, co, dtype=dtype) if i % 2 else None
                kwargs = dict(activation=ACTIVATIONS[i % len(ACTIVATIONS)])
                check_forward("pointwise", [x, w, b], kwargs, dse.cpu_capability())
                assert dse.last_kernels() == [entry["name"]], dse.last_kernels()
                checked += 1
        else:
            for i, c, w_ in sweep():
                co = (1, 5, 16, 17, 40)[i % 5]
                x = with_layout(randn(gen, 2, c, HEIGHTS[i % 2], w_, dtype=dtype), layout)
                if layout == "channels_last" and x.is_contiguous():
                    continue
                w = randn(gen, co, c, 1, 1, dtype=dtype)
                b = randn(gen, co, dtype=dtype) if i % 2 else None
                kwargs = dict(activation=ACTIVATIONS[i % len(ACTIVATIONS)])
                check_forward("pointwise", [x, w, b], kwargs, dse.cpu_capability())
                assert dse.last_kernels() == [entry["name"]], dse.last_kernels()
                checked += 1
    finally:
        dse.set_cpu_capability(previous)
    assert checked >= 25, f"only {checked} cases reached {entry['name']}"


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("stride", [1, 2])
def test_dw_backward_same_bits_for_any_thread_count(isa, layout, stride):
    """The weight gradient reduces over batch and pixels; threads split channels, so every
    thread count gives the same bits (as does the input gradient, split over rows)."""
    gen = torch.Generator().manual_seed(11)
    x = with_layout(torch.randn(3, 37, 23, 21, generator=gen), layout)
    w = torch.randn(74, 1, 3, 3, generator=gen)
    y_hw = ((23 + 2 - 3) // stride + 1, (21 + 2 - 3) // stride + 1)
    gy = with_layout(torch.randn(3, 74, *y_hw, generator=gen), layout)
    args = ([stride, stride], [1, 1, 1, 1], [1, 1])
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3, 4):
            torch.set_num_threads(threads)
            results.append((torch.ops.dsconv.depthwise_backward_weight(gy, x, list(w.shape), *args),
                            torch.ops.dsconv.depthwise_backward_input(gy, w, list(x.shape), *args)))
    finally:
        torch.set_num_threads(previous)
    for gw, gx in results[1:]:
        assert torch.equal(gw, results[0][0]) and torch.equal(gx, results[0][1])
