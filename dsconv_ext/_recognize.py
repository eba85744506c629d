"""What a torch.nn module is in the ops' terms: which convolutions are depthwise or
pointwise (and why the others are neither), and which activation modules the ops fuse.
The nn modules' from_modules constructors and the converter both ask here, so they apply
the same rules."""
from typing import Optional, Tuple, Union

import torch
from torch import nn
from torch.nn.utils import parametrize

from . import _C
from .functional import ACTIVATIONS, GATES

# torch device type -> dispatch key the op library registers kernels under.
_DISPATCH_KEYS = {"cpu": "CPU", "cuda": "CUDA", "meta": "Meta"}


def ops_run_on(device: torch.device) -> bool:
    """Whether the dsconv ops have kernels for tensors on `device` (CPU; CUDA when the
    extension was built with CUDA)."""
    key = _DISPATCH_KEYS.get(device.type, device.type.upper())
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key("dsconv::depthwise", key)
    except RuntimeError:  # not a dispatch key this torch knows
        return False


def _dtypes_on(device_type: str) -> Tuple[torch.dtype, ...]:
    if not ops_run_on(torch.device(device_type)):
        return ()
    return tuple(getattr(torch, n) for n in _C.supported_dtypes(device_type))


# device type -> the dtypes the ops take there (checks.h's rule; none where no dsconv kernels
# are registered). A plain dict, so torch.compile traces a module's lookups in it.
_OP_DTYPES = {t: _dtypes_on(t) for t in _DISPATCH_KEYS}


def op_dtypes(device: torch.device) -> Tuple[torch.dtype, ...]:
    """The dtypes the ops take for tensors on `device`; none where no dsconv kernels are
    registered for it."""
    return _OP_DTYPES.get(device.type, ())


def has_hooks(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def is_plain(module: nn.Module, cls: type) -> bool:
    """`module` is a `cls` that computes what `cls` computes: forward not overridden by a
    subclass, no forward hooks."""
    return isinstance(module, cls) and type(module).forward is cls.forward and not has_hooks(module)


def _padded(padding) -> bool:
    if isinstance(padding, str):  # 'same' and 'valid' both mean no padding for a 1x1 kernel
        return False
    return any(p != 0 for p in padding)


# dsconv_ext.conv2d is converted in for dense convolutions of this many input channels at
# most (a network's first layer, RGB); wider ones keep ATen's convolution.
DENSE_MAX_IN_CHANNELS = 8


def conv_kind(conv: nn.Conv2d) -> Tuple[Optional[str], str]:
    """('depthwise', 'pointwise' or 'dense', '') when the ops compute what `conv` computes,
    otherwise (None, why not)."""
    if (type(conv).forward is not nn.Conv2d.forward
            or type(conv)._conv_forward is not nn.Conv2d._conv_forward):
        return None, f"{type(conv).__name__} overrides nn.Conv2d's forward"
    if parametrize.is_parametrized(conv):
        return None, "its weight is parametrized (torch.nn.utils.parametrize)"
    if has_hooks(conv):
        return None, "it has forward hooks"
    if conv.padding_mode != "zeros":
        return None, f"padding_mode={conv.padding_mode!r} (the ops pad with zeros only)"
    dtypes = op_dtypes(conv.weight.device)
    if not dtypes:
        return None, f"device {conv.weight.device} (no dsconv kernels are registered for it)"
    if conv.weight.dtype not in dtypes:
        names = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
        return None, f"dtype {conv.weight.dtype} (the ops take {names} on {conv.weight.device.type})"
    kh, kw = conv.kernel_size
    if conv.groups == 1 and (kh, kw) == (1, 1):
        if tuple(conv.stride) != (1, 1):
            return None, f"1x1 convolution with stride {tuple(conv.stride)} (pointwise means stride 1)"
        if _padded(conv.padding):
            return None, f"1x1 convolution with padding {conv.padding} (pointwise means no padding)"
        return "pointwise", ""
    if conv.groups == conv.in_channels:
        return "depthwise", ""
    if conv.groups == 1 and conv.in_channels <= DENSE_MAX_IN_CHANNELS:
        return "dense", ""
    if conv.groups == 1:
        return None, (f"standard {kh}x{kw} convolution (groups=1) of {conv.in_channels} input "
                      f"channels: neither depthwise nor pointwise, and conv2d takes "
                      f"{DENSE_MAX_IN_CHANNELS} at most")
    return None, (f"grouped convolution (groups={conv.groups} for {conv.in_channels} input "
                  "channels): neither depthwise nor pointwise")


def activation_name(module: nn.Module) -> Optional[str]:
    """The ops' name for an activation module ('relu', 'relu6', 'hardswish'), or None when
    the ops cannot apply it."""
    if is_plain(module, nn.ReLU):
        return "relu"
    if is_plain(module, nn.Hardtanh) and module.min_val == 0 and module.max_val == 6:
        return "relu6"  # nn.ReLU6 is a Hardtanh(0, 6)
    if is_plain(module, nn.Hardswish):
        return "hardswish"
    return None


def as_activation(activation: Union[None, str, nn.Module], what: str = "activation") -> Optional[str]:
    """An activation given as None, one of ACTIVATIONS, nn.Identity or an activation module,
    as the ops' name for it."""
    if activation is None or isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(f"{what} must be one of {ACTIVATIONS}, got {activation!r}")
        return activation
    if isinstance(activation, nn.Module):
        if is_plain(activation, nn.Identity):
            return None
        name = activation_name(activation)
        if name is None:
            raise ValueError(f"{what}: {type(activation).__name__} is not an activation the ops "
                             "apply (nn.ReLU, nn.ReLU6, nn.Hardtanh(0, 6), nn.Hardswish or "
                             "nn.Identity)")
        return name
    raise TypeError(f"{what} must be None, a name in {ACTIVATIONS} or an activation module, "
                    f"got {type(activation).__name__}")


def gate_name(module: nn.Module) -> Optional[str]:
    """The ops' name for a squeeze-excite gate module ('hardsigmoid', 'sigmoid'), or None."""
    if is_plain(module, nn.Hardsigmoid):
        return "hardsigmoid"
    if is_plain(module, nn.Sigmoid):
        return "sigmoid"
    return None


def as_gate(gate: Union[str, nn.Module], what: str = "gate") -> str:
    """A gate given as one of GATES or a gate module (nn.Hardsigmoid, nn.Sigmoid), as its name."""
    if isinstance(gate, str):
        if gate not in GATES:
            raise ValueError(f"{what} must be one of {GATES}, got {gate!r}")
        return gate
    if isinstance(gate, nn.Module):
        name = gate_name(gate)
        if name is None:
            raise ValueError(f"{what}: {type(gate).__name__} is not a gate the ops apply "
                             "(nn.Hardsigmoid or nn.Sigmoid)")
        return name
    raise TypeError(f"{what} must be a name in {GATES} or a gate module, got {type(gate).__name__}")
