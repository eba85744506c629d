"""nn modules over the public ops.

Parameters are named and shaped as nn.Conv2d's (`weight`, `bias`), so an nn.Conv2d's
state_dict loads into DepthwiseConv2d / PointwiseConv2d, and SeparableConv2d holds one of each
(`depthwise.weight`, `pointwise.weight`, ...). Each module can apply an activation
(None, 'relu', 'relu6', 'hardswish') inside the op. `from_modules` builds them from existing
nn.Conv2d / BatchNorm / activation modules (BatchNorm folded, eval mode)."""
import math
from typing import Optional, Union

import torch
from torch import nn

from . import _chain
from . import functional as dsf
from ._recognize import as_activation, as_gate, conv_kind, op_dtypes
from .fold import BatchNormParams, batch_norm_params, fold_into
from .functional import IntPair, Padding, _pair

Activation = Union[None, str, nn.Module]


def _padding(padding: Padding, stride, what: str):
    """padding as nn.Conv2d stores it: a pair of ints, or 'same' / 'valid'."""
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"{what}: padding must be an int, a pair of ints, 'same' or 'valid', "
                             f"got {padding!r}")
        if padding == "same" and stride != (1, 1):
            raise ValueError(f"{what}: padding='same' needs stride 1 (as in nn.Conv2d), got "
                             f"stride {stride}")
        return padding
    return _pair(padding, "padding")


def _check_channels(what: str, **counts):
    for name, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{what}: {name} must be a positive int, got {value!r}")


def _reset(weight: torch.Tensor, bias: Optional[torch.Tensor]):
    # nn.Conv2d's initialization: kaiming-uniform weight, bias uniform in +-1/sqrt(fan_in).
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in = weight[0].numel()
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        nn.init.uniform_(bias, -bound, bound)


def _copy_conv_params(module: nn.Module, conv: nn.Conv2d, bn):
    """module.weight/bias <- conv's, with bn (a BatchNorm module or BatchNormParams) folded in;
    detached copies."""
    weight, bias = conv.weight, conv.bias
    if bn is not None:
        params = bn if isinstance(bn, BatchNormParams) else batch_norm_params(bn)
        weight, bias = fold_into(weight, bias, params)
    with torch.no_grad():
        module.weight.copy_(weight)
        if module.bias is not None:
            module.bias.copy_(bias)


def _from_conv_check(cls_name: str, conv: nn.Module, expected: str):
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"{cls_name}.from_modules expects an nn.Conv2d, got {type(conv).__name__}")
    kind, why = conv_kind(conv)
    if kind != expected:
        raise ValueError(f"{cls_name}.from_modules: {conv} is not a {expected} convolution: "
                         + (why or f"it is {kind}"))



def _param(module: nn.Module, name: str) -> Optional[torch.Tensor]:
    """module.<name> for a parameter (or None), without nn.Module.__getattr__'s cost; a
    parametrized or otherwise non-plain attribute is read the usual way."""
    params = module._parameters
    return params[name] if name in params else getattr(module, name)


def _explicit_padding(module: nn.Module):
    """[top, bottom, left, right] of a depthwise or dense module's padding (the op's form)."""
    p = module.padding
    if isinstance(p, str):
        return dsf._padding(p, _param(module, "weight"), module.stride, module.dilation)
    return (p[0], p[0], p[1], p[1])


def _init_kernel_module(module: nn.Module, in_channels: int, out_channels: int,
                        weight_in_channels: int, kernel_size, stride, padding, dilation,
                        bias: bool, activation, device, dtype) -> None:
    """The geometry attributes and parameters of a module with a kernel (DepthwiseConv2d,
    DenseConv2d), named and shaped as nn.Conv2d's; `weight_in_channels` is weight.shape[1]."""
    module.in_channels, module.out_channels = in_channels, out_channels
    module.kernel_size = _pair(kernel_size, "kernel_size")
    module.stride = _pair(stride, "stride")
    module.padding = _padding(padding, module.stride, type(module).__name__)
    module.dilation = _pair(dilation, "dilation")
    module.activation = as_activation(activation)
    factory = dict(device=device, dtype=dtype)
    module.weight = nn.Parameter(torch.empty(out_channels, weight_in_channels, *module.kernel_size,
                                             **factory))
    if bias:
        module.bias = nn.Parameter(torch.empty(out_channels, **factory))
    else:
        module.register_parameter("bias", None)
    module.reset_parameters()


def _kernel_module_from_modules(cls, kind: str, conv: nn.Conv2d, bn, activation):
    """cls (DepthwiseConv2d or DenseConv2d) computing activation(bn(conv(x))): see
    DepthwiseConv2d.from_modules."""
    _from_conv_check(cls.__name__, conv, kind)
    module = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                 conv.padding, conv.dilation, bias=conv.bias is not None or bn is not None,
                 activation=as_activation(activation), device=conv.weight.device,
                 dtype=conv.weight.dtype)
    _copy_conv_params(module, conv, bn)
    return module


def _geometry_repr(module) -> str:
    """extra_repr of a module with a kernel, stride, padding and dilation."""
    s = (f"{module.in_channels}, {module.out_channels}, kernel_size={module.kernel_size}, "
         f"stride={module.stride}")
    if module.padding != (0, 0):
        s += f", padding={module.padding!r}"
    if module.dilation != (1, 1):
        s += f", dilation={module.dilation}"
    return s + _bias_activation_repr(module)


def _bias_activation_repr(module) -> str:
    """The extra_repr tail shared by the single-stage modules."""
    s = ", bias=False" if module.bias is None else ""
    if module.activation is not None:
        s += f", activation={module.activation!r}"
    return s


class DepthwiseConv2d(_chain.ChainMember, nn.Module):
    """`activation(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation,
    groups=in_channels)(x))`, computed by `dsconv_ext.depthwise`.

    out_channels is a multiple of in_channels (the channel multiplier). `weight` is
    [out_channels, 1, kh, kw] and `bias` [out_channels], as in nn.Conv2d; `groups` is
    in_channels. padding: int, pair, 'same' or 'valid' (zero padding)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair,
                 stride: IntPair = 1, padding: Padding = 0, dilation: IntPair = 1, *,
                 bias: bool = True, activation: Optional[str] = None, device=None, dtype=None):
        super().__init__()
        what = type(self).__name__
        _check_channels(what, in_channels=in_channels, out_channels=out_channels)
        if out_channels % in_channels != 0:
            raise ValueError(f"{what}: out_channels ({out_channels}) must be a multiple of "
                             f"in_channels ({in_channels})")
        _init_kernel_module(self, in_channels, out_channels, 1, kernel_size, stride, padding,
                            dilation, bias, activation, device, dtype)

    @property
    def groups(self) -> int:
        return self.in_channels

    def reset_parameters(self) -> None:
        _reset(self.weight, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Straight to the op overload: at batch 1 the small layers' calls are mostly fixed
        # cost, and the functional wrapper's argument handling is part of it.
        return dsf._depthwise(*self._op_args(x))

    _op_name = "depthwise"

    def _op_args(self, x):
        return (x, _param(self, "weight"), _param(self, "bias"), self.stride,
                _explicit_padding(self), self.dilation, self.activation)

    def extra_repr(self) -> str:
        return _geometry_repr(self)

    @classmethod
    def from_modules(cls, conv: nn.Conv2d, bn: Optional[nn.Module] = None,
                     activation: Activation = None) -> "DepthwiseConv2d":
        """`activation(bn(conv(x)))` as one module. conv: a depthwise nn.Conv2d
        (groups == in_channels, zero padding); bn: None, or a BatchNorm in eval mode (or its
        fold.BatchNormParams), folded into the weights;
        activation: None, a name, or an nn.ReLU / ReLU6 / Hardswish / Identity module.
        The parameters are copies; the given modules are not changed."""
        return _kernel_module_from_modules(cls, "depthwise", conv, bn, activation)


def is_input_major(weight: torch.Tensor) -> bool:
    """Whether a [C_out, C_in, 1, 1] weight is stored input-major (each input's C_out weights
    contiguous, inputs at least C_out apart), the layout the CPU kernels read in place."""
    co, ci = weight.shape[:2]
    return (co == 1 or weight.stride(0) == 1) and (ci == 1 or weight.stride(1) >= co)


def input_major(weight: torch.Tensor) -> torch.Tensor:
    """A copy of a 1x1 weight [C_out, C_in, 1, 1] stored input-major: same shape and values,
    each input's C_out weights contiguous, inputs a padded stride apart (whole 64-byte lines,
    an odd count of them from 4 lines up: with a power-of-two stride the GEMM's column panels
    would fall into a few cache sets; 1024 x 1024 measured 1.86x slower than packed, 1.18x
    with the padding). The CPU kernels read such a weight in place instead of caching a
    packed copy."""
    co, ci = weight.shape[:2]
    per_line = max(1, 64 // weight.element_size())
    lines = -(-co // per_line)
    if lines >= 4 and lines % 2 == 0:
        lines += 1
    with torch.no_grad():
        rows = weight.new_zeros(ci, lines * per_line)
        rows[:, :co] = weight.reshape(co, ci).t()
    return rows[:, :co].t()[:, :, None, None]


class PointwiseConv2d(_chain.ChainMember, nn.Module):
    """`activation(nn.Conv2d(in_channels, out_channels, 1)(x))`, computed by
    `dsconv_ext.pointwise`. `weight` is [out_channels, in_channels, 1, 1] and `bias`
    [out_channels], as in nn.Conv2d.

    `weight_in_place_()` stores the weight input-major (`input_major`), which the CPU kernels
    read in place: no packed copy is cached (the model takes no more memory than its
    parameters), at some speed (README, "Memory")."""

    # nn.Conv2d's geometry attributes, for code that reads them.
    kernel_size = (1, 1)
    stride = (1, 1)
    padding = (0, 0)
    dilation = (1, 1)
    groups = 1
    weight_in_place = False

    def __init__(self, in_channels: int, out_channels: int, *, bias: bool = True,
                 activation: Optional[str] = None, device=None, dtype=None):
        super().__init__()
        _check_channels(type(self).__name__, in_channels=in_channels, out_channels=out_channels)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.activation = as_activation(activation)
        factory = dict(device=device, dtype=dtype)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, 1, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset(self.weight, self.bias)

    def weight_in_place_(self, enabled: bool = True) -> "PointwiseConv2d":
        """Store `weight` input-major on the CPU (enabled), or contiguous; kept through
        `.to()`, `.float()` and the like. The Parameter object stays (its .data changes), so
        an optimizer holding it is unaffected. Returns self."""
        self.weight_in_place = enabled
        self._lay_out_weight()
        return self

    def _lay_out_weight(self) -> None:
        w = self.weight
        if w.device.type != "cpu" or is_input_major(w) == self.weight_in_place:
            return
        w.data = input_major(w.data) if self.weight_in_place else w.data.contiguous()

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        if self.weight_in_place:
            self._lay_out_weight()  # .to(memory_format=...) and device moves re-lay it out
        return self

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        if self.weight_in_place:
            self._lay_out_weight()  # load_state_dict(assign=True) puts the loaded tensor in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dsf._pointwise(*self._op_args(x))

    _op_name = "pointwise"

    def _op_args(self, x):
        return (x, _param(self, "weight"), _param(self, "bias"), self.activation, None)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}"
        s += _bias_activation_repr(self)
        return s + (", weight_in_place=True" if self.weight_in_place else "")

    @classmethod
    def from_modules(cls, conv: nn.Conv2d, bn: Optional[nn.Module] = None,
                     activation: Activation = None) -> "PointwiseConv2d":
        """`activation(bn(conv(x)))` as one module. conv: a 1x1 nn.Conv2d with groups=1,
        stride 1 and no padding; bn and activation as in DepthwiseConv2d.from_modules."""
        _from_conv_check(cls.__name__, conv, "pointwise")
        module = cls(conv.in_channels, conv.out_channels,
                     bias=conv.bias is not None or bn is not None,
                     activation=as_activation(activation), device=conv.weight.device,
                     dtype=conv.weight.dtype)
        _copy_conv_params(module, conv, bn)
        return module


class DenseConv2d(_chain.ChainMember, nn.Module):
    """`activation(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
    dilation)(x))` (groups=1), computed by `dsconv_ext.conv2d`: a network's first layer.
    `weight` is [out_channels, in_channels, kh, kw] and `bias` [out_channels], as in
    nn.Conv2d."""

    groups = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair,
                 stride: IntPair = 1, padding: Padding = 0, dilation: IntPair = 1, *,
                 bias: bool = True, activation: Optional[str] = None, device=None, dtype=None):
        super().__init__()
        _check_channels(type(self).__name__, in_channels=in_channels, out_channels=out_channels)
        _init_kernel_module(self, in_channels, out_channels, in_channels, kernel_size, stride,
                            padding, dilation, bias, activation, device, dtype)

    def reset_parameters(self) -> None:
        _reset(self.weight, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dsf._conv2d(*self._op_args(x))

    _op_name = "conv2d"

    def _op_args(self, x):
        return (x, _param(self, "weight"), _param(self, "bias"), self.stride,
                _explicit_padding(self), self.dilation, self.activation)

    def extra_repr(self) -> str:
        return _geometry_repr(self)

    @classmethod
    def from_modules(cls, conv: nn.Conv2d, bn: Optional[nn.Module] = None,
                     activation: Activation = None) -> "DenseConv2d":
        """`activation(bn(conv(x)))` as one module. conv: an nn.Conv2d with groups=1 and zero
        padding; bn and activation as in DepthwiseConv2d.from_modules."""
        return _kernel_module_from_modules(cls, "dense", conv, bn, activation)


class SeparableConv2d(_chain.ChainMember, nn.Module):
    """Depthwise then pointwise convolution in one fused call (`dsconv_ext.separable`): the
    depthwise output never goes to memory.

    Holds a DepthwiseConv2d `depthwise` (in_channels -> in_channels * depth_multiplier,
    bias `dw_bias`, activation `dw_activation`) and a PointwiseConv2d `pointwise`
    (-> out_channels, bias `bias`, activation `pw_activation`); the state_dict keys are
    `depthwise.weight`, `depthwise.bias`, `pointwise.weight`, `pointwise.bias`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair,
                 stride: IntPair = 1, padding: Padding = 0, dilation: IntPair = 1, *,
                 depth_multiplier: int = 1, bias: bool = True, dw_bias: bool = False,
                 dw_activation: Optional[str] = None, pw_activation: Optional[str] = None,
                 device=None, dtype=None):
        super().__init__()
        _check_channels(type(self).__name__, in_channels=in_channels,
                        out_channels=out_channels, depth_multiplier=depth_multiplier)
        mid = in_channels * depth_multiplier
        self.depthwise = DepthwiseConv2d(in_channels, mid, kernel_size, stride, padding, dilation,
                                         bias=dw_bias, activation=dw_activation, device=device,
                                         dtype=dtype)
        self.pointwise = PointwiseConv2d(mid, out_channels, bias=bias, activation=pw_activation,
                                         device=device, dtype=dtype)

    @classmethod
    def from_parts(cls, depthwise: DepthwiseConv2d, pointwise: PointwiseConv2d) -> "SeparableConv2d":
        """A SeparableConv2d made of these two modules (used as they are, not copied)."""
        if not isinstance(depthwise, DepthwiseConv2d) or not isinstance(pointwise, PointwiseConv2d):
            raise TypeError("SeparableConv2d.from_parts expects a DepthwiseConv2d and a "
                            f"PointwiseConv2d, got {type(depthwise).__name__} and "
                            f"{type(pointwise).__name__}")
        if pointwise.in_channels != depthwise.out_channels:
            raise ValueError(f"SeparableConv2d.from_parts: the pointwise stage takes "
                             f"{pointwise.in_channels} channels but the depthwise stage gives "
                             f"{depthwise.out_channels}")
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        module.depthwise, module.pointwise = depthwise, pointwise
        return module

    @classmethod
    def from_modules(cls, dw_conv: nn.Conv2d, pw_conv: nn.Conv2d, *,
                     dw_bn: Optional[nn.Module] = None, dw_activation: Activation = None,
                     pw_bn: Optional[nn.Module] = None,
                     pw_activation: Activation = None) -> "SeparableConv2d":
        """`pw_activation(pw_bn(pw_conv(dw_activation(dw_bn(dw_conv(x))))))` as one module
        (BatchNorms folded, eval mode); see DepthwiseConv2d.from_modules and
        PointwiseConv2d.from_modules for what each argument may be."""
        return cls.from_parts(DepthwiseConv2d.from_modules(dw_conv, dw_bn, dw_activation),
                              PointwiseConv2d.from_modules(pw_conv, pw_bn, pw_activation))

    # nn.Conv2d-like geometry, read from the stages.
    @property
    def in_channels(self) -> int:
        return self.depthwise.in_channels

    @property
    def out_channels(self) -> int:
        return self.pointwise.out_channels

    @property
    def kernel_size(self):
        return self.depthwise.kernel_size

    @property
    def stride(self):
        return self.depthwise.stride

    @property
    def padding(self):
        return self.depthwise.padding

    @property
    def dilation(self):
        return self.depthwise.dilation

    def reset_parameters(self) -> None:
        self.depthwise.reset_parameters()
        self.pointwise.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dsf._separable(*self._op_args(x))

    _op_name = "separable"

    def _op_args(self, x):
        dw, pw = self._modules["depthwise"], self._modules["pointwise"]
        return (x, _param(dw, "weight"), _param(pw, "weight"), _param(dw, "bias"),
                _param(pw, "bias"), dw.stride, _explicit_padding(dw), dw.dilation,
                dw.activation, pw.activation)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")


class InvertedResidual(_chain.ChainMember, nn.Module):
    """The MobileNetV2/V3 block in one fused call (`dsconv_ext.inverted_residual`): 1x1
    expand -> activation -> depthwise kxk -> activation -> 1x1 project (-> + x); neither
    the expanded tensor nor the depthwise output goes to memory.

    Holds `expand` (a PointwiseConv2d, or None when expansion is 1), `depthwise` (a
    DepthwiseConv2d) and `project` (a PointwiseConv2d, or None: the block then ends after
    the depthwise stage, where a squeeze-excite continues); `residual` adds the input.
    A block made by from_parts may also hold `se`, a SqueezeExcite between the depthwise
    stage and the projection (MobileNetV3, EfficientNet): then three calls, the fused
    block up to the squeeze-excite, the squeeze-excite, and the projection, which adds the
    residual as it stores its tiles.
    `activation` follows the expand and the depthwise stage (V2: relu6; V3: relu or
    hardswish). residual=None means: when stride is 1 and the output has the input's
    channels.
    padding defaults to kernel_size // 2 * dilation (the MobileNet convention)."""

    def __init__(self, in_channels: int, out_channels: int, expanded_channels: int,
                 kernel_size: IntPair = 3, stride: IntPair = 1, padding: Optional[Padding] = None,
                 dilation: IntPair = 1, *, activation: Optional[str] = "relu6",
                 project_activation: Optional[str] = None,
                 residual: Optional[bool] = None, bias: bool = True, device=None, dtype=None):
        super().__init__()
        _check_channels(type(self).__name__, in_channels=in_channels, out_channels=out_channels,
                        expanded_channels=expanded_channels)
        kernel, dil = _pair(kernel_size, "kernel_size"), _pair(dilation, "dilation")
        if padding is None:
            padding = (kernel[0] // 2 * dil[0], kernel[1] // 2 * dil[1])
        factory = dict(device=device, dtype=dtype)
        self.expand = (PointwiseConv2d(in_channels, expanded_channels, bias=bias,
                                       activation=activation, **factory)
                       if expanded_channels != in_channels else None)
        self.depthwise = DepthwiseConv2d(
            expanded_channels, expanded_channels, kernel, stride, padding, dil, bias=bias,
            activation=activation, **factory)
        self.project = PointwiseConv2d(expanded_channels, out_channels, bias=bias,
                                       activation=project_activation, **factory)
        self.se = None
        if residual is None:
            residual = self.depthwise.stride == (1, 1) and in_channels == out_channels
        self.residual = bool(residual)

    @classmethod
    def from_parts(cls, expand: Optional[PointwiseConv2d], depthwise: DepthwiseConv2d,
                   project: Optional[PointwiseConv2d], residual: bool = False,
                   se: Optional["SqueezeExcite"] = None) -> "InvertedResidual":
        """A block made of these modules (used as they are, not copied); `se` goes between
        the depthwise stage and `project`, which it needs."""
        for name, m, optional in (("expand", expand, True), ("project", project, True)):
            if not (isinstance(m, PointwiseConv2d) or (optional and m is None)):
                raise TypeError(f"InvertedResidual.from_parts: {name} must be a PointwiseConv2d "
                                f"or None, got {type(m).__name__}")
        if not isinstance(depthwise, DepthwiseConv2d):
            raise TypeError("InvertedResidual.from_parts: depthwise must be a DepthwiseConv2d, "
                            f"got {type(depthwise).__name__}")
        if expand is not None and expand.out_channels != depthwise.in_channels:
            raise ValueError(f"InvertedResidual.from_parts: expand gives {expand.out_channels} "
                             f"channels but depthwise takes {depthwise.in_channels}")
        if se is not None and not isinstance(se, SqueezeExcite):
            raise TypeError("InvertedResidual.from_parts: se must be a SqueezeExcite or None, "
                            f"got {type(se).__name__}")
        if se is not None and project is None:
            raise ValueError("InvertedResidual.from_parts: a block with a squeeze-excite needs "
                             "a project stage after it")
        if se is not None and se.channels != depthwise.out_channels:
            raise ValueError(f"InvertedResidual.from_parts: depthwise gives "
                             f"{depthwise.out_channels} channels but se takes {se.channels}")
        if project is not None and project.in_channels != depthwise.out_channels:
            raise ValueError(f"InvertedResidual.from_parts: depthwise gives "
                             f"{depthwise.out_channels} channels but project takes "
                             f"{project.in_channels}")
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        module.expand, module.depthwise = expand, depthwise
        module.se = se  # registered before project: the modules print in data-flow order
        module.project = project
        module.residual = bool(residual)
        return module

    @property
    def in_channels(self) -> int:
        return (self.expand or self.depthwise).in_channels

    @property
    def out_channels(self) -> int:
        return (self.project or self.depthwise).out_channels

    @property
    def stride(self):
        return self.depthwise.stride

    def reset_parameters(self) -> None:
        for m in (self.expand, self.depthwise, self.se, self.project):
            if m is not None:
                m.reset_parameters()

    _op_name = "inverted_residual"

    def _op_args(self, x):
        """The inverted_residual call's arguments. With a squeeze-excite the fused call ends
        at the depthwise stage; the projection (and the residual) come after the SE."""
        stages = self._modules
        e, d, se = stages.get("expand"), stages["depthwise"], stages.get("se")
        p = stages.get("project") if se is None else None
        return (x, _param(e, "weight") if e is not None else None, _param(d, "weight"),
                _param(p, "weight") if p is not None else None,
                _param(e, "bias") if e is not None else None, _param(d, "bias"),
                _param(p, "bias") if p is not None else None, d.stride, _explicit_padding(d),
                d.dilation, e.activation if e is not None else None, d.activation,
                p.activation if p is not None else None, self.residual and se is None)

    def _projection_args(self, h, x):
        """The projection after the squeeze-excite (its output h), adding the residual x."""
        p = self._modules["project"]
        return (h, _param(p, "weight"), _param(p, "bias"), p.activation,
                x if self.residual else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = dsf._inverted_residual(*self._op_args(x))
        se = self._modules.get("se")
        return y if se is None else dsf._pointwise(*self._projection_args(se(y), x))

    def _chain_calls(self):
        se = self._modules.get("se")
        calls = super()._chain_calls()
        if se is not None:
            if not isinstance(se, SqueezeExcite):
                return None
            calls += [(se._op_name, se._op_args(_chain.PREV)),
                      ("pointwise", self._projection_args(_chain.PREV, _chain.INPUT))]
        return calls

    def extra_repr(self) -> str:
        mid = self.depthwise.in_channels
        return (f"{self.in_channels}, {self.out_channels}, expanded_channels={mid}, "
                f"kernel_size={self.depthwise.kernel_size}, stride={self.stride}, "
                f"residual={self.residual}")


class SqueezeExcite(_chain.ChainMember, nn.Module):
    """Squeeze-and-excitation (MobileNetV3, EfficientNet) in one call
    (`dsconv_ext.squeeze_excite`): `x * gate(fc2(activation(fc1(mean over H, W of x))))`.

    Holds `fc1` (a PointwiseConv2d channels -> squeezed_channels, with the activation) and
    `fc2` (a PointwiseConv2d squeezed_channels -> channels), named as in torchvision's
    SqueezeExcitation, whose state_dict loads into this module. gate: 'hardsigmoid'
    (MobileNetV3) or 'sigmoid'."""

    def __init__(self, channels: int, squeezed_channels: int, *,
                 activation: Optional[str] = "relu", gate: str = "hardsigmoid",
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        _check_channels(type(self).__name__, channels=channels,
                        squeezed_channels=squeezed_channels)
        factory = dict(device=device, dtype=dtype)
        self.fc1 = PointwiseConv2d(channels, squeezed_channels, bias=bias,
                                   activation=activation, **factory)
        self.fc2 = PointwiseConv2d(squeezed_channels, channels, bias=bias, **factory)
        self.gate = as_gate(gate)

    @classmethod
    def from_modules(cls, fc1: nn.Conv2d, fc2: nn.Conv2d, activation: Activation = "relu",
                     gate: Union[str, nn.Module] = "hardsigmoid") -> "SqueezeExcite":
        """The squeeze-excite of these 1x1 nn.Conv2d modules (copied) and activation / gate
        (modules such as nn.ReLU and nn.Hardsigmoid, or their names)."""
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        module.fc1 = PointwiseConv2d.from_modules(fc1, activation=activation)
        module.fc2 = PointwiseConv2d.from_modules(fc2)
        if module.fc1.out_channels != module.fc2.in_channels or \
                module.fc2.out_channels != module.fc1.in_channels:
            raise ValueError(f"SqueezeExcite.from_modules: fc1 maps {module.fc1.in_channels} -> "
                             f"{module.fc1.out_channels} channels and fc2 "
                             f"{module.fc2.in_channels} -> {module.fc2.out_channels}; fc2 must "
                             "map fc1's output back to its input channels")
        module.gate = as_gate(gate)
        return module

    @property
    def channels(self) -> int:
        return self.fc1.in_channels

    @property
    def squeezed_channels(self) -> int:
        return self.fc1.out_channels

    def reset_parameters(self) -> None:
        self.fc1.reset_parameters()
        self.fc2.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dsf._squeeze_excite(*self._op_args(x))

    _op_name = "squeeze_excite"

    def _op_args(self, x):
        fc1, fc2 = self._modules["fc1"], self._modules["fc2"]
        return (x, _param(fc1, "weight"), _param(fc1, "bias"), _param(fc2, "weight"),
                _param(fc2, "bias"), fc1.activation, self.gate)

    def extra_repr(self) -> str:
        return f"{self.channels}, {self.squeezed_channels}, gate={self.gate!r}"


class Linear(nn.Linear):
    """nn.Linear computed by dsconv_ext.functional.linear, with an optional activation
    applied as the output is stored: at batch 1 (at most 4 rows), the matrix-vector kernels
    on all threads. The same parameters and state_dict as nn.Linear (it is one); the repr
    adds the activation when there is one."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device=None, dtype=None, activation: Activation = None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.activation = as_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dsf.linear(x, self.weight, self.bias, self.activation)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (f", activation={self.activation!r}" if self.activation is not None else "")

    @classmethod
    def from_linear(cls, linear: nn.Linear, activation: Activation = None) -> "Linear":
        """A Linear holding `linear`'s own parameters (no copy), then `activation` (an ops
        activation name or module)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"Linear.from_linear expects an nn.Linear, got {type(linear).__name__}")
        module = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                     device="meta", activation=activation)
        module.weight = linear.weight
        if linear.bias is not None:
            module.bias = linear.bias
        module.train(linear.training)
        return module


class Dropout(nn.Dropout):
    """nn.Dropout whose eval-mode forward returns its input directly. F.dropout returns it too
    in eval mode, but through Python argument parsing and the dispatcher: called once per
    inference (a classifier head), on a cache the network's weights have just swept, that
    path cost about 60 us on Zen 3. In training mode it is nn.Dropout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) if self.training else x

    @classmethod
    def from_dropout(cls, dropout: nn.Dropout) -> "Dropout":
        if not isinstance(dropout, nn.Dropout):
            raise TypeError(f"Dropout.from_dropout expects an nn.Dropout, got "
                            f"{type(dropout).__name__}")
        module = cls(dropout.p, dropout.inplace)
        module.train(dropout.training)
        return module


class GlobalAvgPool2d(nn.AdaptiveAvgPool2d):
    """nn.AdaptiveAvgPool2d(1) computed by dsconv_ext.global_avg_pool: one op, where ATen
    runs mean -> sum + div and a copy (about 100 us of a batch-1 MobileNetV3-Large forward
    on Zen 3, on a cache the weights have just swept). Inputs the op does not take (3-D, or
    a dtype its device has no kernels for) run nn.AdaptiveAvgPool2d's forward."""

    def __init__(self):
        super().__init__(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.dtype in op_dtypes(x.device):
            return dsf._global_avg_pool(x)
        return super().forward(x)


class FusedSequential(nn.Sequential):
    """An nn.Sequential of dsconv modules whose eager forward runs their op calls back to back
    from C++ (_C.OpChain), without returning to Python between layers: on a batch-1
    network, the interpreter's work between ops runs on caches the ops' weights have just
    swept and costs several times its hot time (MobileNetV2 on one thread: 0.41 ms of a
    7.1 ms forward spent outside the op calls). dsconv_ext.convert makes one of every
    nn.Sequential whose children all are dsconv modules; the children, their parameters and
    the state_dict are the Sequential's.

    The calls are the ones the children make (same ops, same arguments, autograd included),
    listed once and listed again after any change to a child. The children are called one by
    one as nn.Sequential does under torch.compile or tracing, for inputs with
    __torch_function__ overrides, where a module hook is registered on a child or globally,
    or where a child is parametrized or not a dsconv module."""

    def forward(self, x):
        if isinstance(x, torch.Tensor) and _chain.uses_ops(x):
            chain = self._op_chain()
            if chain is not None:
                return chain.run(x)
        return super().forward(x)

    def _op_chain(self):
        modules = tuple(self._modules.values())
        cached = self.__dict__.get("_chain")
        if cached is not None and cached[0] == _chain.generation() and cached[1] == modules:
            return cached[2]
        chain = _chain.build(modules)
        # A chain that cannot be built now (hooks) may be later: only built ones are kept.
        self.__dict__["_chain"] = (_chain.generation(), modules, chain) if chain else None
        return chain

    def __getstate__(self):  # the chain (a C++ object) is not pickled; it is rebuilt
        state = dict(super().__getstate__())
        state.pop("_chain", None)
        return state


__all__ = ["DepthwiseConv2d", "PointwiseConv2d", "SeparableConv2d", "InvertedResidual",
           "SqueezeExcite", "Linear", "Dropout", "GlobalAvgPool2d", "DenseConv2d",
           "FusedSequential", "input_major", "is_input_major"]
