"""dsconv_ext.convert on model definitions it has never seen (tests/_zoo.py) and on the
package's MobileNets: same outputs (NCHW and channels_last), the expected patterns fused and
the rest reported as skipped with a reason, state_dict round trip, torch.compile."""
import io

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

import dsconv_ext as dse
from dsconv_ext import models
from dsconv_ext.nn import (DenseConv2d, DepthwiseConv2d, InvertedResidual, PointwiseConv2d,
                           SeparableConv2d)

from _zoo import ZOO, calibrate

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated")]

# name -> (constructor, expected counts); the package's models at half width.
PACKAGE = {
    "mobilenet_v1": (lambda: models.mobilenet_v1(10, 0.5),
                     dict(inverted_residual=0, separable=13, depthwise=0, pointwise=0,
                          residual_adds_fused=0, dense=1, skipped=0, graph_module=False)),
    # V2: every block fused whole (the first, expansion 1 and no residual, as separable), the
    # 10 residual adds with them.
    "mobilenet_v2": (lambda: models.mobilenet_v2(10, 0.5),
                     dict(inverted_residual=16, separable=1, depthwise=0, pointwise=1,
                          residual_adds_fused=10, dense=1, skipped=0, graph_module=False)),
    # V3: a block with a squeeze-excite is one InvertedResidual holding the SqueezeExcite
    # (its projection adds the residual where there is one); the one pointwise left is the
    # last 1x1 convolution.
    "mobilenet_v3_large": (lambda: models.mobilenet_v3_large(10, 0.5),
                           dict(inverted_residual=15, squeeze_excite=8, separable=0, depthwise=0,
                                pointwise=1, residual_adds_fused=10, dense=1, skipped=0,
                                graph_module=False)),
    # (the first block, depthwise -> squeeze-excite -> pointwise without a residual, too)
    "mobilenet_v3_small": (lambda: models.mobilenet_v3_small(10, 0.5),
                           dict(inverted_residual=11, squeeze_excite=9, separable=0, depthwise=0,
                                pointwise=1, residual_adds_fused=7, dense=1, skipped=0,
                                graph_module=False)),
}
ALL = {**ZOO, **PACKAGE}


def assert_same_outputs(got, expected):
    # float32: folded weights round differently; errors stay relative to the output's scale.
    scale = expected.abs().max().item()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * max(scale, 1e-3))


def x_of(n=2, size=32, seed=1):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def converted():
    """name -> (original, converted, report), each model built and converted once."""
    out = {}
    for name, (make, _) in ALL.items():
        torch.manual_seed(0)
        original = calibrate(make())
        model, report = dse.convert(original, report=True)
        out[name] = (original, model, report)
    return out


@pytest.mark.parametrize("name", list(ALL))
def test_same_outputs_and_expected_patterns(converted, name):
    original, model, report = converted[name]
    expected = ALL[name][1]
    counts = report.counts
    keys = ("inverted_residual", "squeeze_excite", "separable", "depthwise", "pointwise",
            "dense", "residual_adds_fused", "skipped")
    assert {k: counts[k] for k in keys} == {k: expected.get(k, 0) for k in keys}, str(report)
    assert report.graph_module == expected["graph_module"] == isinstance(model, fx.GraphModule)
    if not report.graph_module:
        assert type(model) is type(original)
    # Every nn.Conv2d left is one the report says it skipped, with a reason.
    left = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert left == {s.path for s in report.skipped if "not folded" not in s.reason}
    assert all(s.reason for s in report.skipped)
    x = x_of()
    with torch.no_grad():
        assert_same_outputs(model(x), original(x))


@pytest.mark.parametrize("name", ["functional", "sequential", "mobilenet_v2", "mobilenet_v3_small"])
def test_channels_last(converted, name):
    original, _, _ = converted[name]
    original = original.to(memory_format=torch.channels_last)
    model = dse.convert(original)
    x = x_of().contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert_same_outputs(model(x), original(x))
        if name == "mobilenet_v2":  # the feature maps stay channels_last
            features = model.features(x)
            assert features.is_contiguous(memory_format=torch.channels_last)
            assert_same_outputs(features, original.features(x))


def test_data_dependent_model_both_branches(converted):
    original, model, report = converted["data_dependent"]
    assert [u.path for u in report.untraced] == ["", "b"]
    assert isinstance(model.a[0], SeparableConv2d) and isinstance(model.b[0], DepthwiseConv2d)
    with torch.no_grad():
        original.pre.weight.fill_(0.1)
        original.pre.bias.zero_()
        model.pre.weight.fill_(0.1)
        model.pre.bias.zero_()
        for x in (x_of().abs(), -x_of().abs()):  # mean > 0: branch a; mean < 0: branch b
            assert_same_outputs(model(x), original(x))


@pytest.mark.parametrize("name", ["functional", "mobilenet_v3_small"])
def test_state_dict_round_trip(converted, name):
    _, model, _ = converted[name]
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(1)
    fresh = dse.convert(calibrate(ALL[name][0](), seed=1))  # other weights, same structure
    fresh.load_state_dict(torch.load(buffer))
    x = x_of()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


def test_compile_module_and_graph_module(converted):
    """torch.compile(fullgraph=True) on a converted model that kept its class (inductor) and
    on one that became a GraphModule (aot_eager: dynamo and AOT autograd, no code generation)."""
    torch._dynamo.reset()
    try:
        torch.manual_seed(0)
        original = calibrate(models.mobilenet_v1(10, 0.25))
        model = dse.convert(original)
        x = x_of(1)
        with torch.no_grad():
            assert_same_outputs(torch.compile(model, fullgraph=True)(x), original(x))
        original, model, _ = converted["functional"]
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        with torch.no_grad():
            assert_same_outputs(compiled(x), original(x))
    finally:
        torch._dynamo.reset()


def test_report(converted):
    _, model, report = converted["functional"]
    reasons = {s.path: s.reason for s in report.skipped}
    assert "stem" not in reasons  # 3 input channels: dsconv_ext.conv2d, its relu fused
    assert "stride (2, 2)" in reasons["down"]
    assert "grouped convolution (groups=4" in reasons["grouped"]
    assert "padding_mode='reflect'" in reasons["reflect"]
    assert report.patterns == {"depthwise+bn+relu6 -> pointwise+bn+hardswish": 1,
                               "depthwise+bn+relu -> pointwise+relu": 1,
                               "depthwise": 1, "pointwise": 1, "dense+bn+relu": 1, "linear": 1}
    assert report.counts["batchnorm_folded"] == 4 and report.counts["activations_fused"] == 5
    dw2 = next(r for r in report.replaced if r.path == "dw2")
    assert dw2.kind == "separable" and dw2.replaced == ["dw2", "dw2_bn", "act", "pw2", "act"]
    text = str(report)
    assert ("5 fused modules (0 inverted residual, 0 squeeze-excite, 2 separable, 1 depthwise, "
            "1 pointwise, 1 dense, 0 other convolution with its BatchNorm folded), 1 linear") in text
    assert "torch.fx.GraphModule" in text and "padding_mode='reflect'" in text
    # F.batch_norm's parameters went with it; untouched modules keep their names.
    keys = set(model.state_dict())
    assert not any(k.startswith("bn1_") for k in keys)
    assert {"stem.weight", "dw1.depthwise.weight", "dw1.pointwise.bias", "head.bias"} <= keys


def test_package_model_keeps_structure(converted):
    _, model, report = converted["mobilenet_v2"]
    assert type(model.classifier[-1]) is dse.nn.Linear  # the head: batch 1 on all threads
    # A block module that computes exactly a fused pattern is replaced whole: expansion 1 by
    # a SeparableConv2d; stride 2 without a residual by an InvertedResidual; with a residual
    # by an InvertedResidual that adds it. The model keeps its class.
    assert type(model) is models.MobileNetV2 and isinstance(model.features[1], SeparableConv2d)
    block = model.features[2]  # expansion, depthwise, projection
    assert isinstance(block, InvertedResidual) and not block.residual
    assert block.expand.activation == "relu6" and block.project.activation is None
    assert isinstance(model.features[3], InvertedResidual) and model.features[3].residual
    assert "1 x depthwise+bn+relu6 -> pointwise+bn" in str(report)
    assert "10 x pointwise+bn+relu6 -> depthwise+bn+relu6 -> pointwise+bn -> add" in str(report)


def test_fused_away_slots(converted):
    """The slots of fused steps hold FusedAway: an nn.Identity that returns its input
    without nn.Module's call machinery; the converted model pickles whole and converts again
    to the same outputs."""
    original, model, _ = converted["efficientnet"]
    slots = [m for m in model.modules() if isinstance(m, dse.converter.FusedAway)]
    assert len(slots) >= 5 and all(isinstance(m, nn.Identity) for m in slots)
    x = x_of()
    assert slots[0](x) is x
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    again = dse.convert(model)
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(loaded(x), want, rtol=0, atol=0)
        torch.testing.assert_close(again(x), want, rtol=0, atol=0)


def test_inplace_and_copy():
    torch.manual_seed(0)
    original = calibrate(models.mobilenet_v1(10, 0.25))
    x = x_of(1)
    with torch.no_grad():
        before = original(x)
    copy = dse.convert(original)
    assert copy is not original and isinstance(original.features[1][0][0], nn.Conv2d)
    same = dse.convert(original, inplace=True)
    assert same is original and isinstance(original.features[1], SeparableConv2d)
    with torch.no_grad():
        assert_same_outputs(original(x), before)
    # Converting again finds nothing more to do.
    _, again = dse.convert(same, report=True)
    assert again.replaced == [] and again.counts["skipped"] == 0


class ExactBlock(nn.Module):
    """Its forward computes exactly depthwise+bn+relu -> pointwise+bn."""

    def __init__(self):
        super().__init__()
        self.dw = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False),
                                nn.BatchNorm2d(6), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(6, 8, 1, bias=False), nn.BatchNorm2d(8))

    def forward(self, x):
        return self.pw(self.dw(x))


class LargerBlock(ExactBlock):
    def forward(self, x):
        return super().forward(x) * 2


def test_a_module_computing_exactly_a_match_is_replaced_whole():
    """The outermost module whose forward is exactly a fused pattern is replaced by the fused
    module (one call instead of a tree of slots); a module that computes more keeps its class,
    the fused module in its first step's slot and FusedAway in the others."""
    torch.manual_seed(0)
    # the last: a container of an exact block, replaced whole too
    model = calibrate(nn.Sequential(ExactBlock(), nn.Conv2d(8, 6, 3, padding=1), LargerBlock(),
                                    nn.Conv2d(8, 6, 3, padding=1), nn.Sequential(ExactBlock())),
                      size=(6, 8, 8))
    x = torch.randn(2, 6, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x)
    converted, report = dse.convert(model, report=True)
    assert type(converted[0]) is SeparableConv2d and type(converted[4]) is SeparableConv2d
    assert type(converted[2]) is LargerBlock and type(converted[2].dw[0]) is SeparableConv2d
    assert all(type(m) is dse.converter.FusedAway for m in (*converted[2].dw[1:], *converted[2].pw))
    assert sorted(r.path for r in report.replaced) == ["0", "1", "2.dw.0", "3", "4"]
    with torch.no_grad():
        assert_same_outputs(converted(x), want)


def test_training_mode_refused():
    with pytest.raises(RuntimeError, match="eval mode"):
        dse.convert(models.mobilenet_v1(10, 0.25))
    with pytest.raises(TypeError, match="nn.Module"):
        dse.convert(lambda x: x)


def test_batchnorm_in_training_mode_is_not_folded():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 6, 1)).eval()
    model[1].train()
    converted, report = dse.convert(model, report=True)
    assert isinstance(converted[0], DepthwiseConv2d) and isinstance(converted[1], nn.BatchNorm2d)
    assert isinstance(converted[3], PointwiseConv2d)
    assert report.skipped[0].path == "1" and "training mode" in report.skipped[0].reason
    x = torch.randn(2, 4, 8, 8)
    assert_same_outputs(converted(x), model(x))


class OwnConv(nn.Conv2d):
    def forward(self, x):
        return super().forward(x) * 2


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.own = OwnConv(4, 4, 1)
        self.pw = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        x = self.dw(self.dw(x))                   # called twice: weights shared
        x = self.own(x) + self.pw.weight.sum()    # pw's weight read directly
        return self.pw(x)


def test_modules_that_must_stay():
    model = Shared().eval()
    converted, report = dse.convert(model, report=True)
    reasons = {s.path: s.reason for s in report.skipped}
    assert reasons == {"dw": "called 2 times (shared weights)",
                       "own": "OwnConv overrides nn.Conv2d's forward",
                       "pw": "its parameters are also read directly in forward"}
    assert report.replaced == []
    x = torch.randn(1, 4, 6, 6)
    assert_same_outputs(converted(x), model(x))


class Act(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.pw = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return self.pw(self.fn(self.dw(x)))


@pytest.mark.parametrize("fn, fused", [
    (F.relu, "relu"), (torch.relu, "relu"), (lambda x: x.relu_(), "relu"),
    (lambda x: x.clamp(0, 6), "relu6"), (lambda x: torch.clamp(x, min=0), "relu"),
    (lambda x: F.hardtanh(x, 0.0, 6.0), "relu6"), (lambda x: F.relu6(x, inplace=True), "relu6"),
    (F.hardswish, "hardswish"), (nn.Hardswish(), "hardswish"),
    (F.hardtanh, None), (lambda x: x.clamp(-1, 6), None), (F.silu, None), (torch.tanh, None)])
def test_functional_activations(fn, fused):
    model = Act(fn).eval()
    converted, report = dse.convert(model, report=True)
    expected = f"depthwise+{fused} -> pointwise" if fused else "depthwise"
    assert set(report.patterns) == ({expected} if fused else {"depthwise", "pointwise"})
    x = torch.randn(1, 4, 6, 6) * 4
    assert_same_outputs(converted(x), model(x))


class InPlace(nn.Module):
    def __init__(self):
        super().__init__()
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.pw = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        x = x + 1
        y = F.relu(self.dw(x))
        x.mul_(2)  # after the depthwise conv has read x
        return self.pw(y) + x


def test_input_changed_in_place_after_the_pattern_starts():
    model = InPlace().eval()
    converted, report = dse.convert(model, report=True)
    assert report.patterns == {"depthwise+relu -> pointwise": 1}
    x = torch.randn(1, 4, 6, 6)
    assert_same_outputs(converted(x), model(x))


def test_lone_convolution_model():
    conv = nn.Conv2d(8, 16, 3, padding=1, groups=8).eval()
    converted, report = dse.convert(conv, report=True)
    assert isinstance(converted, DepthwiseConv2d) and report.counts["depthwise"] == 1
    x = torch.randn(1, 8, 5, 5)
    assert_same_outputs(converted(x), conv(x))
    dense = nn.Conv2d(3, 4, 3, stride=2).eval()  # few input channels: dsconv_ext.conv2d
    converted, report = dse.convert(dense, report=True)
    assert isinstance(converted, DenseConv2d) and report.counts["dense"] == 1
    assert_same_outputs(converted(x[:, :3]), dense(x[:, :3]))
    standard = nn.Conv2d(16, 4, 3).eval()
    same, report = dse.convert(standard, report=True, inplace=True)
    assert same is standard and "standard 3x3" in report.skipped[0].reason


def test_dtype_rule_follows_the_device():
    """A float16 depthwise conv on the CPU is left alone, with the CPU's dtypes as reason
    (the rule is checks.h's, through _C.supported_dtypes)."""
    from dsconv_ext._recognize import conv_kind
    kind, why = conv_kind(torch.nn.Conv2d(4, 4, 3, groups=4).half())
    assert kind is None and "float16" in why and "float32, float64 on cpu" in why, why
    assert conv_kind(torch.nn.Conv2d(4, 4, 3, groups=4)) == ("depthwise", "")
