"""dsconv_ext.nn.FusedSequential: the op chain convert makes of a Sequential of dsconv modules.
The chain must compute exactly what the children compute one by one (same ops, same
arguments: bitwise equal), with autograd, and see every change to the children: replaced or
updated parameters, changed attributes, a mutated Sequential, dtype conversion; with hooks,
parametrizations, __torch_function__ modes or torch.compile the children run one by one."""
import copy
import io

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import dsconv_ext as dse
from dsconv_ext import models
from dsconv_ext.nn import FusedSequential

from _zoo import calibrate

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated")]

MODELS = {"mobilenet_v1": lambda: models.mobilenet_v1(10, 0.25),
          "mobilenet_v2": lambda: models.mobilenet_v2(10, 0.35),
          "mobilenet_v3_large": lambda: models.mobilenet_v3_large(10, 0.35),
          "mobilenet_v3_small": lambda: models.mobilenet_v3_small(10, 0.35)}


def converted(name, **kwargs):
    torch.manual_seed(0)
    return dse.convert(calibrate(MODELS[name]()), **kwargs)


def one_by_one(seq, x):
    return nn.Sequential.forward(seq, x)


def chain_used(seq):
    """Whether the last forward ran (or could run) the op chain: it is built and current."""
    return seq._op_chain() is not None


def x_of(n=2, size=48, seed=1, channels=3):
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("pack_weights", [True, False])
@pytest.mark.parametrize("name", list(MODELS))
def test_convert_fuses_features_and_matches_module_by_module(name, pack_weights):
    model, report = converted(name, pack_weights=pack_weights, report=True)
    seq = model.features
    assert type(seq) is FusedSequential and chain_used(seq)
    assert report.fused_sequentials == ["features"] and report.counts["fused_sequential"] == 1
    assert "1 Sequential run as one call" in str(report)
    calls = len(seq._op_chain())
    assert calls >= len(seq)  # a block with a squeeze-excite is three calls
    for memory_format in (torch.contiguous_format, torch.channels_last):
        x = x_of().contiguous(memory_format=memory_format)
        with torch.no_grad():
            got, expected = seq(x), one_by_one(seq, x)
        assert torch.equal(got, expected)
        assert got.is_contiguous(memory_format=torch.channels_last) == \
            expected.is_contiguous(memory_format=torch.channels_last)


def test_state_dict_repr_pickle_and_copies():
    model = converted("mobilenet_v2")
    plain = copy.deepcopy(model)
    plain.features.__class__ = nn.Sequential
    assert list(model.state_dict()) == list(plain.state_dict())
    assert "FusedSequential(" in repr(model)
    x = x_of()
    with torch.no_grad():
        expected = model(x)
        buffer = io.BytesIO()
        torch.save(model, buffer)
        buffer.seek(0)
        for other in (torch.load(buffer, weights_only=False), copy.deepcopy(model)):
            assert type(other.features) is FusedSequential
            assert torch.equal(other(x), expected)
            assert chain_used(other.features)


def test_autograd_through_the_chain():
    model = converted("mobilenet_v3_small").train()
    seq = model.features
    x = x_of(size=32).requires_grad_()
    grads = []
    for forward in (seq, lambda v: one_by_one(seq, v)):
        seq.zero_grad()
        x.grad = None
        forward(x).square().sum().backward()
        grads.append([x.grad.clone()] + [p.grad.clone() for p in seq.parameters()])
    for got, expected in zip(*grads):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_replaced_and_updated_parameters_are_seen():
    model = converted("mobilenet_v2")
    seq = model.features
    x = x_of()
    with torch.no_grad():
        before = seq(x)
        block = seq[3]
        block.project.weight.mul_(2)  # in place: the chain holds the tensor itself
        in_place = seq(x)
        assert not torch.equal(in_place, before)
        assert torch.equal(in_place, one_by_one(seq, x))
        block.project.weight = nn.Parameter(block.project.weight / 4)  # a new Parameter
        replaced = seq(x)
        assert torch.equal(replaced, one_by_one(seq, x))
        assert not torch.equal(replaced, in_place)
        model.load_state_dict(converted("mobilenet_v2").state_dict())  # copied in place
        assert torch.equal(seq(x), before)
        block.depthwise.activation = None  # an attribute
        assert torch.equal(seq(x), one_by_one(seq, x))
        assert not torch.equal(seq(x), before)
        seq[0].stride = (1, 1)  # geometry
        assert seq(x).shape == one_by_one(seq, x).shape != before.shape


def test_a_mutated_sequential_is_rebuilt():
    seq, x = converted("mobilenet_v1").features, x_of()
    with torch.no_grad():
        full = seq(x)
        last = seq[-1]
        del seq[-1]
        shorter = seq(x)
        assert torch.equal(shorter, one_by_one(seq, x)) and not torch.equal(shorter, full)
        seq.append(last)
        assert torch.equal(seq(x), full)
        seq.append(nn.Identity())  # not a dsconv module: the children run one by one
        assert not chain_used(seq)
        assert torch.equal(seq(x), full)


def test_dtype_conversion():
    model = converted("mobilenet_v2")
    x = x_of()
    with torch.no_grad():
        model(x)  # the chain built for float32
        model.to(torch.float64)
        got = model.features(x.double())
        assert got.dtype == torch.float64
        assert torch.equal(got, one_by_one(model.features, x.double()))


def test_hooks_run_the_children_one_by_one():
    model = converted("mobilenet_v2")
    seq = model.features
    x = x_of()
    seen = []
    with torch.no_grad():
        expected = seq(x)
        handle = seq[2].register_forward_hook(lambda m, i, o: seen.append(o.shape))
        assert torch.equal(seq(x), expected) and len(seen) == 1
        handle.remove()
        assert torch.equal(seq(x), expected) and len(seen) == 1
        assert chain_used(seq)  # back on the chain once the hook is gone
        # A hook on a block's squeeze-excite, which the block's own forward calls.
        v3 = converted("mobilenet_v3_small").features
        se = next(m for m in v3.modules() if isinstance(m, dse.nn.SqueezeExcite))
        handle = se.register_forward_pre_hook(lambda m, i: seen.append("se"))
        v3(x)
        assert seen[-1] == "se"
        handle.remove()
        # Global module hooks run around every module call.
        handle = nn.modules.module.register_module_forward_hook(lambda m, i, o: seen.append(m))
        try:
            count = len(seen)
            seq(x)
            assert len(seen) - count >= len(seq)
        finally:
            handle.remove()


def test_parametrized_child_runs_one_by_one():
    model = converted("mobilenet_v1")
    seq = model.features

    class Double(nn.Module):
        def forward(self, w):
            return 2 * w

    x = x_of()
    with torch.no_grad():
        before = seq(x)
        parametrize.register_parametrization(seq[1].pointwise, "weight", Double())
        assert not chain_used(seq)
        after = seq(x)
        assert not torch.equal(after, before)
        assert torch.equal(after, one_by_one(seq, x))


def test_torch_function_mode_sees_every_op():
    model = converted("mobilenet_v2")
    seen = []

    class Record(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.append(func)
            return func(*args, **(kwargs or {}))

    x = x_of()
    with torch.no_grad():
        expected = model.features(x)
        with Record():
            got = model.features(x)
    assert torch.equal(got, expected)
    assert len(seen) >= len(model.features)


def test_errors_are_the_ops_errors():
    seq = converted("mobilenet_v2").features
    with torch.no_grad(), pytest.raises(RuntimeError, match="channels"):
        seq(x_of(channels=4))


def test_compile_runs_the_children():
    model = converted("mobilenet_v2")
    x = x_of(size=32)
    with torch.no_grad():
        expected = model(x)
        got = torch.compile(model, fullgraph=True)(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_op_chain_checks_its_calls():
    seq = converted("mobilenet_v2").features
    calls = seq[0]._chain_calls()
    name, args = calls[0]
    with pytest.raises(ValueError, match="takes"):
        dse._C.OpChain([(name, args[:-1], {0: 0})])
    with pytest.raises(ValueError, match="not yet computed"):
        dse._C.OpChain([(name, (None,) + args[1:], {0: 1})])
    with pytest.raises(ValueError, match="no calls"):
        dse._C.OpChain([])
