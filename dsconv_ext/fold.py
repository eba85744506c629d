"""BatchNorm folding: at inference BatchNorm is a per-channel affine map,
`y = (x - mean) / sqrt(var + eps) * gamma + beta`, so after a convolution it folds into
the convolution's weight and bias."""
import copy
from typing import NamedTuple, Optional, Tuple

import torch
from torch import nn

from ._recognize import has_hooks


class BatchNormParams(NamedTuple):
    """What an eval-mode BatchNorm computes with (weight and bias None when not affine)."""
    running_mean: torch.Tensor
    running_var: torch.Tensor
    weight: Optional[torch.Tensor]
    bias: Optional[torch.Tensor]
    eps: float


_BatchNorm = nn.modules.batchnorm._BatchNorm


def batch_norm_params(bn: nn.Module) -> BatchNormParams:
    """The parameters of a BatchNorm module that can be folded. Raises TypeError for other
    modules (BatchNorm subclasses that change forward included, e.g. ones that also apply an
    activation), RuntimeError in training mode, ValueError without running statistics."""
    if not isinstance(bn, _BatchNorm):
        raise TypeError(f"expected a BatchNorm module, got {type(bn).__name__}")
    plain = type(bn).forward in (_BatchNorm.forward, nn.SyncBatchNorm.forward)
    if not plain or has_hooks(bn):
        raise TypeError(f"{type(bn).__name__} overrides BatchNorm's forward or has forward hooks, "
                        "so folding its normalization alone would change the result")
    if bn.training:
        raise RuntimeError(
            f"{type(bn).__name__} is in training mode: it normalizes with the statistics of each "
            "batch, which cannot be folded into weights; call .eval() on the model first")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"{type(bn).__name__} has no running statistics "
                         "(track_running_stats=False), so it normalizes with batch statistics "
                         "even in eval mode and cannot be folded")
    return BatchNormParams(bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.eps)


def fold_into(weight: torch.Tensor, bias: Optional[torch.Tensor],
              bn: BatchNormParams) -> Tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of `batch_norm(conv(x, weight, bias))` as one convolution (any conv
    whose output channels are weight's first dimension). Computed in float64, returned in
    weight's dtype, detached."""
    channels = weight.shape[0]
    if bn.running_mean.numel() != channels:
        raise ValueError(f"BatchNorm has {bn.running_mean.numel()} channels but the convolution "
                         f"before it has {channels} output channels")
    with torch.no_grad():
        wide = dict(dtype=torch.float64, device=weight.device)
        scale = torch.rsqrt(bn.running_var.to(**wide) + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.to(**wide)
        shift = -bn.running_mean.to(**wide) * scale
        if bias is not None:
            shift = shift + bias.to(**wide) * scale
        if bn.bias is not None:
            shift = shift + bn.bias.to(**wide)
        new_weight = weight.to(torch.float64) * scale.reshape(-1, *([1] * (weight.dim() - 1)))
        return (new_weight.to(weight.dtype).contiguous(), shift.to(weight.dtype))


def fold_bn(conv: nn.Module, bn: nn.Module) -> nn.Module:
    """`conv` followed by `bn` (in eval mode) as one module: a copy of `conv` whose weight and
    bias absorb the normalization. `conv` is an nn.Conv2d (any groups, kernel or padding), a
    dsconv_ext DepthwiseConv2d or PointwiseConv2d without activation, or a SeparableConv2d
    without pointwise activation (the BatchNorm folds into its pointwise stage). The copy
    always has a bias; `conv` and `bn` are left unchanged.

    Raises RuntimeError when bn is in training mode (batch statistics cannot be folded)."""
    from . import nn as dse_nn  # the nn modules import this file

    params = batch_norm_params(bn)
    if isinstance(conv, dse_nn.SeparableConv2d):
        return dse_nn.SeparableConv2d.from_parts(copy.deepcopy(conv.depthwise),
                                                 fold_bn(conv.pointwise, bn))
    if isinstance(conv, (dse_nn.DepthwiseConv2d, dse_nn.PointwiseConv2d)):
        if conv.activation is not None:
            raise ValueError(f"{type(conv).__name__} applies activation {conv.activation!r} "
                             "before the BatchNorm, so the BatchNorm cannot be folded into it")
    elif not isinstance(conv, nn.Conv2d):
        raise TypeError("fold_bn folds into an nn.Conv2d, DepthwiseConv2d, PointwiseConv2d or "
                        f"SeparableConv2d, got {type(conv).__name__}")
    weight, bias = fold_into(conv.weight, conv.bias, params)
    folded = copy.deepcopy(conv)
    folded.weight = nn.Parameter(weight, requires_grad=conv.weight.requires_grad)
    folded.bias = nn.Parameter(bias, requires_grad=conv.weight.requires_grad)
    return folded
