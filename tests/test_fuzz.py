"""Fuzzing against ATen: hypothesis draws wide cases (shapes, strides, paddings including
'same'/'valid', dilations, multipliers, layouts including non-contiguous views, activations,
biases, float32/float64, batch) and the kernel set; every op must match ATen within the
error bound of tests/_ref.py, and its gradients too (fewer cases: the backward is dearer).

CI runs a fixed-seed slice (DSCONV_FUZZ_CASES cases per op, 500 by default; a fifth of that for gradients). The long run
(README, "Reliability"):
    DSCONV_FUZZ_CASES=10000 pytest tests/test_fuzz.py --hypothesis-show-statistics
DSCONV_FUZZ_SEED=<int> draws another sequence instead of the derandomized one. A failure
hypothesis finds is printed as the minimal case; it goes into a regression test."""
import os

import pytest
import torch
from hypothesis import assume, given, seed, settings, strategies as st

from _cases import build, check_forward
from _ref import check_grads, forced_isa, kernel_sets, smooth_mask
from _strategies import Bounds, cases, seeds

CASES = int(os.environ.get("DSCONV_FUZZ_CASES", "500"))
GRAD_CASES = max(1, CASES // 5)
# Wider than the property tests: channel counts past two AVX2/AVX-512 vector widths, 7x7
# kernels, strides and dilations up to 3, some images up to ~60 pixels a side.
WIDE = Bounds(channels=40, kernel=7, step=3, padding=4, extra_hw=12, large_hw=40)
OPS = ("depthwise", "pointwise", "separable")
GRAD_WRT = {"depthwise": (0, 1, 2), "pointwise": (0, 1, 2), "separable": (0, 1, 2, 3, 4)}


def fuzz_settings(examples):
    chosen = os.environ.get("DSCONV_FUZZ_SEED")

    def wrap(test):
        test = settings(max_examples=examples, derandomize=chosen is None)(test)
        return seed(int(chosen))(test) if chosen else test
    return wrap


isas = st.sampled_from(kernel_sets())


@pytest.mark.parametrize("op", OPS)
@fuzz_settings(CASES)
@given(data=st.data(), isa=isas, seed_=seeds)
def test_fuzz_forward(op, data, isa, seed_):
    case = data.draw(cases(op, WIDE), label="case")
    with forced_isa(isa):
        check_forward(op, *build(op, case, torch.Generator().manual_seed(seed_)), isa)


@pytest.mark.parametrize("op", OPS)
@fuzz_settings(GRAD_CASES)
@given(data=st.data(), isa=isas, seed_=seeds)
def test_fuzz_gradients(op, data, isa, seed_):
    case = data.draw(cases(op, WIDE), label="case")
    gen = torch.Generator().manual_seed(seed_)
    tensors, kwargs = build(op, case, gen)
    # Gradients are compared where the output is smooth; skip the rare case where too
    # little of it is (check_grads would refuse it).
    mask = smooth_mask(op, tensors, kwargs)
    assume(mask.numel() == 0 or mask.double().mean() > 0.75)
    wrt = tuple(i for i in GRAD_WRT[op] if tensors[i] is not None)
    with forced_isa(isa):
        check_grads(op, tensors, kwargs, wrt, gen, grad_layout=case["layout"])
