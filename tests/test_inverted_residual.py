"""dsconv_ext.inverted_residual (the fused MobileNetV2/V3 block) against the unfused ATen
block in float64: shapes that cut the block into many row tiles (so tiles share halo rows),
every stage optional, every layout, kernel set and dtype; gradients, opcheck, compile,
errors, and bitwise-equal results at any thread count."""
import itertools
import math
import random

import pytest
import torch

import dsconv_ext as dse
from _ref import (ACTIVATIONS, _native_conv, assert_format, assert_kernels, assert_within_bound,
                  ref_depthwise, ref_pointwise, randn, with_layout)

ops = torch.ops.dsconv


def ref_block(x, ew, dw, pw, eb=None, db=None, pb=None, stride=1, padding=0, dilation=1,
              expand_activation=None, dw_activation=None, project_activation=None,
              residual=False):
    e = ref_pointwise(x, ew, eb, expand_activation) if ew is not None else x
    y = ref_depthwise(e, dw, db, stride, padding, dilation, dw_activation)
    if pw is not None:
        y = ref_pointwise(y, pw, pb, project_activation)
    return y + x if residual else y


def _wide(t, f=lambda t: t):
    return f(t.detach().double()) if isinstance(t, torch.Tensor) else t


def check_block(tensors, kwargs, isa=None):
    """The fused op matches ATen within the float error bound of its three chained sums."""
    y = dse.inverted_residual(*tensors, **kwargs)
    x, ew, dw, pw = tensors[:4]
    assert y.dtype == x.dtype
    assert_format(y, x)
    if isa is not None and y.numel():
        assert_kernels(isa, x.dtype, 1 + (ew is not None) + (pw is not None))
    linear = {k: v for k, v in kwargs.items() if not k.endswith("activation")}
    with _native_conv():
        expected = ref_block(*[_wide(t) for t in tensors], **kwargs)
        magnitude = ref_block(*[_wide(t, torch.abs) for t in tensors], **linear)
    terms = (ew.shape[1] if ew is not None else 0) + dw.shape[2] * dw.shape[3] + \
        (pw.shape[1] if pw is not None else 0)
    assert_within_bound(y, expected, magnitude, terms)
    return y


def make_block(gen, *, batch=1, cin=8, mid=24, cout=8, hw=(9, 9), kernel=3, stride=1,
               padding="same", dilation=1, multiplier=1, expand=True, project=True,
               biases=True, acts=("relu6", "relu6", None), residual=None, layout="nchw",
               dtype=torch.float32):
    """(tensors, kwargs) of one block; residual defaults to 'when the shapes allow'."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    if not expand:
        mid = cin
    x = with_layout(randn(gen, batch, cin, *hw, dtype=dtype), layout)
    ew = randn(gen, mid, cin, 1, 1, dtype=dtype, scale=3 / math.sqrt(cin)) if expand else None
    dw = randn(gen, mid * multiplier, 1, kh, kw, dtype=dtype, scale=3 / math.sqrt(kh * kw))
    pw = randn(gen, cout, mid * multiplier, 1, 1, dtype=dtype,
               scale=3 / math.sqrt(mid * multiplier)) if project else None

    def bias(n, given):
        return randn(gen, n, dtype=dtype, scale=1.5) if biases and given else None

    tensors = [x, ew, dw, pw, bias(mid, expand), bias(mid * multiplier, True),
               bias(cout, project)]
    if padding == "same" and stride != 1:
        padding = ((kh - 1) * dilation // 2, (kw - 1) * dilation // 2)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation,
                  expand_activation=acts[0] if expand else None, dw_activation=acts[1],
                  project_activation=acts[2] if project else None)
    out_c = cout if project else mid * multiplier
    if residual is None:
        y = dse.inverted_residual(*tensors, **kwargs)
        residual = tuple(y.shape) == tuple(x.shape)
    kwargs["residual"] = residual and out_c == cin
    return tensors, kwargs


# The V2 / V3 / EfficientNet block shapes, scaled down, plus odd ones. Heights and widths
# with wide expanded rows give many row tiles per image (the row buffer holds 192 KiB).
BLOCKS = [
    dict(cin=16, mid=96, cout=24, hw=(40, 40), stride=2),
    dict(cin=24, mid=144, cout=24, hw=(34, 29)),
    dict(cin=24, mid=144, cout=32, hw=(29, 34), stride=2),
    dict(cin=40, mid=240, cout=40, hw=(21, 23), kernel=5),
    dict(cin=40, mid=200, cout=80, hw=(23, 21), kernel=5, stride=2),
    dict(cin=32, mid=32, cout=16, hw=(37, 37), expand=False),
    dict(cin=16, mid=16, cout=16, hw=(30, 31), expand=False),
    dict(cin=72, mid=200, cout=72, hw=(7, 7), project=False),
    dict(cin=24, mid=72, cout=24, hw=(26, 26), kernel=5, stride=2, project=False),
    dict(cin=7, mid=17, cout=7, hw=(5, 13), kernel=(3, 1)),
    dict(cin=5, mid=9, cout=3, hw=(11, 6), kernel=2, padding="same", dilation=2),
    dict(cin=6, mid=10, cout=6, hw=(12, 9), kernel=3, padding=2, dilation=2),
    dict(cin=3, mid=8, cout=5, hw=(13, 8), kernel=3, padding=0, stride=(2, 1)),
    dict(cin=4, mid=8, cout=4, hw=(9, 9), multiplier=2),
    dict(cin=8, mid=24, cout=8, hw=(1, 7)),
    dict(cin=8, mid=24, cout=8, hw=(6, 1), kernel=5),
    dict(cin=3, mid=12, cout=3, hw=(4, 4), padding=4),  # tiles whose window is all padding
    dict(cin=1, mid=1, cout=1, hw=(5, 5)),
]


def _block_id(b):
    return "-".join(f"{k}{v}" for k, v in b.items())


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("block", BLOCKS, ids=_block_id)
def test_matches_aten(isa, gen, block, layout):
    tensors, kwargs = make_block(gen, layout=layout, **block)
    check_block(tensors, kwargs, isa)


@pytest.mark.parametrize("acts", list(itertools.product(ACTIVATIONS, ACTIVATIONS, ACTIVATIONS))[::5])
def test_activations(isa, gen, acts):
    tensors, kwargs = make_block(gen, cin=8, mid=20, cout=8, hw=(11, 10), acts=acts,
                                 layout="channels_last")
    check_block(tensors, kwargs, isa)


@pytest.mark.parametrize("layout", ["strided", "transposed", "cl_sliced"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layouts_dtypes_batch(isa, gen, layout, dtype):
    tensors, kwargs = make_block(gen, batch=3, cin=6, mid=30, cout=6, hw=(17, 12),
                                 layout=layout, dtype=dtype)
    check_block(tensors, kwargs, isa)


def test_random_blocks(isa):
    rng = random.Random(7)
    gen = torch.Generator().manual_seed(7)
    for _ in range(40):
        kernel = rng.choice([1, 2, 3, 5, (3, 5), (1, 3)])
        stride = rng.choice([1, 2])
        block = dict(batch=rng.choice([1, 2]), cin=rng.randint(1, 20), mid=rng.randint(1, 70),
                     cout=rng.randint(1, 20), hw=(rng.randint(1, 30), rng.randint(1, 30)),
                     kernel=kernel, stride=stride, padding=rng.choice([0, 1, 2, "same"]),
                     dilation=rng.choice([1, 1, 2]), expand=rng.random() < 0.8,
                     project=rng.random() < 0.8, biases=rng.random() < 0.7,
                     acts=tuple(rng.choice(ACTIVATIONS) for _ in range(3)),
                     layout=rng.choice(["nchw", "channels_last"]))
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        d, (h, w) = block["dilation"], block["hw"]
        pad = block["padding"]
        ph, pw = ((kh - 1) * d // 2, (kw - 1) * d // 2) if pad == "same" else (pad, pad)
        if h + 2 * ph < d * (kh - 1) + 1 or w + 2 * pw < d * (kw - 1) + 1:
            continue
        tensors, kwargs = make_block(gen, **block)
        check_block(tensors, kwargs, isa)


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", [
    dict(batch=2, hw=(30, 27)),
    dict(batch=1, hw=(30, 27)),
    # Too few rows for row tiles on 2+ threads: the stages run one after the other.
    dict(batch=1, hw=(7, 7)),
    dict(batch=1, hw=(14, 13), stride=2, project=False),
    # No project stage, one image split between threads: stages too on 2+ threads.
    dict(batch=1, hw=(28, 27), project=False),
], ids=["tiles", "tiles-one-image", "short", "short-no-project", "no-project"])
def test_any_thread_count_gives_the_same_bits(gen, layout, threads, shape):
    tensors, kwargs = make_block(gen, cin=24, mid=144, cout=24, layout=layout, **shape)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = dse.inverted_residual(*tensors, **kwargs)
        torch.set_num_threads(threads)
        many = check_block(tensors, kwargs)
        stages = (tensors[1] is not None) + 1 + (tensors[3] is not None)
        assert len(dse.last_kernels()) == stages, dse.last_kernels()
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(one, many)


def test_stages_are_the_other_ops(gen):
    """Without residual, the block equals pointwise -> separable of this library bitwise
    (the same kernels, the same sums) in channels_last."""
    tensors, kwargs = make_block(gen, cin=16, mid=96, cout=24, hw=(20, 20), stride=2,
                                 layout="channels_last")
    x, ew, dw, pw, eb, db, pb = tensors
    y = dse.inverted_residual(*tensors, **kwargs)
    e = dse.pointwise(x, ew, eb, kwargs["expand_activation"])
    z = dse.separable(e, dw, pw, db, pb, kwargs["stride"], kwargs["padding"], kwargs["dilation"],
                      kwargs["dw_activation"], kwargs["project_activation"])
    assert torch.equal(y, z)


def test_empty_and_degenerate(gen):
    x = torch.randn(0, 4, 5, 5)
    ew, dw, pw = torch.randn(8, 4, 1, 1), torch.randn(8, 1, 3, 3), torch.randn(4, 8, 1, 1)
    assert dse.inverted_residual(x, ew, dw, pw, padding=1, residual=True).shape == (0, 4, 5, 5)
    # No input pixels, but padding makes output pixels: bias through the chain, as ATen.
    x = torch.randn(1, 4, 0, 3)
    eb, db = torch.randn(8), torch.randn(8)
    y = dse.inverted_residual(x, ew, dw, pw, eb, db, padding=2, dw_activation="relu")
    assert y.shape == (1, 4, 2, 5)
    mid = torch.relu(db)[None, :, None, None].expand(1, 8, 2, 5)  # depthwise of all padding
    torch.testing.assert_close(y, ref_pointwise(mid, pw))


def test_gradients_match_the_unfused_block(gen):
    tensors, kwargs = make_block(gen, batch=2, cin=4, mid=12, cout=4, hw=(7, 6),
                                 acts=("relu6", "hardswish", None), dtype=torch.float64,
                                 layout="channels_last")
    assert kwargs["residual"]
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    ref_leaves = [t.detach().clone().requires_grad_() for t in tensors]
    g = torch.randn(dse.inverted_residual(*tensors, **kwargs).shape, dtype=torch.float64,
                    generator=gen)
    dse.inverted_residual(*leaves, **kwargs).backward(g)
    with _native_conv():
        ref_block(*ref_leaves, **kwargs).backward(g)
    for t, r in zip(leaves, ref_leaves):
        torch.testing.assert_close(t.grad, r.grad)


@pytest.mark.parametrize("expand,project", [(True, True), (False, True), (True, False)])
def test_gradcheck(gen, expand, project):
    tensors, kwargs = make_block(gen, cin=2, mid=4, cout=2, hw=(5, 4), expand=expand,
                                 project=project, acts=(None, "hardswish", None),
                                 dtype=torch.float64)
    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in tensors]
    wrt = [i for i, t in enumerate(leaves) if t is not None]

    def fn(*diff):
        args = list(leaves)
        for i, t in zip(wrt, diff):
            args[i] = t
        return dse.inverted_residual(*args, **kwargs)

    assert torch.autograd.gradcheck(fn, tuple(leaves[i] for i in wrt))
    assert torch.autograd.gradgradcheck(fn, tuple(leaves[i] for i in wrt))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_opcheck(gen, layout):
    tensors, kwargs = make_block(gen, cin=4, mid=8, cout=4, hw=(6, 5), layout=layout)
    kwargs["padding"] = (1, 1, 1, 1)
    args = tuple(tensors) + ((1, 1), (1, 1, 1, 1), (1, 1), kwargs["expand_activation"],
                             kwargs["dw_activation"], kwargs["project_activation"],
                             kwargs["residual"])
    torch.library.opcheck(ops.inverted_residual.default, args)
    grad_args = tuple(t.detach().double().requires_grad_() if t is not None else None
                      for t in tensors) + args[7:]
    torch.library.opcheck(ops.inverted_residual.default, grad_args)


def test_compile(gen):
    tensors, kwargs = make_block(gen, cin=8, mid=24, cout=8, hw=(10, 10), layout="channels_last")
    torch._dynamo.reset()
    fn = torch.compile(lambda *t: dse.inverted_residual(*t, **kwargs), fullgraph=True)
    torch.testing.assert_close(fn(*tensors), dse.inverted_residual(*tensors, **kwargs))


@pytest.mark.parametrize("bad,match", [
    (dict(residual_shape=True), "residual=True adds x"),
    (dict(expand_bias_alone=True), "need an expand_weight"),
    (dict(project_act_alone=True), "need a project_weight"),
    (dict(dw_channels=5), "dw_weight.shape\\[0\\] must be a positive multiple"),
    (dict(project_in=7), "project_weight.shape\\[1\\] must equal"),
    (dict(expand_in=3), "expand_weight.shape\\[1\\] must equal"),
    (dict(activation="gelu"), "dw_activation 'gelu' is not supported"),
    (dict(dtype=torch.float64), "dtype"),
])
def test_errors(bad, match):
    x = torch.randn(1, 4, 6, 6)
    ew, dw, pw = torch.randn(8, 4, 1, 1), torch.randn(8, 1, 3, 3), torch.randn(4, 8, 1, 1)
    kw = dict(padding=1)
    if bad.get("residual_shape"):
        pw, kw["residual"] = torch.randn(5, 8, 1, 1), True
    if bad.get("expand_bias_alone"):
        ew, dw, pw = None, torch.randn(4, 1, 3, 3), torch.randn(4, 4, 1, 1)
        kw["expand_bias"] = torch.randn(4)
    if bad.get("project_act_alone"):
        pw, kw["project_activation"] = None, "relu"
    if "dw_channels" in bad:
        dw = torch.randn(bad["dw_channels"], 1, 3, 3)
    if "project_in" in bad:
        pw = torch.randn(4, bad["project_in"], 1, 1)
    if "expand_in" in bad:
        ew = torch.randn(8, bad["expand_in"], 1, 1)
    if "activation" in bad:
        kw["dw_activation"] = bad["activation"]
    if "dtype" in bad:
        dw = dw.to(bad["dtype"])
    for grad in (False, True):  # the fused kernel and the differentiable chain check alike
        with pytest.raises((RuntimeError, ValueError), match=match):
            dse.inverted_residual(x.clone().requires_grad_(grad), ew, dw, pw, **kw)


@pytest.mark.parametrize("expanded,stride", [(24, 1), (8, 1), (24, 2)])
def test_module_matches_unfused_block(expanded, stride):
    torch.manual_seed(0)
    block = dse.nn.InvertedResidual(8, 8, expanded, kernel_size=3, stride=stride,
                                    activation="hardswish").eval()
    assert block.residual == (stride == 1)
    assert (block.expand is None) == (expanded == 8)
    x = torch.randn(2, 8, 11, 9).contiguous(memory_format=torch.channels_last)
    e, d, p = block.expand, block.depthwise, block.project
    with torch.no_grad():
        y = block(x)
        ref = ref_block(x, e.weight if e else None, d.weight, p.weight, e.bias if e else None,
                        d.bias, p.bias, stride, 1, 1, "hardswish" if e else None, "hardswish",
                        None, block.residual)
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4)
    assert y.is_contiguous(memory_format=torch.channels_last)
    # Parameters replaced by a parametrization are read through the module, not its dict.
    torch.nn.utils.parametrize.register_parametrization(d, "weight", _Double())
    with torch.no_grad():
        w = d.parametrizations.weight.original
        doubled = dse.inverted_residual(x, e.weight if e else None, 2 * w, p.weight,
                                        e.bias if e else None, d.bias, p.bias, stride, 1,
                                        expand_activation="hardswish" if e else None,
                                        dw_activation="hardswish", residual=block.residual)
        torch.testing.assert_close(block(x), doubled)
        assert not torch.allclose(doubled, y)


class _Double(torch.nn.Module):
    def forward(self, w):
        return 2 * w
