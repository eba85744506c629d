"""Autograd for the backward ops. The forward ops' autograd is registered in C++
(csrc/ops/autograd.cpp: it runs on every call with nn.Parameter weights, even under
no_grad, and a Python one costs ~10 us there); it is built from the backward ops, which get
their autograd here (each gradient of a bilinear op is another op), so double backward
through every forward op is exact rather than silently missing terms."""
import torch


ops = torch.ops.dsconv


def _needs_input_grad(ctx, count):
    """ctx.needs_input_grad for the first `count` arguments. The dispatcher drops trailing
    arguments equal to their defaults (bias=None, stride=[1, 1], ...) before autograd sees
    them, so the tuple may be shorter; dropped arguments need no gradient."""
    need = tuple(ctx.needs_input_grad)[:count]
    return need + (False,) * (count - len(need))


# ---- the backward ops: bilinear in their two tensors, so each gradient is one of the ops ----
# Registered so that double backward (gradient penalties, Hessian-vector products) is
# correct rather than silently zero: every first-order backward is built from them.

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
