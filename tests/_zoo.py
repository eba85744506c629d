"""Model definitions convert() has never seen, each in a different style, with what it should
make of them. Written for these tests (not the package's models): functional activations and
F.batch_norm in forward with a shared activation module; nested nn.Sequential blocks with a
BatchNorm subclass that applies its own activation (patterns crossing module boundaries);
an EfficientNet-style block with squeeze-excite and SiLU (converted only where it matches);
and a model whose forward cannot be traced."""
import torch
import torch.nn.functional as F
from torch import nn


class FunctionalNet(nn.Module):
    """Activations as function calls in forward, one BatchNorm as F.batch_norm over the
    model's own parameters and buffers, one nn.ReLU shared by two layers, a depthwise output
    used twice, and three convolutions the ops cannot take."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 2, 1, bias=False)          # dense (3 channels)
        self.stem_bn = nn.BatchNorm2d(16)
        self.dw1 = nn.Conv2d(16, 16, 3, 1, 1, groups=16)            # dw1 -> F.batch_norm -> relu6
        self.bn1_weight = nn.Parameter(torch.linspace(0.5, 1.5, 16))  # -> pw1 -> bn -> hardswish
        self.bn1_bias = nn.Parameter(torch.linspace(-0.2, 0.2, 16))
        self.register_buffer("bn1_mean", torch.zeros(16))
        self.register_buffer("bn1_var", torch.ones(16))
        self.pw1 = nn.Conv2d(16, 24, 1, bias=False)
        self.pw1_bn = nn.BatchNorm2d(24)
        self.dw2 = nn.Conv2d(24, 48, 5, 2, 2, groups=24, bias=False)  # multiplier 2, stride 2
        self.dw2_bn = nn.BatchNorm2d(48)
        self.act = nn.ReLU()                                         # used after dw2 and pw2
        self.pw2 = nn.Conv2d(48, 32, 1)
        self.dw3 = nn.Conv2d(32, 32, 3, padding="same", groups=32)   # output used twice: lone
        self.pw3 = nn.Conv2d(32, 32, 1)
        self.down = nn.Conv2d(32, 32, 1, stride=2)                   # 1x1 stride 2: skipped
        self.grouped = nn.Conv2d(32, 32, 3, padding=1, groups=4)     # grouped: skipped
        self.reflect = nn.Conv2d(32, 32, 3, padding=1, groups=32, padding_mode="reflect")
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem(x)))
        x = F.batch_norm(self.dw1(x), self.bn1_mean, self.bn1_var, self.bn1_weight,
                         self.bn1_bias, training=self.training, eps=1e-3)
        x = F.relu6(x)
        x = F.hardswish(self.pw1_bn(self.pw1(x)))
        x = self.act(self.dw2_bn(self.dw2(x)))
        x = self.act(self.pw2(x))
        y = self.dw3(x)
        x = y + self.pw3(y.clamp(0, 6))
        x = self.grouped(self.down(x)).relu()
        x = self.reflect(x)
        return self.head(x.mean((2, 3)))


FUNCTIONAL_NET = dict(separable=2, depthwise=1, pointwise=1, dense=1, skipped=3,
                      graph_module=True)


class BatchNormAct2d(nn.BatchNorm2d):
    """BatchNorm followed by its own activation (as some model libraries define it)."""

    def __init__(self, channels, act=nn.ReLU6):
        super().__init__(channels)
        self.act = act()

    def forward(self, x):
        return self.act(super().forward(x))


def conv_norm_act(c_in, c_out, k, stride=1, groups=1, act=nn.Hardswish):
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
                         BatchNormAct2d(c_out, act))


class SequentialNet(nn.Sequential):
    """Nested nn.Sequential stages; each depthwise unit ends one Sequential and its pointwise
    unit starts the next, so the patterns cross module boundaries. Ends with a spatially
    separable depthwise pair (3x1 then 1x3)."""

    def __init__(self):
        super().__init__(
            nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish()),
            nn.Sequential(conv_norm_act(16, 16, 3, groups=16)),
            nn.Sequential(conv_norm_act(16, 32, 1, act=nn.ReLU),
                          conv_norm_act(32, 32, 5, stride=2, groups=32, act=nn.ReLU6)),
            nn.Sequential(nn.Conv2d(32, 40, 1, bias=False), nn.BatchNorm2d(40), nn.Identity()),
            nn.Sequential(nn.Conv2d(40, 40, (3, 1), padding=(1, 0), groups=40),
                          nn.Conv2d(40, 40, (1, 3), padding=(0, 1), groups=40)),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(40, 10))


SEQUENTIAL_NET = dict(separable=2, depthwise=2, pointwise=0, dense=1, skipped=0,
                      graph_module=True)


class SqueezeExcitation(nn.Module):
    def __init__(self, channels, squeezed):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x):
        s = F.silu(self.reduce(x.mean((2, 3), keepdim=True)))
        return x * torch.sigmoid(self.expand(s))


class MBConv(nn.Module):
    """EfficientNet-style block: expand 1x1 -> depthwise kxk -> squeeze-excite -> project 1x1,
    with SiLU (which the ops do not fuse) or ReLU6, and a residual connection."""

    def __init__(self, c_in, c_out, k, stride, expand, se=True, act=nn.SiLU):
        super().__init__()
        mid = c_in * expand
        self.expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
        self.bn0 = nn.BatchNorm2d(mid)
        self.act0 = act()
        self.dw = nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.act1 = act()
        self.se = SqueezeExcitation(mid, max(1, c_in // 4)) if se else nn.Identity()
        self.project = nn.Conv2d(mid, c_out, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        y = self.act0(self.bn0(self.expand_conv(x)))
        y = self.act1(self.bn1(self.dw(y)))
        y = self.bn2(self.project(self.se(y)))
        return x + y if self.residual else y


class EfficientNetStyle(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.SiLU())
        self.blocks = nn.Sequential(
            MBConv(16, 16, 3, 1, 1),             # SiLU + SE: nothing fuses past the SiLUs
            MBConv(16, 24, 5, 2, 4),
            MBConv(24, 24, 3, 1, 3, se=False, act=nn.ReLU6))  # a plain inverted residual
        self.head = nn.Linear(24, 10)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


# Blocks 1-2: expand, dw, project, two SE convs -> lone (SiLU does not fuse); block 3: the
# whole inverted residual with its add (its module replaced).
EFFICIENTNET_STYLE = dict(inverted_residual=1, separable=0, depthwise=2, pointwise=8,
                          residual_adds_fused=1, dense=1, skipped=0, graph_module=False)


class DataDependent(nn.Module):
    """A forward that branches on tensor values, which torch.fx cannot trace: converted one
    level down (each branch is a plain nn.Sequential, the lone conv a child)."""

    def __init__(self):
        super().__init__()
        self.pre = nn.Conv2d(3, 8, 1)
        self.a = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU(),
                               nn.Conv2d(8, 12, 1), nn.BatchNorm2d(12))
        self.b = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.Hardswish(),
                               Opaque(), nn.Conv2d(8, 12, 1))

    def forward(self, x):
        x = self.pre(x)
        return self.a(x) if x.mean() > 0 else self.b(x)


class Opaque(nn.Module):
    """Untraceable too (a Python `if` on a tensor), inside an nn.Sequential."""

    def forward(self, x):
        return x * 2 if x.sum() > 0 else x


DATA_DEPENDENT = dict(separable=1, depthwise=1, pointwise=2, skipped=0, graph_module=False)

ZOO = {"functional": (FunctionalNet, FUNCTIONAL_NET), "sequential": (SequentialNet, SEQUENTIAL_NET),
       "efficientnet": (EfficientNetStyle, EFFICIENTNET_STYLE),
       "data_dependent": (DataDependent, DATA_DEPENDENT)}


def calibrate(model: nn.Module, size=(3, 32, 32), seed: int = 0) -> nn.Module:
    """`model` in eval mode with BatchNorm statistics measured on one random batch (so the
    activations stay of order 1 through deep models) and random BatchNorm affine parameters,
    so that folding is checked on non-trivial values."""
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(torch.randn(8, *size, generator=g))
        for m in norms:
            m.momentum = 0.1
            m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model.eval()
