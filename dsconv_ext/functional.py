"""The public ops. Arguments follow F.conv2d; this layer only turns stride, padding and
dilation into the explicit forms of the op schemas (csrc/ops/library.cpp), and every
check happens once, in csrc/ops/checks.h."""
from typing import Optional, Sequence, Tuple, Union

import torch

from . import _C

_is_compiling = torch.compiler.is_compiling
_has_torch_function = torch._C._has_torch_function


def _calling(name):
    """The call of op dsconv::<name>: its overload (looked up once; calling an overload
    skips the packet's per-call overload resolution), made through _C.<name>_call
    (csrc/ops/fast_calls.cpp: the same dispatcher call, its arguments converted by pybind11)
    where that is the same call: in eager mode, with no __torch_function__ override or mode
    on the arguments. torch.ops' boxed path costs about 4 us more per call (Zen 3: 7.6 vs
    3.4 us for a small inverted_residual), much of a small layer's time at batch 1. Under
    torch.compile, or with an override, torch.ops runs, as do arguments pybind11 cannot
    convert (so their errors are torch.ops')."""
    overload = getattr(torch.ops.dsconv, name).default
    direct = getattr(_C, f"{name}_call")

    def call(*args):
        if not _is_compiling() and not _has_torch_function(args):
            try:
                return direct(*args)
            except TypeError as e:
                if not str(e).startswith(f"{direct.__name__}(): incompatible function arguments"):
                    raise
        return overload(*args)
    call.__name__ = overload.__name__
    return call


_depthwise = _calling("depthwise")
_pointwise = _calling("pointwise")
_separable = _calling("separable")
_inverted_residual = _calling("inverted_residual")
_squeeze_excite = _calling("squeeze_excite")
_global_avg_pool = _calling("global_avg_pool")
_conv2d = _calling("conv2d")

# The activations every op accepts (defined once, in csrc/cpu/activation.h).
ACTIVATIONS = (None,) + tuple(n for n in _C.activation_names() if n != "none")
# The gates squeeze_excite applies last (csrc/cpu/activation.h).
GATES = tuple(_C.gate_names())

IntPair = Union[int, Sequence[int]]
Padding = Union[int, Sequence[int], str]


def _pair(value: IntPair, name: str) -> Tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if (isinstance(value, (tuple, list, torch.Size)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        return (value[0], value[1])
    raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")


def _padding(padding: Padding, weight: torch.Tensor, stride, dilation) -> Tuple[int, int, int, int]:
    """Explicit [top, bottom, left, right] padding, as F.conv2d would apply it."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding != "same":
            raise ValueError(f"padding must be an int, a pair of ints, 'same' or 'valid', got {padding!r}")
        if stride != (1, 1):
            raise ValueError(f"padding='same' needs stride 1 (as in F.conv2d), got stride {stride}")
        if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
            return (0, 0, 0, 0)  # the op reports the malformed weight
        out = []
        for k, d in zip(weight.shape[2:], dilation):
            total = d * (k - 1)
            out += [total // 2, total - total // 2]  # the odd extra goes bottom/right, as ATen
        return tuple(out)
    ph, pw = _pair(padding, "padding")
    return (ph, ph, pw, pw)


def depthwise(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
              stride: IntPair = 1, padding: Padding = 0, dilation: IntPair = 1,
              activation: Optional[str] = None) -> torch.Tensor:
    """Depthwise convolution, `activation(F.conv2d(x, weight, bias, stride, padding, dilation,
    groups=C))`. weight is [C*M, 1, kh, kw] (M: channel multiplier)."""
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    return _depthwise(x, weight, bias, stride,
                                      _padding(padding, weight, stride, dilation), dilation,
                                      activation)


def pointwise(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
              activation: Optional[str] = None,
              residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """1x1 convolution, `activation(F.conv2d(x, weight, bias))`, plus `residual` when given
    (a tensor of the output's shape, added after the activation as each tile is stored: a
    block's skip connection). weight is [C_out, C_in, 1, 1]."""
    return _pointwise(x, weight, bias, activation, residual)


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
           stride: IntPair = 1, padding: Padding = 0, dilation: IntPair = 1,
           activation: Optional[str] = None) -> torch.Tensor:
    """Dense convolution, `activation(F.conv2d(x, weight, bias, stride, padding, dilation))`
    with groups=1 and weight [C_out, C_in, kh, kw], computed in NHWC by an indirect GEMM
    (no im2col copy). Made for a network's first convolution (RGB input); for wide inputs
    ATen's convolution is likely faster."""
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    return _conv2d(x, weight, bias, stride, _padding(padding, weight, stride, dilation), dilation,
                   activation)


_TORCH_ACTIVATIONS = {None: lambda t: t, "relu": torch.relu,
                      "relu6": torch.nn.functional.relu6,
                      "hardswish": torch.nn.functional.hardswish}


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
           activation: Optional[str] = None) -> torch.Tensor:
    """`activation(F.linear(x, weight, bias))`; x is [*, in_features], weight [out_features,
    in_features], activation one of ACTIVATIONS. On the CPU, float32/float64 calls of at
    most 4 rows in all (a batch-1 classifier head) run as dsconv_ext.pointwise on 1x1
    images, whose matrix-vector kernels read the weight as it is, split the output features
    over the threads (ATen's batch-1 linear runs on one thread) and apply the activation as
    they store; other calls run F.linear and then the activation."""
    if activation not in _TORCH_ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if not _is_compiling() and not _has_torch_function((x, weight, bias)):
        # The same pointwise call, its checks and reshapes in C++ (fast_calls.cpp, the rule
        # of the traceable path below).
        try:
            y = _C.linear_call(x, weight, bias, activation)
            if y is not None:
                return y
        except TypeError as e:  # not tensors: the checks below say what is wrong
            if not str(e).startswith("linear_call(): incompatible function arguments"):
                raise
    if (x.dim() >= 1 and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and isinstance(weight, torch.Tensor) and weight.dim() == 2
            and weight.shape[1] == x.shape[-1] > 0
            and 0 < x.numel() // x.shape[-1] <= _C.gemv_max_pixels):
        y = _pointwise(x.reshape(-1, x.shape[-1], 1, 1),
                       weight.reshape(weight.shape[0], weight.shape[1], 1, 1), bias, activation)
        return y.reshape(*x.shape[:-1], weight.shape[0])
    return _TORCH_ACTIVATIONS[activation](torch.nn.functional.linear(x, weight, bias))


def separable(x: torch.Tensor, dw_weight: torch.Tensor, pw_weight: torch.Tensor,
              dw_bias: Optional[torch.Tensor] = None, pw_bias: Optional[torch.Tensor] = None,
              stride: IntPair = 1, padding: Padding = 0, dilation: IntPair = 1,
              dw_activation: Optional[str] = None,
              pw_activation: Optional[str] = None) -> torch.Tensor:
    """Fused depthwise -> bias -> act -> pointwise -> bias -> act; the depthwise output is
    never written to memory."""
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    return _separable(x, dw_weight, pw_weight, dw_bias, pw_bias, stride,
                      _padding(padding, dw_weight, stride, dilation), dilation, dw_activation,
                      pw_activation)


def inverted_residual(x: torch.Tensor, expand_weight: Optional[torch.Tensor],
                      dw_weight: torch.Tensor, project_weight: Optional[torch.Tensor],
                      expand_bias: Optional[torch.Tensor] = None,
                      dw_bias: Optional[torch.Tensor] = None,
                      project_bias: Optional[torch.Tensor] = None, stride: IntPair = 1,
                      padding: Padding = 0, dilation: IntPair = 1,
                      expand_activation: Optional[str] = None,
                      dw_activation: Optional[str] = None,
                      project_activation: Optional[str] = None,
                      residual: bool = False) -> torch.Tensor:
    """The MobileNetV2/V3 block in one call: 1x1 expand -> bias -> act -> depthwise -> bias
    -> act -> 1x1 project -> bias -> act (-> + x with residual=True). Neither the expanded
    tensor nor the depthwise output is written to memory. expand_weight=None skips the
    expand stage (expansion 1); project_weight=None returns the depthwise stage's output
    (where a squeeze-excite comes next). stride, padding and dilation are the depthwise
    stage's, as in F.conv2d."""
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    return _inverted_residual(x, expand_weight, dw_weight, project_weight, expand_bias, dw_bias,
                              project_bias, stride, _padding(padding, dw_weight, stride, dilation),
                              dilation, expand_activation, dw_activation, project_activation,
                              bool(residual))


def squeeze_excite(x: torch.Tensor, reduce_weight: torch.Tensor,
                   reduce_bias: Optional[torch.Tensor], expand_weight: torch.Tensor,
                   expand_bias: Optional[torch.Tensor] = None,
                   activation: Optional[str] = "relu", gate: str = "hardsigmoid") -> torch.Tensor:
    """Squeeze-and-excitation in one call: `x * gate(conv2d(act(conv2d(x.mean((2, 3),
    keepdim=True), reduce_weight, reduce_bias)), expand_weight, expand_bias))`.
    reduce_weight is [S, C, 1, 1], expand_weight [C, S, 1, 1] (the two 1x1 convolutions'
    weights); activation is one of ACTIVATIONS, gate one of GATES ('hardsigmoid' as in
    MobileNetV3, 'sigmoid'). The output has x's memory format."""
    return _squeeze_excite(x, reduce_weight, reduce_bias, expand_weight, expand_bias,
                           activation, gate)


def global_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """The mean of each channel over H and W, `F.adaptive_avg_pool2d(x, 1)`: x is
    [N, C, H, W], the output [N, C, 1, 1] in x's memory format. One op on the CPU (the
    squeeze of squeeze_excite); with gradients, and on CUDA, ATen's mean."""
    return _global_avg_pool(x)
