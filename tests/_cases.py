"""Test cases as plain dicts (axis -> value), turned into op arguments by `build`, and the
one forward check every correctness test (grid and property based) runs on them."""
import math

import torch

from _ref import (ACTIVATIONS, KERNELS_PER_OP, LAYOUTS, OPS, assert_format, assert_kernels,
                  assert_within_bound, fits, magnitude, noncontiguous, pair2, randn,
                  reduction_terms, reference, with_layout)

DTYPES = (torch.float32, torch.float64)

# The axes of the forward grids; every value of every axis is covered, and every pair of
# values of two axes where a valid case holds it (see _ref.pairwise_grid).
GEOMETRY_AXES = {
    "kernel": (1, 3, 5, 7, (3, 1), (1, 3), 2, 4, (2, 3)),  # even: asymmetric 'same' padding
    "stride": (1, 2, (1, 2), (2, 1)),
    "padding": (0, 1, 2, (1, 0), (0, 2), "same", "valid"),
    "dilation": (1, 2, (2, 1)),
    "multiplier": (1, 2),
}
COMMON_AXES = {
    "batch": (1, 3),
    "hw": ((7, 9), (1, 5), (13, 6), (5, 1), (8, 8)),
    "channels": (1, 3, 7, 17, 33),
    "layout": LAYOUTS,
    "weights": ("contiguous", "strided"),
    "dtype": DTYPES,
}
AXES = {
    "depthwise": {**GEOMETRY_AXES, **COMMON_AXES, "activation": ACTIVATIONS, "bias": (False, True)},
    "pointwise": {**COMMON_AXES, "out_channels": (1, 4, 16, 19), "activation": ACTIVATIONS,
                  "bias": (False, True)},
    "separable": {**GEOMETRY_AXES, **COMMON_AXES, "out_channels": (1, 4, 16, 19),
                  "dw_activation": ACTIVATIONS, "pw_activation": ACTIVATIONS,
                  "dw_bias": (False, True), "pw_bias": (False, True)},
}


def valid(case):
    """F.conv2d accepts the case (pointwise cases are always valid)."""
    if "kernel" not in case:
        return True
    return fits(case["hw"], case["kernel"], case["stride"], case["padding"], case["dilation"])


def build(op, case, gen):
    """(tensors, kwargs) for OPS[op](*tensors, **kwargs). Weights are scaled so that
    pre-activations spread over about +-8, crossing every activation's breakpoints."""
    dtype = case["dtype"]
    n, c = case["batch"], case["channels"]
    x = with_layout(randn(gen, n, c, *case["hw"], dtype=dtype), case["layout"])
    # "strided": weights and biases are non-contiguous views.
    weight = noncontiguous if case["weights"] == "strided" else (lambda w: w)
    kwargs, tensors = {}, [x]
    if op in ("depthwise", "separable"):
        kh, kw = pair2(case["kernel"])
        mid = c * case["multiplier"]
        tensors.append(weight(randn(gen, mid, 1, kh, kw, dtype=dtype, scale=4 / math.sqrt(kh * kw))))
        kwargs.update(stride=case["stride"], padding=case["padding"], dilation=case["dilation"])
    else:
        mid = c
    if op in ("pointwise", "separable"):
        tensors.append(weight(randn(gen, case["out_channels"], mid, 1, 1, dtype=dtype,
                                    scale=4 / math.sqrt(mid))))

    def bias(n, wanted):
        return weight(randn(gen, n, dtype=dtype, scale=2)) if wanted else None

    if op == "separable":
        tensors.append(bias(mid, case["dw_bias"]))
        tensors.append(bias(case["out_channels"], case["pw_bias"]))
        kwargs.update(dw_activation=case["dw_activation"], pw_activation=case["pw_activation"])
    else:
        tensors.append(bias(tensors[1].shape[0], case["bias"]))
        kwargs.update(activation=case["activation"])
    return tensors, kwargs


def check_forward(op, tensors, kwargs, isa):
    """OPS[op] matches ATen within the float error bound, returns the input's memory format
    and dtype, ran kernels of the forced ISA (or scalar; isa None: CUDA, no CPU kernel
    record), and left its inputs alone."""
    before = [t.clone() if isinstance(t, torch.Tensor) else t for t in tensors]
    y = OPS[op](*tensors, **kwargs)
    x = tensors[0]
    assert y.dtype == x.dtype and y.device == x.device
    assert_format(y, x)
    if y.numel() and isa is not None:
        assert_kernels(isa, x.dtype, KERNELS_PER_OP[op])
    assert_within_bound(y, reference(op, tensors, kwargs), magnitude(op, tensors, kwargs),
                        reduction_terms(op, tensors))
    for t, t0 in zip(tensors, before):
        if isinstance(t, torch.Tensor):
            assert torch.equal(t, t0), "an input was modified"
    return y
