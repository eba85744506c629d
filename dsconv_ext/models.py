"""MobileNet V1, V2 and V3 (Large, Small) in plain torch.nn, random initialization (no
weights are downloaded). They are written as a user would write them, with nn.Conv2d /
nn.BatchNorm2d / activation modules, so `dsconv_ext.convert` can be tested and benchmarked
on them. Layer configurations follow the papers:

- V1: Howard et al. 2017, "MobileNets" (Table 1): 4.2M parameters, 569M MACs at 224x224.
- V2: Sandler et al. 2018, "MobileNetV2" (Table 2): 3.5M parameters, 300M MACs.
- V3: Howard et al. 2019, "Searching for MobileNetV3" (Tables 1 and 2): Large 5.5M
  parameters / 217M MACs, Small 2.5M / 57M (squeeze-excite reduction 4, width rounded to 8).

    model = dsconv_ext.models.mobilenet_v2().eval()
"""
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn


def round_channels(channels: float, divisor: int = 8) -> int:
    """Channels scaled by a width multiplier, rounded to a multiple of `divisor` (at least
    `divisor`), never more than 10% below the unrounded value (the MobileNet convention)."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * channels:
        rounded += divisor
    return rounded


def conv_bn_act(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                groups: int = 1, activation: Optional[type] = nn.ReLU) -> nn.Sequential:
    """Conv (no bias, 'same'-style padding) -> BatchNorm -> activation (None: no activation)."""
    layers: List[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
                  groups=groups, bias=False),
        nn.BatchNorm2d(out_channels)]
    if activation is not None:
        layers.append(activation(inplace=True))
    return nn.Sequential(*layers)


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------- V1

class MobileNetV1(nn.Module):
    """A 3x3 stride-2 convolution, then 13 depthwise-separable blocks
    (dw 3x3 -> BN -> ReLU -> pw 1x1 -> BN -> ReLU), global average pooling, a linear layer."""

    # (output channels, stride) of each depthwise-separable block.
    BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
              (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0):
        super().__init__()
        channels = round_channels(32 * width_mult)
        layers = [conv_bn_act(3, channels, 3, stride=2)]
        for out, stride in self.BLOCKS:
            out = round_channels(out * width_mult)
            layers.append(nn.Sequential(
                conv_bn_act(channels, channels, 3, stride, groups=channels),   # depthwise
                conv_bn_act(channels, out, 1)))                                # pointwise
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


# ---------------------------------------------------------------- V2

class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expansion -> BN -> ReLU6 (skipped for expansion 1), 3x3 depthwise
    -> BN -> ReLU6, 1x1 linear projection -> BN; input added when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        layers: List[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn_act(in_channels, hidden, 1, activation=nn.ReLU6))
        layers += [conv_bn_act(hidden, hidden, 3, stride, groups=hidden, activation=nn.ReLU6),
                   conv_bn_act(hidden, out_channels, 1, activation=None)]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    # (expansion t, output channels c, repeats n, first stride s), Table 2 of the paper.
    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2):
        super().__init__()
        channels = round_channels(32 * width_mult)
        last = round_channels(1280 * max(1.0, width_mult))
        layers: List[nn.Module] = [conv_bn_act(3, channels, 3, stride=2, activation=nn.ReLU6)]
        for t, c, n, s in self.SETTINGS:
            out = round_channels(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
        layers.append(conv_bn_act(channels, last, 1, activation=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        # a module (torchvision calls F.adaptive_avg_pool2d), as in V1 and V3: convert can
        # then replace it (state_dicts are the same: it holds nothing)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


# ---------------------------------------------------------------- V3

class SqueezeExcite(nn.Module):
    """Channel attention: global average -> 1x1 conv -> ReLU -> 1x1 conv -> hard sigmoid, used
    to scale the input's channels."""

    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))
        return x * scale


class MobileNetV3Block(nn.Module):
    """Expansion 1x1 (when the expanded width differs) -> depthwise kxk -> squeeze-excite
    (optional) -> linear 1x1 projection; activation ReLU or Hardswish; residual when shapes
    allow."""

    def __init__(self, in_channels: int, kernel_size: int, expanded: int, out_channels: int,
                 use_se: bool, activation: type, stride: int):
        super().__init__()
        layers: List[nn.Module] = []
        if expanded != in_channels:
            layers.append(conv_bn_act(in_channels, expanded, 1, activation=activation))
        layers.append(conv_bn_act(expanded, expanded, kernel_size, stride, groups=expanded,
                                  activation=activation))
        if use_se:
            layers.append(SqueezeExcite(expanded, round_channels(expanded / 4)))
        layers.append(conv_bn_act(expanded, out_channels, 1, activation=None))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_residual else y


RE, HS = nn.ReLU, nn.Hardswish
# (kernel, expanded, out, squeeze-excite, activation, stride): Table 1 (Large), Table 2 (Small).
V3_LARGE = [(3, 16, 16, False, RE, 1), (3, 64, 24, False, RE, 2), (3, 72, 24, False, RE, 1),
            (5, 72, 40, True, RE, 2), (5, 120, 40, True, RE, 1), (5, 120, 40, True, RE, 1),
            (3, 240, 80, False, HS, 2), (3, 200, 80, False, HS, 1), (3, 184, 80, False, HS, 1),
            (3, 184, 80, False, HS, 1), (3, 480, 112, True, HS, 1), (3, 672, 112, True, HS, 1),
            (5, 672, 160, True, HS, 2), (5, 960, 160, True, HS, 1), (5, 960, 160, True, HS, 1)]
V3_SMALL = [(3, 16, 16, True, RE, 2), (3, 72, 24, False, RE, 2), (3, 88, 24, False, RE, 1),
            (5, 96, 40, True, HS, 2), (5, 240, 40, True, HS, 1), (5, 240, 40, True, HS, 1),
            (5, 120, 48, True, HS, 1), (5, 144, 48, True, HS, 1), (5, 288, 96, True, HS, 2),
            (5, 576, 96, True, HS, 1), (5, 576, 96, True, HS, 1)]


class MobileNetV3(nn.Module):
    def __init__(self, config: Sequence[Tuple], last_channels: int, num_classes: int = 1000,
                 width_mult: float = 1.0, dropout: float = 0.2):
        super().__init__()
        channels = round_channels(16 * width_mult)
        layers: List[nn.Module] = [conv_bn_act(3, channels, 3, stride=2, activation=HS)]
        for k, expanded, out, use_se, act, stride in config:
            expanded, out = round_channels(expanded * width_mult), round_channels(out * width_mult)
            layers.append(MobileNetV3Block(channels, k, expanded, out, use_se, act, stride))
            channels = out
        head = 6 * channels  # the last 1x1 convolution widens 6x (960 for Large, 576 for Small)
        layers.append(conv_bn_act(channels, head, 1, activation=HS))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(head, last_channels), nn.Hardswish(inplace=True), nn.Dropout(dropout),
            nn.Linear(last_channels, num_classes))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.pool(self.features(x)), 1)
        return self.classifier(x)


def mobilenet_v1(num_classes: int = 1000, width_mult: float = 1.0) -> MobileNetV1:
    return MobileNetV1(num_classes, width_mult)


def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0) -> MobileNetV2:
    return MobileNetV2(num_classes, width_mult)


def mobilenet_v3_large(num_classes: int = 1000, width_mult: float = 1.0) -> MobileNetV3:
    return MobileNetV3(V3_LARGE, round_channels(1280 * max(1.0, width_mult)), num_classes,
                       width_mult)


def mobilenet_v3_small(num_classes: int = 1000, width_mult: float = 1.0) -> MobileNetV3:
    return MobileNetV3(V3_SMALL, round_channels(1024 * max(1.0, width_mult)), num_classes,
                       width_mult)


# name -> constructor, for the bench and the complexity CLI.
MODELS = {"mobilenet_v1": mobilenet_v1, "mobilenet_v2": mobilenet_v2,
          "mobilenet_v3_large": mobilenet_v3_large, "mobilenet_v3_small": mobilenet_v3_small}

__all__ = ["MobileNetV1", "MobileNetV2", "MobileNetV3", "InvertedResidual", "MobileNetV3Block",
           "SqueezeExcite", "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large",
           "mobilenet_v3_small", "MODELS", "round_channels", "conv_bn_act"]
