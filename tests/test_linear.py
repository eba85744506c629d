"""dsconv_ext.linear and dsconv_ext.nn.Linear (what convert puts in place of nn.Linear):
F.linear's results and gradients for any leading shape; at most 4 rows in all run the
matrix-vector kernels (on any thread count, with the same bits), more rows and other
devices or dtypes run ATen."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dsconv_ext as dse
from dsconv_ext.nn import Dropout, Linear
from _ref import assert_kernels

LEADING = [(), (1,), (3,), (2, 2), (4, 1), (5,), (2, 3), (0,)]


def _expected_kernel(leading):
    rows = 1
    for n in leading:
        rows *= n
    return 0 < rows <= 4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("leading", LEADING, ids=str)
def test_matches_f_linear(isa, gen, leading, bias, dtype):
    x = torch.randn(*leading, 37, generator=gen, dtype=dtype)
    w = torch.randn(29, 37, generator=gen, dtype=dtype)
    b = torch.randn(29, generator=gen, dtype=dtype) if bias else None
    y = dse.linear(x, w, b)
    assert y.shape == (*leading, 29) and y.dtype == dtype
    if _expected_kernel(leading):
        assert_kernels(isa, dtype, 1)
        assert dse.last_kernels()[0].startswith("gemv_"), dse.last_kernels()
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y, F.linear(x, w, b), **tol)


@pytest.mark.parametrize("leading", [(1,), (2, 2), (6,)], ids=str)
def test_gradients_match_f_linear(gen, leading):
    x = torch.randn(*leading, 21, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(13, 21, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(13, generator=gen, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(*leading, 13, generator=gen, dtype=torch.float64)
    got = torch.autograd.grad(dse.linear(x, w, b), (x, w, b), gy)
    want = torch.autograd.grad(F.linear(x, w, b), (x, w, b), gy)
    for g, e in zip(got, want):
        torch.testing.assert_close(g, e)
    torch.autograd.gradcheck(lambda x, w, b: dse.linear(x, w, b), (x, w, b))


def test_torch_activations_cover_the_ops_activations():
    from dsconv_ext.functional import _TORCH_ACTIVATIONS
    assert set(_TORCH_ACTIVATIONS) == set(dse.functional.ACTIVATIONS)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("leading", [(1,), (2, 2), (6,)], ids=str)
@pytest.mark.parametrize("activation", ["relu", "relu6", "hardswish"])
def test_activation_is_applied_after_the_linear(isa, gen, activation, leading, dtype):
    x = 4 * torch.randn(*leading, 37, generator=gen, dtype=dtype)
    w = torch.randn(29, 37, generator=gen, dtype=dtype)
    b = torch.randn(29, generator=gen, dtype=dtype)
    y = dse.linear(x, w, b, activation)
    if _expected_kernel(leading):
        assert dse.last_kernels()[0].startswith("gemv_"), dse.last_kernels()
    act = {"relu": F.relu, "relu6": F.relu6, "hardswish": F.hardswish}[activation]
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y, act(F.linear(x, w, b)), **tol)
    module = Linear.from_linear(nn.Linear(37, 29, dtype=dtype), nn.ReLU6() if activation == "relu6" else activation)
    assert module.activation == activation
    torch.testing.assert_close(module(x), act(F.linear(x, module.weight, module.bias)), **tol)


def test_activation_gradients(gen):
    x = torch.randn(1, 21, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(13, 21, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(13, generator=gen, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda x, w, b: dse.linear(x, w, b, "hardswish"), (x, w, b))


def test_bad_activation_is_a_value_error():
    with pytest.raises(ValueError, match="activation must be one of"):
        dse.linear(torch.randn(1, 4), torch.randn(2, 4), None, "gelu")
    with pytest.raises(ValueError, match="not an activation the ops"):
        Linear(4, 2, activation=nn.GELU())


def test_output_features_split_over_threads_keep_the_bits(gen):
    x = torch.randn(1, 1283, generator=gen)
    w = torch.randn(1000, 1283, generator=gen)
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3, 4):
            torch.set_num_threads(threads)
            results.append(dse.linear(x, w))
    finally:
        torch.set_num_threads(previous)
    assert all(torch.equal(results[0], r) for r in results[1:])
    torch.testing.assert_close(results[0], F.linear(x, w), rtol=1e-5, atol=1e-4)


def test_other_dtypes_and_bad_shapes_are_f_linears():
    x = torch.randn(1, 8, dtype=torch.bfloat16)
    w = torch.randn(3, 8, dtype=torch.bfloat16)
    assert torch.equal(dse.linear(x, w), F.linear(x, w))
    for x, w in [(torch.randn(1, 8), torch.randn(3, 7)), (torch.randn(1, 8), torch.randn(3, 8, 1))]:
        with pytest.raises(RuntimeError) as ours:
            dse.linear(x, w)
        with pytest.raises(RuntimeError) as aten:
            F.linear(x, w)
        assert str(ours.value) == str(aten.value)


def test_direct_call_takes_exactly_the_batch1_calls(gen):
    """_C.linear_call, the C++ path of eager calls, computes the calls the Python path sends
    to the matrix-vector kernels (strided operands included) and declines the others
    (None), which then take the Python path."""
    from dsconv_ext import _C
    x = torch.randn(3, 40, generator=gen)[:, ::2]  # [3, 20], strided
    w = torch.randn(20, 13, generator=gen).t()     # [13, 20], transposed
    b = torch.randn(13, generator=gen)
    y = _C.linear_call(x, w, b, "relu6")
    torch.testing.assert_close(y, F.relu6(F.linear(x, w, b)), rtol=1e-5, atol=1e-5)
    assert torch.equal(y, dse.linear(x, w, b, "relu6"))
    declined = [(torch.randn(5, 20), w),                        # 5 rows
                (torch.randn(0, 20), w),                        # no rows
                (torch.randn(2, 0), torch.randn(13, 0)),        # no input features
                (torch.randn(1, 20, dtype=torch.bfloat16), w.bfloat16()),
                (torch.randn(1, 19), w),                        # features differ
                (torch.randn(1, 20), torch.randn(13, 20, 1)),   # weight not 2-D
                (torch.tensor(1.0), w)]                         # 0-d input
    for xd, wd in declined:
        assert _C.linear_call(xd, wd, None, None) is None, (xd.shape, wd.shape)


def test_dropout_module(gen):
    """dsconv_ext.nn.Dropout returns its input in eval mode and is nn.Dropout in training;
    convert replaces each nn.Dropout (not subclasses) by one."""
    x = torch.randn(4, 10, generator=gen)
    d = Dropout.from_dropout(nn.Dropout(0.3).eval())
    assert isinstance(d, nn.Dropout) and d.p == 0.3 and not d.training and d(x) is x
    d.train()
    torch.manual_seed(1)
    got = d(x)
    torch.manual_seed(1)
    assert torch.equal(got, F.dropout(x, 0.3, True)) and not torch.equal(got, x)
    with pytest.raises(TypeError, match="expects an nn.Dropout"):
        Dropout.from_dropout(nn.ReLU())

    class MyDropout(nn.Dropout):
        pass

    shared = nn.Dropout(0.1)
    model = nn.Sequential(shared, nn.Linear(10, 10), shared, MyDropout()).eval()
    converted, report = dse.convert(model, report=True)
    assert type(converted[0]) is Dropout and converted[0] is converted[2]
    assert type(converted[3]) is MyDropout and report.counts["dropout"] == 1
    assert "1 dropout" in str(report)
    assert type(dse.convert(nn.Dropout().eval())) is Dropout


def test_module_is_an_nn_linear_with_the_same_parameters(gen):
    lin = nn.Linear(40, 12)
    ours = Linear.from_linear(lin)
    assert isinstance(ours, nn.Linear) and ours.weight is lin.weight and ours.bias is lin.bias
    assert repr(ours) == repr(lin)
    assert ours.state_dict().keys() == lin.state_dict().keys()
    x = torch.randn(1, 40, generator=gen)
    torch.testing.assert_close(ours(x), lin(x), rtol=1e-5, atol=1e-5)
    no_bias = Linear.from_linear(nn.Linear(40, 12, bias=False))
    assert no_bias.bias is None
    torch.testing.assert_close(no_bias(x), F.linear(x, no_bias.weight))
    with pytest.raises(TypeError, match="expects an nn.Linear"):
        Linear.from_linear(nn.Conv2d(3, 3, 1))


def test_compile_fullgraph(gen):
    torch._dynamo.reset()
    try:
        module = Linear(24, 10, activation="relu")
        x = torch.randn(1, 24, generator=gen)
        compiled = torch.compile(module, fullgraph=True)
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), F.relu(F.linear(x, module.weight, module.bias)),
                                       rtol=1e-5, atol=1e-5)
    finally:
        torch._dynamo.reset()


def test_convert_replaces_each_linear_once():
    shared = nn.Linear(6, 6)
    model = nn.Sequential(nn.Linear(8, 6), nn.Dropout(), shared, nn.ReLU(), shared).eval()
    converted, report = dse.convert(model, report=True)
    assert [type(m) for m in converted] == [Linear, Dropout, Linear, nn.ReLU, Linear]
    assert converted[2] is converted[4] and converted[2].activation is None  # shared: not fused
    assert report.counts["linear"] == 2
    x = torch.randn(1, 8)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), model(x), rtol=1e-5, atol=1e-5)
    alone = dse.convert(nn.Linear(4, 2).eval())
    assert type(alone) is Linear


def test_convert_fuses_the_activation_after_a_linear_in_a_sequential(gen):
    from dsconv_ext.converter import FusedAway
    # MobileNetV3's classifier head
    model = nn.Sequential(nn.Linear(48, 64), nn.Hardswish(inplace=True), nn.Dropout(0.2),
                          nn.Linear(64, 10), nn.ReLU6()).eval()
    converted, report = dse.convert(model, report=True)
    assert [type(m) for m in converted] == [Linear, FusedAway, Dropout, Linear, FusedAway]
    assert (converted[0].activation, converted[3].activation) == ("hardswish", "relu6")
    assert report.patterns == {"linear+hardswish": 1, "linear+relu6": 1, "dropout": 1}
    assert report.counts["activations_fused"] == 2
    assert "activation='hardswish'" in repr(converted[0])
    for rows in (1, 6):  # the matrix-vector kernels, and F.linear then the activation
        x = torch.randn(rows, 48, generator=gen)
        with torch.no_grad():
            torch.testing.assert_close(converted(x), model(x), rtol=1e-5, atol=1e-5)


def test_convert_keeps_activations_it_cannot_fuse():
    hooked = nn.ReLU()
    hooked.register_forward_hook(lambda *args: None)
    model = nn.Sequential(nn.Linear(8, 8), hooked, nn.Linear(8, 8), nn.GELU()).eval()
    converted = dse.convert(model)
    assert [type(m) for m in converted] == [Linear, nn.ReLU, Linear, nn.GELU]
    assert converted[0].activation is None and converted[2].activation is None

    class NotSequential(nn.Module):  # the order of registration is not the data flow
        def __init__(self):
            super().__init__()
            self.fc, self.act = nn.Linear(8, 8), nn.ReLU()

        def forward(self, x):
            return self.fc(x) - self.act(x)

    converted = dse.convert(NotSequential().eval())
    assert type(converted.fc) is Linear and converted.fc.activation is None
    assert type(converted.act) is nn.ReLU
