"""torch.autograd.gradcheck (float64, finite differences) of every op with respect to every
input, weight and bias, through each activation, under every kernel set."""
import pytest
import torch

from _cases import build
from _ref import ACTIVATIONS, OPS, clear_of_kinks, to_device

GEOMETRIES = {
    "plain": dict(kernel=3, stride=1, padding=1, dilation=1, multiplier=1, batch=1, hw=(5, 6),
                  channels=3, layout="nchw"),
    "strided": dict(kernel=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), multiplier=2,
                    batch=2, hw=(6, 7), channels=2, layout="channels_last"),
    "same_even": dict(kernel=2, stride=1, padding="same", dilation=2, multiplier=1, batch=1,
                      hw=(4, 5), channels=3, layout="strided"),
}
COMMON = dict(weights="contiguous", dtype=torch.float64, out_channels=3)
SEPARABLE_ACTIVATIONS = [(None, "relu"), ("relu", "relu6"), ("relu6", "hardswish"),
                         ("hardswish", None)]


def smooth_inputs(op, case):
    """Arguments whose pre-activations all lie at least 1e-3 from an activation kink, so the
    finite differences of gradcheck (eps 1e-6) see a differentiable function."""
    for seed in range(100):
        tensors, kwargs = build(op, case, torch.Generator().manual_seed(seed))
        if clear_of_kinks(op, tensors, kwargs, margin=1e-3):
            return tensors, kwargs
    raise AssertionError("no kink-free inputs in 100 seeds")


def run_gradcheck(op, case, device="cpu"):
    tensors, kwargs = smooth_inputs(op, case)
    leaves = [to_device(t, device).requires_grad_() if t is not None else None for t in tensors]
    wrt = [i for i, t in enumerate(leaves) if t is not None]

    def fn(*diff):
        args = list(leaves)
        for i, t in zip(wrt, diff):
            args[i] = t
        return OPS[op](*args, **kwargs)

    assert torch.autograd.gradcheck(fn, tuple(leaves[i] for i in wrt))


def params(op, always_bias=False):
    """Cases per geometry and activation(s); the strided geometry runs without its last
    bias unless always_bias."""
    out = []
    geometries = {"pointwise": ["plain", "strided"]}.get(op, list(GEOMETRIES))
    for geometry in geometries:
        bias = always_bias or geometry != "strided"
        if op == "separable":
            for dw_act, pw_act in SEPARABLE_ACTIVATIONS:
                case = {**GEOMETRIES[geometry], **COMMON, "dw_activation": dw_act,
                        "pw_activation": pw_act, "dw_bias": True, "pw_bias": bias}
                out.append(pytest.param(case, id=f"{geometry}-{dw_act}-{pw_act}"))
        else:
            for act in ACTIVATIONS:
                case = {**GEOMETRIES[geometry], **COMMON, "activation": act, "bias": bias}
                out.append(pytest.param(case, id=f"{geometry}-{act}"))
    return out


@pytest.mark.parametrize("case", params("depthwise"))
def test_depthwise(isa, case):
    run_gradcheck("depthwise", case)


@pytest.mark.parametrize("case", params("pointwise"))
def test_pointwise(isa, case):
    run_gradcheck("pointwise", case)


@pytest.mark.parametrize("case", params("separable"))
def test_separable(isa, case):
    run_gradcheck("separable", case)
