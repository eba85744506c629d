"""What the tests compare against, and how closely.

The oracle is ATen: `F.conv2d(..., groups=C)` (depthwise), `F.conv2d` with a 1x1 weight
(pointwise) and the two chained (separable), each followed by the activation, evaluated in
float64 from the same (exactly widened) inputs.

Tolerances are error bounds, not guesses: a sum of L products computed in a floating type
with unit roundoff u in any order (with or without FMA) is off by at most about L*u times the
sum of the absolute values of its terms. That absolute sum is the same op evaluated on
|x|, |w|, |b| without activation (`magnitude`), so each element gets its own bound
`SAFETY * u * (L + 4) * magnitude + 4 * u * |expected|` (the last term: activation and final
rounding). SAFETY covers the activations' slopes (at most 1.5 per stage) and the float64
oracle's own error.
"""
import contextlib
import itertools
import os
import random
import warnings

import torch
import torch.nn.functional as F

import dsconv_ext as dse

ACTIVATIONS = dse.ACTIVATIONS
SAFETY = 4.5

# Where each activation's derivative jumps; gradient checks keep pre-activations away from these.
KINKS = {None: (), "relu": (0.0,), "relu6": (0.0, 6.0), "hardswish": (-3.0, 3.0)}


# ---------------------------------------------------------------- reference ops (ATen)

def activate(t, activation):
    if activation is None:
        return t
    return {"relu": F.relu, "relu6": F.relu6, "hardswish": F.hardswish}[activation](t)


def ref_depthwise(x, w, b=None, stride=1, padding=0, dilation=1, activation=None):
    return activate(F.conv2d(x, w, b, stride, padding, dilation, groups=x.shape[1]), activation)


def ref_pointwise(x, w, b=None, activation=None):
    return activate(F.conv2d(x, w, b), activation)


def ref_separable(x, w_dw, w_pw, b_dw=None, b_pw=None, stride=1, padding=0, dilation=1,
                  dw_activation=None, pw_activation=None):
    mid = ref_depthwise(x, w_dw, b_dw, stride, padding, dilation, dw_activation)
    return ref_pointwise(mid, w_pw, b_pw, pw_activation)


REFERENCE = {"depthwise": ref_depthwise, "pointwise": ref_pointwise, "separable": ref_separable}
OPS = {"depthwise": dse.depthwise, "pointwise": dse.pointwise, "separable": dse.separable}
# Which keyword arguments of each op are activations (dropped for the magnitude bound).
ACTIVATION_KWARGS = {"depthwise": ("activation",), "pointwise": ("activation",),
                     "separable": ("dw_activation", "pw_activation")}


@contextlib.contextmanager
def _native_conv():
    # ATen's own convolution loops: oneDNN would build (JIT) a primitive for every new
    # shape of the grid, which costs far more than the convolution.
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")
            yield
    finally:
        torch.backends.mkldnn.enabled = enabled


def _wide(t):
    # The reference runs on the CPU whatever the tensors' device: ATen's CUDA hardswish
    # multiplies by 1/6 rounded to float32 even in float64 (a relative error of 3e-8).
    return t.detach().to("cpu", torch.float64) if isinstance(t, torch.Tensor) else t


def _abs(t):
    return t.abs() if isinstance(t, torch.Tensor) else t


def reference(op, tensors, kwargs):
    """ATen's result in float64 for public-API arguments (tensors positional, rest keyword)."""
    with _native_conv():
        return REFERENCE[op](*[_wide(t) for t in tensors], **kwargs)


def magnitude(op, tensors, kwargs):
    """Per output element, the sum of absolute values of everything added into it."""
    linear = {k: v for k, v in kwargs.items() if k not in ACTIVATION_KWARGS[op]}
    with _native_conv():
        return REFERENCE[op](*[_abs(_wide(t)) for t in tensors], **linear)


def assert_within_bound(actual, expected, magnitude_, terms, what="output"):
    """|actual - expected| <= bound elementwise (see module docstring); expected and
    magnitude_ are float64, `terms` is the length of the longest chain of sums."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert not actual.is_meta
    u = torch.finfo(actual.dtype).eps / 2
    bound = SAFETY * u * (terms + 4) * magnitude_ + 4 * u * expected.abs()
    actual = actual.detach().cpu()
    err = (actual.double() - expected).abs()
    bad = ~(err <= bound)  # also catches NaN
    if bad.any():
        i = tuple(int(v) for v in bad.nonzero()[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {err.numel()} elements out of bound; first at {i}: "
            f"got {actual[i].item()!r}, expected {expected[i].item()!r}, bound {bound[i].item():.3g}, "
            f"max error {err.max().item():.3g}")


def reduction_terms(op, tensors):
    """Longest chain of sums behind one output element of the forward op."""
    if op == "pointwise":
        return tensors[1].shape[1]
    taps = tensors[1].shape[2] * tensors[1].shape[3]
    return taps + (tensors[2].shape[1] if op == "separable" else 0)


# ---------------------------------------------------------------- layouts

LAYOUTS = ("nchw", "channels_last", "strided", "transposed", "cl_sliced")


def with_layout(t, layout):
    """A tensor equal to t with the given memory layout (the last three are neither
    NCHW- nor channels_last-contiguous unless the shape is degenerate)."""
    if layout == "nchw":
        return t.contiguous()
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if layout == "strided":  # every other column of a wider tensor
        n, c, h, w = t.shape
        big = torch.zeros(n, c, h, 2 * w, dtype=t.dtype, device=t.device)
        big[..., ::2] = t
        return big[..., ::2]
    if layout == "transposed":  # an H/W transpose view
        return t.transpose(2, 3).contiguous().transpose(2, 3)
    if layout == "cl_sliced":  # leading channels of a wider channels_last tensor
        n, c, h, w = t.shape
        big = torch.zeros(n, c + 1, h, w, dtype=t.dtype, device=t.device).contiguous(memory_format=torch.channels_last)
        big[:, :c] = t
        return big[:, :c]
    raise ValueError(layout)


def to_device(t, device):
    """t copied to `device` with the same strides and requires_grad (a leaf); non-tensors
    pass through."""
    if not isinstance(t, torch.Tensor):
        return t
    out = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=device)
    out.copy_(t.detach())
    return out.requires_grad_(t.requires_grad)


def noncontiguous(w):
    """A non-contiguous view equal to w (every other element along dim 0 of a bigger tensor)."""
    big = torch.zeros((2 * w.shape[0],) + tuple(w.shape[1:]), dtype=w.dtype, device=w.device)
    big[::2] = w
    return big[::2]


def expected_format(x):
    """The documented rule: channels_last out iff x is channels_last-contiguous and not
    NCHW-contiguous; NCHW-contiguous otherwise."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def assert_format(y, x):
    fmt = expected_format(x)
    assert y.is_contiguous(memory_format=fmt), (
        f"output strides {y.stride()} (shape {tuple(y.shape)}) are not {fmt} for input strides "
        f"{x.stride()}")


# ---------------------------------------------------------------- kernel sets

def kernel_sets():
    """Every kernel set this CPU runs, or only the one DSCONV_ISA forces."""
    forced = os.environ.get("DSCONV_ISA")
    return [forced] if forced else dse.supported_cpu_capabilities()


@contextlib.contextmanager
def forced_isa(isa):
    """Runs the block with kernel set `isa` forced, then restores the previous one."""
    previous = dse.cpu_capability()
    dse.set_cpu_capability(isa)
    assert dse.cpu_capability() == isa
    try:
        yield isa
    finally:
        dse.set_cpu_capability(previous)


# ---------------------------------------------------------------- kernel record

REGISTERED = frozenset(e["name"] for e in dse._C.kernel_registry())


def assert_kernels(isa, dtype, count):
    """The last op ran `count` registered kernels, each of the forced ISA or the scalar
    fallback (never a higher one), for the call's dtype."""
    names = dse.last_kernels()
    assert len(names) == count, f"expected {count} kernels, last_kernels() = {names}"
    token = {torch.float32: "f32", torch.float64: "f64"}[dtype]
    for name in names:
        assert name in REGISTERED, f"{name} is not in the kernel registry"
        assert name.endswith("_" + isa) or name.endswith("_scalar"), \
            f"{name} ran while the kernel set {isa!r} was forced"
        assert token in name.split("_"), f"{name} ran for a {dtype} call"


KERNELS_PER_OP = {"depthwise": 1, "pointwise": 1, "separable": 2}


# ---------------------------------------------------------------- inputs

def randn(gen, *shape, dtype=torch.float32, scale=1.0):
    return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)


def preactivations(op, tensors, kwargs):
    """float64 pre-activation values of each stage: [(values, activation), ...]."""
    with _native_conv():
        return _preactivations(op, [_wide(v) for v in tensors], kwargs)


def _preactivations(op, t, kwargs):
    if op == "depthwise":
        return [(ref_depthwise(*t, **{**kwargs, "activation": None}), kwargs.get("activation"))]
    if op == "pointwise":
        return [(ref_pointwise(*t, **{**kwargs, "activation": None}), kwargs.get("activation"))]
    geo = {k: kwargs[k] for k in ("stride", "padding", "dilation") if k in kwargs}
    x, w_dw, w_pw = t[:3]
    b_dw, b_pw = (t + [None, None])[3:5]
    pre_dw = ref_depthwise(x, w_dw, b_dw, **geo)
    mid = activate(pre_dw, kwargs.get("dw_activation"))
    return [(pre_dw, kwargs.get("dw_activation")),
            (ref_pointwise(mid, w_pw, b_pw), kwargs.get("pw_activation"))]


def clear_of_kinks(op, tensors, kwargs, margin=1e-3):
    """No pre-activation lies within `margin` of a point where its activation's slope jumps."""
    for values, activation in preactivations(op, tensors, kwargs):
        for k in KINKS[activation]:
            if values.numel() and (values - k).abs().min().item() < margin:
                return False
    return True


# ---------------------------------------------------------------- pairwise grids

def pairwise_grid(axes, valid, seed):
    """Cases (dicts axis -> value) such that every pair of values of two axes that occurs in
    some valid case occurs in one of them (greedy all-pairs, deterministic for `seed`).
    Pairs no valid case can hold are dropped."""
    rng = random.Random(seed)
    names = list(axes)
    uncovered = {(a, i, b, j)
                 for a, b in itertools.combinations(names, 2)
                 for i in range(len(axes[a])) for j in range(len(axes[b]))}

    def pairs(pick):
        return {(a, pick[a], b, pick[b]) for a, b in itertools.combinations(names, 2)}

    cases = []
    while uncovered:
        target = rng.choice(sorted(uncovered))
        best, best_gain = None, 0
        for _ in range(60):
            pick = {n: rng.randrange(len(axes[n])) for n in names}
            pick[target[0]], pick[target[2]] = target[1], target[3]
            if not valid({n: axes[n][pick[n]] for n in names}):
                continue
            gain = len(pairs(pick) & uncovered)
            if gain > best_gain:
                best, best_gain = pick, gain
        if best is None:
            uncovered.discard(target)  # no valid case found for this pair
            continue
        uncovered -= pairs(best)
        cases.append({n: axes[n][best[n]] for n in names})
    return cases


def case_id(case):
    def fmt(v):
        if isinstance(v, torch.dtype):
            return str(v).replace("torch.", "")
        if isinstance(v, tuple):
            return "x".join(map(str, v))
        return str(v)
    return "-".join(f"{k}={fmt(v)}" for k, v in case.items())


def missing_values(axes, cases):
    """Axis values that no case uses."""
    return [(n, v) for n, values in axes.items() for v in values
            if not any(c[n] == v for c in cases)]


def pair2(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def fits(in_hw, kernel, stride, padding, dilation):
    """Whether F.conv2d accepts this geometry (the kernel fits the padded input)."""
    kh, kw = pair2(kernel)
    if padding == "same":
        if pair2(stride) != (1, 1):
            return False
        return True
    ph, pw = (0, 0) if padding == "valid" else pair2(padding)
    dh, dw = pair2(dilation)
    return in_hw[0] + 2 * ph >= dh * (kh - 1) + 1 and in_hw[1] + 2 * pw >= dw * (kw - 1) + 1


# ---------------------------------------------------------------- gradients

def _grads(fn, tensors, kwargs, grad_out, wrt, convert):
    leaves = [convert(t).requires_grad_(i in wrt) if isinstance(t, torch.Tensor) else t
              for i, t in enumerate(tensors)]
    y = fn(*leaves, **kwargs)
    return torch.autograd.grad(y, [leaves[i] for i in wrt], convert(grad_out))


def our_grads(op, tensors, kwargs, grad_out, wrt):
    """Gradients of sum(OPS[op](...) * grad_out) with respect to tensors[i], i in wrt."""
    return _grads(OPS[op], tensors, kwargs, grad_out, wrt, lambda t: t.detach())


def reference_grads(op, tensors, kwargs, grad_out, wrt):
    """The same gradients from ATen's autograd, in float64."""
    with _native_conv():
        return _grads(REFERENCE[op], tensors, kwargs, grad_out, wrt, _wide)


def grad_magnitudes(op, tensors, kwargs, grad_out, wrt):
    """For each gradient, the sum of absolute values of the terms added into each element
    (activation slopes, at most 1.5 each, are covered by SAFETY)."""
    linear = {k: v for k, v in kwargs.items() if k not in ACTIVATION_KWARGS[op]}
    with _native_conv():
        return _grads(REFERENCE[op], tensors, linear, grad_out, wrt, lambda t: _wide(t).abs())


def grad_terms(op, tensors, y):
    """Longest chain of sums behind one gradient element: the forward chain (recomputed
    in backward), the reduction over output pixels, and the transposed reductions."""
    pixels = y.shape[0] * y.shape[2] * y.shape[3]
    dw_taps = 0 if op == "pointwise" else tensors[1].shape[0] * tensors[1].shape[2] * tensors[1].shape[3]
    return reduction_terms(op, tensors) + pixels + y.shape[1] + dw_taps


def smooth_mask(op, tensors, kwargs, margin=1e-3):
    """Output elements whose value is a smooth function of the inputs: every pre-activation
    feeding them lies at least `margin` from its activation's kinks. A grad_out that is zero
    elsewhere makes float32 and float64 gradients comparable."""
    stages = preactivations(op, tensors, kwargs)
    out_shape = stages[-1][0].shape
    mask = torch.ones(out_shape, dtype=torch.bool)
    for s, (values, activation) in enumerate(stages):
        near = torch.zeros(values.shape, dtype=torch.bool)
        for k in KINKS[activation]:
            near |= (values - k).abs() < margin
        # Exactly 0 only when no term reaches the element (all padding, no bias): a
        # constant, whose slope every implementation takes as 0 at relu's kink.
        near &= values != 0
        if s == len(stages) - 1:
            mask &= ~near
        else:  # a depthwise element of the fused op feeds every output channel of its pixel
            mask &= ~near.any(dim=1, keepdim=True)
    return mask


def check_grads(op, tensors, kwargs, wrt, gen, grad_layout="nchw"):
    """Our gradients for tensors[wrt] match ATen's within the error bound, for a random
    grad_out (zero where the output is not smooth) in the given layout; returns them."""
    y = OPS[op](*[t.detach() if isinstance(t, torch.Tensor) else t for t in tensors], **kwargs)
    mask = smooth_mask(op, tensors, kwargs)
    assert mask.numel() == 0 or mask.double().mean() > 0.75, "too few smooth outputs; re-seed"
    g = with_layout((randn(gen, *y.shape, dtype=y.dtype) * mask).to(y.device), grad_layout)
    ours = our_grads(op, tensors, kwargs, g, wrt)
    refs = reference_grads(op, tensors, kwargs, g, wrt)
    mags = grad_magnitudes(op, tensors, kwargs, g, wrt)
    terms = grad_terms(op, tensors, y)
    for i, got, ref, mag in zip(wrt, ours, refs, mags):
        assert got.dtype == tensors[i].dtype
        assert_within_bound(got, ref, mag, terms, what=f"grad of argument {i}")
    return ours
