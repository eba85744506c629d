"""Fake (meta) kernels: output shape, dtype, device and memory format of every op, for
torch.compile and FakeTensor tracing. Argument validation stays in the real kernels."""
import torch

lib = "dsconv::"


def _format(t):
    # Mirrors layout_of() in csrc/ops/tensor_shapes.h: channels_last only when the tensor
    # is channels_last-contiguous and not NCHW-contiguous.
    if not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _empty(like, shape, fmt):
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=fmt)


def _check_device(ref_name, ref, /, **others):
    # The real kernels never see mixed devices: the dispatcher sends a call with any meta
    # tensor here, so this is where a meta weight with a cpu x is refused (same wording
    # as check_same_kind in csrc/ops/checks.h).
    for name, t in others.items():
        if t is not None and t.device != ref.device:
            raise RuntimeError(f"{name} is on {t.device} but {ref_name} is on {ref.device}; "
                               "all tensors of a call must be on one device")


def _out_size(size, kernel, stride, pad_a, pad_b, dilation):
    return (size + pad_a + pad_b - dilation * (kernel - 1) - 1) // stride + 1


def _conv_out(x, weight, stride, padding, dilation):
    return (_out_size(x.shape[2], weight.shape[2], stride[0], padding[0], padding[1], dilation[0]),
            _out_size(x.shape[3], weight.shape[3], stride[1], padding[2], padding[3], dilation[1]))


@torch.library.register_fake(lib + "depthwise")
def _depthwise(x, weight, bias=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1),
               activation=None):
    _check_device("x", x, weight=weight, bias=bias)
    oh, ow = _conv_out(x, weight, stride, padding, dilation)
    return _empty(x, (x.shape[0], weight.shape[0], oh, ow), _format(x))


@torch.library.register_fake(lib + "conv2d")
def _conv2d(x, weight, bias=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1),
            activation=None):
    _check_device("x", x, weight=weight, bias=bias)
    oh, ow = _conv_out(x, weight, stride, padding, dilation)
    return _empty(x, (x.shape[0], weight.shape[0], oh, ow), _format(x))


@torch.library.register_fake(lib + "depthwise_backward_input")
def _depthwise_backward_input(grad_out, weight, input_size, stride, padding, dilation):
    _check_device("grad_out", grad_out, weight=weight)
    return _empty(grad_out, tuple(input_size), _format(grad_out))


@torch.library.register_fake(lib + "depthwise_backward_weight")
def _depthwise_backward_weight(grad_out, x, weight_size, stride, padding, dilation):
    _check_device("grad_out", grad_out, x=x)
    return _empty(x, tuple(weight_size), torch.contiguous_format)


@torch.library.register_fake(lib + "pointwise")
def _pointwise(x, weight, bias=None, activation=None, residual=None):
    _check_device("x", x, weight=weight, bias=bias, residual=residual)
    return _empty(x, (x.shape[0], weight.shape[0], x.shape[2], x.shape[3]), _format(x))


@torch.library.register_fake(lib + "pointwise_backward_input")
def _pointwise_backward_input(grad_out, weight):
    _check_device("grad_out", grad_out, weight=weight)
    g = grad_out
    return _empty(g, (g.shape[0], weight.shape[1], g.shape[2], g.shape[3]), _format(g))


@torch.library.register_fake(lib + "pointwise_backward_weight")
def _pointwise_backward_weight(grad_out, x):
    _check_device("grad_out", grad_out, x=x)
    return _empty(x, (grad_out.shape[1], x.shape[1], 1, 1), torch.contiguous_format)


@torch.library.register_fake(lib + "separable")
def _separable(x, dw_weight, pw_weight, dw_bias=None, pw_bias=None, stride=(1, 1),
               padding=(0, 0, 0, 0), dilation=(1, 1), dw_activation=None, pw_activation=None):
    _check_device("x", x, dw_weight=dw_weight, pw_weight=pw_weight, dw_bias=dw_bias,
                  pw_bias=pw_bias)
    oh, ow = _conv_out(x, dw_weight, stride, padding, dilation)
    return _empty(x, (x.shape[0], pw_weight.shape[0], oh, ow), _format(x))


@torch.library.register_fake(lib + "inverted_residual")
def _inverted_residual(x, expand_weight, dw_weight, project_weight, expand_bias=None,
                       dw_bias=None, project_bias=None, stride=(1, 1), padding=(0, 0, 0, 0),
                       dilation=(1, 1), expand_activation=None, dw_activation=None,
                       project_activation=None, residual=False):
    _check_device("x", x, expand_weight=expand_weight, dw_weight=dw_weight,
                  project_weight=project_weight, expand_bias=expand_bias, dw_bias=dw_bias,
                  project_bias=project_bias)
    oh, ow = _conv_out(x, dw_weight, stride, padding, dilation)
    out = project_weight.shape[0] if project_weight is not None else dw_weight.shape[0]
    return _empty(x, (x.shape[0], out, oh, ow), _format(x))


@torch.library.register_fake(lib + "squeeze_excite")
def _squeeze_excite(x, reduce_weight, reduce_bias, expand_weight, expand_bias,
                    activation="relu", gate="hardsigmoid"):
    _check_device("x", x, reduce_weight=reduce_weight, reduce_bias=reduce_bias,
                  expand_weight=expand_weight, expand_bias=expand_bias)
    return _empty(x, tuple(x.shape), _format(x))


@torch.library.register_fake(lib + "global_avg_pool")
def _global_avg_pool(x):
    return _empty(x, (x.shape[0], x.shape[1], 1, 1), _format(x))
