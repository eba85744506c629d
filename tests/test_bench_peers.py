"""The bench's peer graphs (bench/graph.py lowered to ONNX and .tflite) compute what the
PyTorch model computes. Correctness only; skipped when the peer's package is not installed
(pip install '.[bench]')."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

# Appended, not prepended: the installed dsconv_ext must win over the source folder.
sys.path.append(str(Path(__file__).resolve().parents[1]))
from bench.graph import lower  # noqa: E402
from bench.peers import PEERS  # noqa: E402
from bench.peers.litert import same_matches  # noqa: E402
from dsconv_ext.models import SqueezeExcite, conv_bn_act  # noqa: E402


class Small(nn.Module):
    """Every op the lowering handles: stride-2 convs on even and odd sizes (TFLite SAME vs
    explicit padding), 3x3 and 5x5 depthwise with a channel multiplier, every activation,
    BatchNorm, squeeze-excite (hard sigmoid, broadcast multiply), a residual, pooling,
    flatten, linear."""

    def __init__(self):
        super().__init__()
        self.stem = conv_bn_act(3, 8, 3, stride=2, activation=nn.ReLU6)
        self.dw = conv_bn_act(8, 16, 5, stride=2, groups=8, activation=nn.Hardswish)
        self.se = SqueezeExcite(16, 8)
        self.pw = conv_bn_act(16, 16, 1, activation=None)
        self.dw2 = conv_bn_act(16, 16, 3, groups=16, activation=nn.ReLU)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        y = self.pw(self.se(self.dw(self.stem(x))))
        y = y + self.dw2(y)
        return self.fc(torch.flatten(self.pool(y), 1))


def small_model():
    torch.manual_seed(0)
    m = Small()
    for bn in m.modules():  # non-trivial statistics, so folding them is tested
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.5, 0.5)
    return m.eval()


@pytest.mark.parametrize("peer", PEERS, ids=lambda p: p.name)
@pytest.mark.parametrize("size", [(2, 3, 32, 32), (1, 3, 33, 27)])
def test_peer_matches_pytorch(peer, size):
    missing = peer.available()
    if missing:
        pytest.skip(missing)
    model = small_model()
    x = torch.randn(*size)
    with torch.no_grad():
        expected = model(x).numpy()
    runner = peer(lower(model, x), threads=1)
    runner.set_input(x.numpy())
    runner.run()
    np.testing.assert_allclose(runner.output(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("peer", PEERS, ids=lambda p: p.name)
def test_peer_keeps_4d_layout(peer):
    """A conv-only graph: the peer's output comes back NCHW like PyTorch's."""
    missing = peer.available()
    if missing:
        pytest.skip(missing)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(6, 6, 3, 2, 1, groups=6), nn.ReLU6(),
                          nn.Conv2d(6, 10, 1, bias=False)).eval()
    x = torch.randn(1, 6, 14, 14)
    runner = peer(lower(model, x), threads=1)
    runner.set_input(x.numpy())
    runner.run()
    with torch.no_grad():
        np.testing.assert_allclose(runner.output(), model(x).numpy(), rtol=1e-4, atol=1e-5)


class SharedConv(nn.Module):
    """A conv whose output is used twice (through an identity): ReLU must not be fused."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.drop = nn.Dropout()

    def forward(self, x):
        y = self.conv(x)
        return torch.relu(self.drop(y)) + y


def test_lower_fuses_only_single_use():
    x = torch.randn(1, 4, 6, 6)
    ops = lower(SharedConv().eval(), x).ops
    assert [(op.kind, op.act) for op in ops] == [("conv", None), ("act", "relu"), ("add", None)]
    model = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.Dropout(), nn.ReLU6()).eval()
    assert [(op.kind, op.act) for op in lower(model, x).ops] == [("conv", "relu6")]


@pytest.mark.parametrize("peer", PEERS, ids=lambda p: p.name)
def test_peer_shared_value(peer):
    missing = peer.available()
    if missing:
        pytest.skip(missing)
    model, x = SharedConv().eval(), torch.randn(1, 4, 6, 6)
    runner = peer(lower(model, x), threads=1)
    runner.set_input(x.numpy())
    runner.run()
    with torch.no_grad():
        np.testing.assert_allclose(runner.output(), model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_lower_rejects_unsupported():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sigmoid()).eval()
    with pytest.raises(NotImplementedError, match="Sigmoid"):
        lower(model, torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize("size,kernel,stride,pad,same", [
    (112, 3, 1, 1, True), (112, 3, 2, 1, False), (113, 3, 2, 1, True),
    (14, 5, 2, 2, False), (15, 5, 2, 2, True), (7, 5, 1, 2, True), (8, 1, 2, 0, True)])
def test_same_padding_rule(size, kernel, stride, pad, same):
    assert same_matches(size, kernel, stride, 1, pad) is same
