"""Autograd for every forward op, built from the backward ops (themselves ops with fake
kernels, so backward graphs trace under torch.compile). Each setup saves only what the
requested gradients need; activations are differentiated from the op's output where the
output determines the slope (relu, relu6) and from the recomputed pre-activation
otherwise (hardswish).

The backward ops have autograd too (each gradient of a bilinear op is another op), so
double backward through every forward op is exact rather than silently missing terms."""
import torch

from . import _C

ops = torch.ops.dsconv
aten = torch.ops.aten

# How each activation's gradient is formed: from the output, or from the pre-activation.
_NEEDS_PREACTIVATION = {None: False, "relu": False, "relu6": False, "hardswish": True}
assert set(_NEEDS_PREACTIVATION) - {None} == set(_C.activation_names()) - {"none"}, \
    "activation list in csrc/cpu/activation.h and the backward rules here disagree"


def _activation_backward(grad, activation, output, preactivation):
    """dL/d(pre-activation) given dL/d(output). `preactivation` is a thunk, called only
    when the activation needs it."""
    if activation is None:
        return grad
    if activation == "relu":
        return aten.threshold_backward(grad, output, 0)
    if activation == "relu6":
        return aten.hardtanh_backward(grad, output, 0.0, 6.0)
    if activation == "hardswish":
        return aten.hardswish_backward(grad, preactivation())
    raise ValueError(f"unknown activation {activation!r}")


def _needs_input_grad(ctx, count):
    """ctx.needs_input_grad for the first `count` arguments. The dispatcher drops trailing
    arguments equal to their defaults (bias=None, stride=[1, 1], ...) before autograd sees
    them, so the tuple may be shorter; dropped arguments need no gradient."""
    need = tuple(ctx.needs_input_grad)[:count]
    return need + (False,) * (count - len(need))


def _bias_grad(grad):
    return grad.sum(dim=(0, 2, 3))


# ---- depthwise ----

def _depthwise_setup(ctx, inputs, output):
    x, weight, bias, stride, padding, dilation, activation = inputs
    need_x, need_w, need_b = _needs_input_grad(ctx, 3)
    ctx.geometry = (stride, padding, dilation)
    ctx.activation = activation
    ctx.input_size = tuple(x.shape)
    ctx.weight_size = tuple(weight.shape)
    recompute = _NEEDS_PREACTIVATION[activation] and (need_x or need_w or need_b)
    ctx.save_for_backward(
        x if (need_w or recompute) else None,
        weight if (need_x or recompute) else None,
        bias if recompute else None,
        output if activation is not None and not _NEEDS_PREACTIVATION[activation] else None)


def _depthwise_backward(ctx, grad):
    x, weight, bias, output = ctx.saved_tensors
    stride, padding, dilation = ctx.geometry
    g = _activation_backward(
        grad, ctx.activation, output,
        lambda: ops.depthwise(x, weight, bias, stride, padding, dilation, None))
    need_x, need_w, need_b = _needs_input_grad(ctx, 3)
    gx = ops.depthwise_backward_input(g, weight, ctx.input_size, stride, padding, dilation) if need_x else None
    gw = ops.depthwise_backward_weight(g, x, ctx.weight_size, stride, padding, dilation) if need_w else None
    gb = _bias_grad(g) if need_b else None
    return gx, gw, gb, None, None, None, None


torch.library.register_autograd("dsconv::depthwise", _depthwise_backward,
                                setup_context=_depthwise_setup)


# ---- pointwise ----

def _pointwise_setup(ctx, inputs, output):
    x, weight, bias, activation = inputs
    need_x, need_w, need_b = _needs_input_grad(ctx, 3)
    ctx.activation = activation
    recompute = _NEEDS_PREACTIVATION[activation] and (need_x or need_w or need_b)
    ctx.save_for_backward(
        x if (need_w or recompute) else None,
        weight if (need_x or recompute) else None,
        bias if recompute else None,
        output if activation is not None and not _NEEDS_PREACTIVATION[activation] else None)


def _pointwise_backward(ctx, grad):
    x, weight, bias, output = ctx.saved_tensors
    g = _activation_backward(grad, ctx.activation, output,
                             lambda: ops.pointwise(x, weight, bias, None))
    need_x, need_w, need_b = _needs_input_grad(ctx, 3)
    gx = ops.pointwise_backward_input(g, weight) if need_x else None
    gw = ops.pointwise_backward_weight(g, x) if need_w else None
    gb = _bias_grad(g) if need_b else None
    return gx, gw, gb, None


torch.library.register_autograd("dsconv::pointwise", _pointwise_backward,
                                setup_context=_pointwise_setup)


# ---- separable: recompute the depthwise stage, then chain the two backward passes ----

def _separable_setup(ctx, inputs, output):
    x, dw_weight, pw_weight, dw_bias, pw_bias, stride, padding, dilation, dw_act, pw_act = inputs
    ctx.geometry = (stride, padding, dilation)
    ctx.activations = (dw_act, pw_act)
    ctx.input_size = tuple(x.shape)
    ctx.weight_size = tuple(dw_weight.shape)
    ctx.save_for_backward(x, dw_weight, pw_weight, dw_bias, pw_bias,
                          output if pw_act is not None and not _NEEDS_PREACTIVATION[pw_act] else None)


def _separable_backward(ctx, grad):
    x, dw_weight, pw_weight, dw_bias, pw_bias, output = ctx.saved_tensors
    stride, padding, dilation = ctx.geometry
    dw_act, pw_act = ctx.activations
    need = _needs_input_grad(ctx, 5)
    mid = ops.depthwise(x, dw_weight, dw_bias, stride, padding, dilation, dw_act)
    g_pw = _activation_backward(grad, pw_act, output,
                                lambda: ops.pointwise(mid, pw_weight, pw_bias, None))
    g_pw_weight = ops.pointwise_backward_weight(g_pw, mid) if need[2] else None
    g_pw_bias = _bias_grad(g_pw) if need[4] else None
    g_dw_weight = g_dw_bias = gx = None
    if need[0] or need[1] or need[3]:
        g_mid = ops.pointwise_backward_input(g_pw, pw_weight)
        g_dw = _activation_backward(
            g_mid, dw_act, mid,
            lambda: ops.depthwise(x, dw_weight, dw_bias, stride, padding, dilation, None))
        if need[0]:
            gx = ops.depthwise_backward_input(g_dw, dw_weight, ctx.input_size, stride, padding, dilation)
        if need[1]:
            g_dw_weight = ops.depthwise_backward_weight(g_dw, x, ctx.weight_size, stride, padding, dilation)
        if need[3]:
            g_dw_bias = _bias_grad(g_dw)
    return gx, g_dw_weight, g_pw_weight, g_dw_bias, g_pw_bias, None, None, None, None, None


torch.library.register_autograd("dsconv::separable", _separable_backward,
                                setup_context=_separable_setup)


# ---- the backward ops: bilinear in their two tensors, so each gradient is one of the ops ----
# Registered so that double backward (gradient penalties, Hessian-vector products) is
# correct rather than silently zero: every first-order backward above is built from them.

def _depthwise_backward_input_setup(ctx, inputs, output):
    grad_out, weight, input_size, stride, padding, dilation = inputs
    need_g, need_w = _needs_input_grad(ctx, 2)
    ctx.geometry = (stride, padding, dilation)
    ctx.weight_size = tuple(weight.shape)
    ctx.save_for_backward(grad_out if need_w else None, weight if need_g else None)


def _depthwise_backward_input_backward(ctx, grad):
    # gx = depthwise_backward_input(g, w): d/dg is the forward op, d/dw the weight backward.
    grad_out, weight = ctx.saved_tensors
    stride, padding, dilation = ctx.geometry
    need_g, need_w = _needs_input_grad(ctx, 2)
    gg = ops.depthwise(grad, weight, None, stride, padding, dilation, None) if need_g else None
    gw = ops.depthwise_backward_weight(grad_out, grad, ctx.weight_size, stride, padding,
                                       dilation) if need_w else None
    return gg, gw, None, None, None, None


torch.library.register_autograd("dsconv::depthwise_backward_input",
                                _depthwise_backward_input_backward,
                                setup_context=_depthwise_backward_input_setup)


def _depthwise_backward_weight_setup(ctx, inputs, output):
    grad_out, x, weight_size, stride, padding, dilation = inputs
    need_g, need_x = _needs_input_grad(ctx, 2)
    ctx.geometry = (stride, padding, dilation)
    ctx.input_size = tuple(x.shape)
    ctx.save_for_backward(grad_out if need_x else None, x if need_g else None)


def _depthwise_backward_weight_backward(ctx, grad):
    # gw = depthwise_backward_weight(g, x): d/dg is the forward op with weight `grad`,
    # d/dx the input backward with weight `grad`.
    grad_out, x = ctx.saved_tensors
    stride, padding, dilation = ctx.geometry
    need_g, need_x = _needs_input_grad(ctx, 2)
    gg = ops.depthwise(x, grad, None, stride, padding, dilation, None) if need_g else None
    gx = ops.depthwise_backward_input(grad_out, grad, ctx.input_size, stride, padding,
                                      dilation) if need_x else None
    return gg, gx, None, None, None, None


torch.library.register_autograd("dsconv::depthwise_backward_weight",
                                _depthwise_backward_weight_backward,
                                setup_context=_depthwise_backward_weight_setup)


def _pointwise_backward_input_setup(ctx, inputs, output):
    grad_out, weight = inputs
    need_g, need_w = _needs_input_grad(ctx, 2)
    ctx.save_for_backward(grad_out if need_w else None, weight if need_g else None)


def _pointwise_backward_input_backward(ctx, grad):
    grad_out, weight = ctx.saved_tensors
    need_g, need_w = _needs_input_grad(ctx, 2)
    gg = ops.pointwise(grad, weight, None, None) if need_g else None
    gw = ops.pointwise_backward_weight(grad_out, grad) if need_w else None
    return gg, gw


torch.library.register_autograd("dsconv::pointwise_backward_input",
                                _pointwise_backward_input_backward,
                                setup_context=_pointwise_backward_input_setup)


def _pointwise_backward_weight_setup(ctx, inputs, output):
    grad_out, x = inputs
    need_g, need_x = _needs_input_grad(ctx, 2)
    ctx.save_for_backward(grad_out if need_x else None, x if need_g else None)


def _pointwise_backward_weight_backward(ctx, grad):
    grad_out, x = ctx.saved_tensors
    need_g, need_x = _needs_input_grad(ctx, 2)
    gg = ops.pointwise(x, grad, None, None) if need_g else None
    gx = ops.pointwise_backward_input(grad_out, grad) if need_x else None
    return gg, gx


torch.library.register_autograd("dsconv::pointwise_backward_weight",
                                _pointwise_backward_weight_backward,
                                setup_context=_pointwise_backward_weight_setup)
