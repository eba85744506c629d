"""The functional API and the nn modules reach the ops through dsconv_ext._C's direct
bindings in eager mode (functional._calling). They must be the same call as torch.ops:
same results and gradients, __torch_function__ overrides and modes still see the op,
torch.compile still traces it, and arguments the bindings cannot convert fail with
torch.ops' errors."""
import sys

import pytest
import torch
from torch.overrides import TorchFunctionMode

import dsconv_ext as dse
from dsconv_ext import functional as dsf

ops = torch.ops.dsconv


def _args(name, grad=False):
    g = torch.Generator().manual_seed(3)

    def r(*shape):
        return torch.randn(*shape, generator=g).requires_grad_(grad)

    x = r(2, 6, 7, 8)
    if name == "depthwise":
        return (x, r(6, 1, 3, 3), r(6), (2, 1), (1, 1, 0, 2), (1, 1), "relu6")
    if name == "pointwise":
        return (x, r(5, 6, 1, 1), r(5), "hardswish")
    if name == "separable":
        return (x, r(6, 1, 3, 3), r(4, 6, 1, 1), r(6), None, (1, 1), (1, 1, 1, 1), (1, 1),
                "relu", None)
    if name == "squeeze_excite":
        return (x, r(3, 6, 1, 1), r(3), r(6, 3, 1, 1), None, "relu", "sigmoid")
    if name == "global_avg_pool":
        return (x,)
    return (x, r(12, 6, 1, 1), r(12, 1, 3, 3), r(6, 12, 1, 1), r(12), r(12), r(6), (1, 1),
            (1, 1, 1, 1), (1, 1), "relu6", "relu6", None, True)


NAMES = ["depthwise", "pointwise", "separable", "inverted_residual", "squeeze_excite",
         "global_avg_pool"]


def _direct(name):
    return getattr(dsf, f"_{name}")


def _overload(name):
    return getattr(ops, name).default


def _c_calls(fn):
    """(fn(), the C functions Python called during it)."""
    seen = []

    def profile(frame, event, arg):
        if event == "c_call":
            seen.append(arg)

    sys.setprofile(profile)
    try:
        out = fn()
    finally:
        sys.setprofile(None)
    return out, seen


def _binding(name):
    return getattr(dse._C, f"{name}_call")


@pytest.mark.parametrize("name", NAMES)
def test_direct_call_is_taken_and_matches_torch_ops(name):
    args = _args(name)
    want = _overload(name)(*args)
    got, called = _c_calls(lambda: _direct(name)(*args))
    assert _binding(name) in called
    assert torch.equal(got, want)


@pytest.mark.parametrize("name", NAMES)
def test_direct_call_gradients_match_torch_ops(name):
    args = _args(name, grad=True)
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    want = torch.autograd.grad(_overload(name)(*args).square().sum(), tensors)
    got = torch.autograd.grad(_direct(name)(*args).square().sum(), tensors)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


class _Logged(torch.Tensor):
    """A subclass whose __torch_function__ records the functions called on it."""
    calls = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        cls.calls.append(func)
        return super().__torch_function__(func, types, args, kwargs or {})


@pytest.mark.parametrize("name", NAMES)
def test_torch_function_subclass_sees_the_op(name):
    args = list(_args(name))
    args[0] = args[0].as_subclass(_Logged)
    _Logged.calls.clear()
    y = _direct(name)(*args)
    assert _overload(name) in _Logged.calls
    assert torch.equal(y.as_subclass(torch.Tensor), _overload(name)(*_args(name)))


class _Recording(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls.append(func)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", NAMES)
def test_torch_function_mode_sees_the_op(name):
    with _Recording() as mode:
        _direct(name)(*_args(name))
    assert _overload(name) in mode.calls


def test_modules_take_the_direct_path_and_torch_ops_under_a_mode():
    block = dse.nn.InvertedResidual(6, 6, 12).eval()
    x = torch.randn(1, 6, 5, 5)
    with torch.no_grad():
        eager, called = _c_calls(lambda: block(x))
        with _Recording() as mode:
            moded, called_in_mode = _c_calls(lambda: block(x))
    assert _binding("inverted_residual") in called
    assert _binding("inverted_residual") not in called_in_mode
    assert ops.inverted_residual.default in mode.calls
    assert torch.equal(eager, moded)


def test_compiled_module_traces_the_op():
    block = dse.nn.InvertedResidual(6, 6, 12).eval()
    x = torch.randn(1, 6, 5, 5)
    with torch.no_grad():
        compiled = torch.compile(block, fullgraph=True, backend="eager")
        torch.testing.assert_close(compiled(x), block(x), rtol=0, atol=0)


@pytest.mark.parametrize("bad, message", [
    (dict(activation=5), "Expected a value of type 'Optional[str]' for argument 'activation'"),
    (dict(x="not a tensor"), "Expected a value of type 'Tensor' for argument 'x'"),
])
def test_unconvertible_arguments_get_torch_ops_errors(bad, message):
    kwargs = dict(x=torch.randn(1, 3, 4, 4), weight=torch.randn(2, 3, 1, 1), activation=None)
    kwargs.update(bad)
    with pytest.raises(RuntimeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        dse.pointwise(**kwargs)
