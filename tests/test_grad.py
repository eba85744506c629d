"""Gradients of every op (input, weights, biases) vs ATen's autograd: over the forward grid
(float32 and float64), and with every subset of the inputs requiring grad."""
import itertools

import pytest
import torch

import dsconv_ext as dse
from _cases import AXES, build, valid
from _ref import (ACTIVATIONS, KERNELS_PER_OP, REFERENCE, assert_kernels, case_id, check_grads,
                  pairwise_grid)

# A smaller grid than the forward one (the backward runs more kernels per case).
GRIDS = {op: pairwise_grid({**axes, "batch": (1, 2), "channels": (1, 3, 7, 17)}, valid, seed=11)
         for op, axes in AXES.items()}
ALL = {"depthwise": (0, 1, 2), "pointwise": (0, 1, 2), "separable": (0, 1, 2, 3, 4)}


def grid_params():
    return [pytest.param(op, i, case, id=f"{op}-{i}-{case_id(case)}")
            for op in sorted(GRIDS) for i, case in enumerate(GRIDS[op])]


def differentiable(tensors, wrt):
    return tuple(i for i in wrt if tensors[i] is not None)


@pytest.mark.parametrize("op, index, case", grid_params())
def test_grid(isa, op, index, case):
    gen = torch.Generator().manual_seed(index)
    tensors, kwargs = build(op, case, gen)
    check_grads(op, tensors, kwargs, differentiable(tensors, ALL[op]), gen, grad_layout=case["layout"])


# ---- only some inputs require grad: each subset, through each kind of activation backward
# (none, from the output, from the recomputed pre-activation) ----

FIXED = {
    "depthwise": dict(kernel=3, stride=2, padding=1, dilation=1, multiplier=2, batch=2, hw=(7, 9),
                      channels=3, layout="channels_last", weights="contiguous", dtype=torch.float32,
                      bias=True),
    "pointwise": dict(batch=2, hw=(5, 6), channels=7, out_channels=5, layout="nchw",
                      weights="contiguous", dtype=torch.float32, bias=True),
    "separable": dict(kernel=3, stride=1, padding=1, dilation=2, multiplier=2, batch=2, hw=(7, 9),
                      channels=3, out_channels=5, layout="nchw", weights="contiguous",
                      dtype=torch.float32, dw_bias=True, pw_bias=True),
}
ACTIVATION_SETS = {
    "depthwise": [{"activation": a} for a in ACTIVATIONS],
    "pointwise": [{"activation": a} for a in ACTIVATIONS],
    "separable": [{"dw_activation": a, "pw_activation": b}
                  for a, b in [(None, None), ("relu", "hardswish"), ("hardswish", "relu6"),
                               ("relu6", "relu")]],
}


def subset_params():
    out = []
    for op in sorted(FIXED):
        n = len(ALL[op])
        for r in range(1, n + 1):
            for wrt in itertools.combinations(range(n), r):
                for acts in ACTIVATION_SETS[op]:
                    name = "-".join(f"{v}" for v in acts.values())
                    out.append(pytest.param(op, wrt, acts, id=f"{op}-wrt{''.join(map(str, wrt))}-{name}"))
    return out


@pytest.mark.parametrize("op, wrt, acts", subset_params())
def test_requires_grad_subsets(op, wrt, acts):
    gen = torch.Generator().manual_seed(len(wrt))
    tensors, kwargs = build(op, {**FIXED[op], **acts}, gen)
    check_grads(op, tensors, kwargs, wrt, gen)
    # The others get no gradient, through .backward() as well.
    leaves = [t.detach().requires_grad_(i in wrt) for i, t in enumerate(tensors)]
    dse_op = getattr(dse, op)
    dse_op(*leaves, **kwargs).sum().backward()
    for i, t in enumerate(leaves):
        assert (t.grad is not None) == (i in wrt), f"argument {i}"


@pytest.mark.parametrize("op", sorted(FIXED))
def test_no_input_requires_grad(op):
    tensors, kwargs = build(op, {**FIXED[op], **ACTIVATION_SETS[op][1]}, torch.Generator().manual_seed(0))
    y = getattr(dse, op)(*tensors, **kwargs)
    assert not y.requires_grad and y.grad_fn is None


@pytest.mark.parametrize("op", sorted(FIXED))
def test_backward_runs_backward_kernels(isa, op):
    """The backward pass of each op runs registered kernels of the forced ISA (the last
    backward op's record is what last_kernels() holds)."""
    tensors, kwargs = build(op, {**FIXED[op], **ACTIVATION_SETS[op][0]}, torch.Generator().manual_seed(0))
    leaves = [t.detach().requires_grad_() for t in tensors]
    y = getattr(dse, op)(*leaves, **kwargs)
    assert_kernels(isa, y.dtype, KERNELS_PER_OP[op])
    y.sum().backward()
    assert_kernels(isa, y.dtype, 1)


@pytest.mark.parametrize("op", sorted(FIXED))
def test_broadcast_grad_out(op):
    """y.sum().backward() hands the backward an expanded (stride 0) grad_out."""
    tensors, kwargs = build(op, {**FIXED[op], **ACTIVATION_SETS[op][0], "dtype": torch.float64},
                            torch.Generator().manual_seed(3))
    leaves = [t.detach().requires_grad_() for t in tensors]
    getattr(dse, op)(*leaves, **kwargs).sum().backward()
    ref_leaves = [t.detach().requires_grad_() for t in tensors]
    REFERENCE[op](*ref_leaves, **kwargs).sum().backward()
    for i, (got, ref) in enumerate(zip(leaves, ref_leaves)):
        torch.testing.assert_close(got.grad, ref.grad, rtol=1e-10, atol=1e-10, msg=f"argument {i}")


@pytest.mark.parametrize("op", sorted(FIXED))
def test_inference_mode_and_no_grad(op):
    """The usual eval setups (nn.Parameter weights under no_grad, or inference_mode) give
    the plain result and build no graph."""
    tensors, kwargs = build(op, {**FIXED[op], **ACTIVATION_SETS[op][2]}, torch.Generator().manual_seed(4))
    fn = getattr(dse, op)
    expected = fn(*tensors, **kwargs)
    params = [tensors[0]] + [torch.nn.Parameter(t) for t in tensors[1:]]
    with torch.no_grad():
        y = fn(*params, **kwargs)
    assert not y.requires_grad and torch.equal(y, expected)
    with torch.inference_mode():
        y = fn(*tensors, **kwargs)
    assert y.is_inference() and torch.equal(y, expected)


DEFAULTS = {  # every argument after the weights at its default
    "depthwise": dict(FIXED["depthwise"], stride=1, padding=0, dilation=1, bias=False, activation=None),
    "pointwise": dict(FIXED["pointwise"], bias=False, activation=None),
    "separable": dict(FIXED["separable"], stride=1, padding=0, dilation=1, dw_bias=False,
                      pw_bias=False, dw_activation=None, pw_activation=None),
}


@pytest.mark.parametrize("op", sorted(DEFAULTS))
def test_backward_with_default_arguments(op):
    """Regression: the dispatcher drops trailing arguments equal to their defaults, which
    shortened ctx.needs_input_grad and broke the backward of dse.depthwise(x, w)."""
    gen = torch.Generator().manual_seed(6)
    tensors, kwargs = build(op, DEFAULTS[op], gen)
    check_grads(op, tensors, kwargs, differentiable(tensors, ALL[op]), gen)
    leaves = [t.detach().requires_grad_() for t in tensors if t is not None]
    getattr(dse, op)(*leaves).sum().backward()
    assert all(t.grad is not None for t in leaves)
