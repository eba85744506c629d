"""torch.library.opcheck on every op (schema, autograd registration, fake kernel, AOT
dispatch) with argument sets covering layouts, dtypes, biases, activations and grads."""
import pytest
import torch

from _ref import with_layout

ops = torch.ops.dsconv


def t(*shape, layout="nchw", dtype=torch.float32, grad=False, seed=[0]):
    seed[0] += 1
    g = torch.Generator().manual_seed(seed[0])
    v = with_layout(torch.randn(*shape, generator=g, dtype=dtype), layout)
    return v.requires_grad_(grad)


def cases():
    f64 = torch.float64
    return [
        # depthwise(x, weight, bias, stride, padding, dilation, activation)
        ("depthwise", "nchw-bias", (t(2, 3, 7, 9), t(3, 1, 3, 3), t(3), [1, 1], [1, 1, 1, 1], [1, 1], None)),
        ("depthwise", "cl-asym-relu6-grad", (t(2, 3, 7, 9, layout="channels_last", grad=True),
                                             t(6, 1, 3, 2, grad=True), None, [2, 1], [0, 1, 2, 0],
                                             [1, 2], "relu6")),
        ("depthwise", "strided-f64-hardswish-grad", (t(1, 2, 6, 5, layout="strided", dtype=f64, grad=True),
                                                     t(4, 1, 2, 2, dtype=f64, grad=True),
                                                     t(4, dtype=f64, grad=True), [1, 1], [0, 0, 0, 0],
                                                     [2, 2], "hardswish")),
        ("depthwise", "cl-bias-relu-grad", (t(2, 4, 5, 5, layout="channels_last", grad=True),
                                            t(4, 1, 3, 3, grad=True), t(4, grad=True), [1, 1],
                                            [1, 1, 1, 1], [1, 1], "relu")),
        ("depthwise", "defaults-grad", (t(1, 3, 5, 5, grad=True), t(3, 1, 3, 3, grad=True))),
        # conv2d(x, weight, bias, stride, padding, dilation, activation)
        ("conv2d", "cl-bias-relu6", (t(2, 3, 9, 8, layout="channels_last"), t(6, 3, 3, 3), t(6),
                                     [2, 2], [1, 1, 1, 1], [1, 1], "relu6")),
        ("conv2d", "nchw-asym-hardswish-grad", (t(1, 3, 7, 6, grad=True), t(4, 3, 2, 2, grad=True),
                                                None, [1, 1], [0, 1, 0, 1], [1, 1], "hardswish")),
        # pointwise(x, weight, bias, activation, residual)
        ("pointwise", "residual-relu-grad", (t(2, 5, 4, 3, grad=True), t(7, 5, 1, 1, grad=True),
                                             t(7, grad=True), "relu", t(2, 7, 4, 3, grad=True))),
        ("pointwise", "cl-residual-nchw", (t(1, 5, 4, 3, layout="channels_last"), t(7, 5, 1, 1),
                                           None, None, t(1, 7, 4, 3))),
        ("pointwise", "defaults-grad", (t(1, 3, 5, 5, grad=True), t(4, 3, 1, 1, grad=True))),
        ("pointwise", "nchw-bias-relu", (t(2, 5, 4, 3), t(7, 5, 1, 1), t(7), "relu")),
        ("pointwise", "cl-hardswish-grad", (t(2, 5, 4, 3, layout="channels_last", grad=True),
                                            t(7, 5, 1, 1, grad=True), None, "hardswish")),
        ("pointwise", "f64-bias-relu6-grad", (t(1, 3, 2, 6, dtype=f64, grad=True),
                                              t(2, 3, 1, 1, dtype=f64, grad=True),
                                              t(2, dtype=f64, grad=True), "relu6")),
        # separable(x, dw_weight, pw_weight, dw_bias, pw_bias, stride, padding, dilation, dw_act, pw_act)
        ("separable", "cl-biases-grad", (t(2, 3, 7, 9, layout="channels_last", grad=True),
                                         t(6, 1, 3, 3, grad=True), t(5, 6, 1, 1, grad=True),
                                         t(6, grad=True), t(5, grad=True), [2, 2], [1, 1, 1, 1],
                                         [1, 1], "relu", "hardswish")),
        ("separable", "nchw-nobias-grad", (t(1, 4, 6, 6, grad=True), t(4, 1, 5, 5, grad=True),
                                           t(3, 4, 1, 1, grad=True), None, None, [1, 1],
                                           [2, 2, 2, 2], [1, 1], "hardswish", "relu6")),
        ("separable", "f64-asym", (t(1, 2, 5, 7, dtype=f64), t(2, 1, 2, 3, dtype=f64),
                                   t(4, 2, 1, 1, dtype=f64), t(2, dtype=f64), None, [1, 2],
                                   [0, 1, 1, 1], [2, 1], None, "relu")),
        ("separable", "defaults-grad", (t(1, 3, 5, 5, grad=True), t(3, 1, 3, 3, grad=True),
                                        t(4, 3, 1, 1, grad=True))),
        # depthwise_backward_input(grad_out, weight, input_size, stride, padding, dilation)
        ("depthwise_backward_input", "nchw", (t(2, 6, 3, 5), t(6, 1, 3, 3), [2, 3, 7, 9], [2, 2],
                                              [1, 0, 1, 1], [1, 1])),
        ("depthwise_backward_input", "cl", (t(2, 6, 3, 5, layout="channels_last"), t(6, 1, 3, 3),
                                            [2, 3, 7, 9], [2, 2], [1, 0, 1, 1], [1, 1])),
        # depthwise_backward_weight(grad_out, x, weight_size, stride, padding, dilation)
        ("depthwise_backward_weight", "nchw", (t(2, 6, 3, 5), t(2, 3, 7, 9), [6, 1, 3, 3], [2, 2],
                                               [1, 0, 1, 1], [1, 1])),
        ("depthwise_backward_weight", "cl", (t(2, 6, 3, 5, layout="channels_last"),
                                             t(2, 3, 7, 9, layout="channels_last"), [6, 1, 3, 3],
                                             [2, 2], [1, 0, 1, 1], [1, 1])),
        # pointwise_backward_input(grad_out, weight), pointwise_backward_weight(grad_out, x)
        ("pointwise_backward_input", "nchw", (t(2, 7, 4, 3), t(7, 5, 1, 1))),
        ("pointwise_backward_input", "cl", (t(2, 7, 4, 3, layout="channels_last"), t(7, 5, 1, 1))),
        ("pointwise_backward_weight", "nchw", (t(2, 7, 4, 3), t(2, 5, 4, 3))),
        ("pointwise_backward_weight", "cl", (t(2, 7, 4, 3, layout="channels_last"),
                                             t(2, 5, 4, 3, layout="channels_last"))),
        # the backward ops' own autograd (double backward): all, or one, of the tensors need grad
        ("depthwise_backward_input", "cl-grad", (t(2, 6, 3, 5, layout="channels_last", grad=True),
                                                 t(6, 1, 3, 3, grad=True), [2, 3, 7, 9], [2, 2],
                                                 [1, 0, 1, 1], [1, 1])),
        ("depthwise_backward_weight", "cl-f64-x-grad", (t(1, 4, 4, 5, layout="channels_last", dtype=f64),
                                                        t(1, 2, 5, 6, layout="channels_last", dtype=f64,
                                                          grad=True),
                                                        [4, 1, 2, 3], [1, 1], [0, 1, 1, 0], [2, 1])),
        ("pointwise_backward_input", "f64-weight-grad", (t(1, 3, 2, 6, dtype=f64),
                                                         t(3, 2, 1, 1, dtype=f64, grad=True))),
        ("pointwise_backward_weight", "nchw-grad", (t(2, 7, 4, 3, grad=True), t(2, 5, 4, 3, grad=True))),
        # inverted_residual(x, expand_weight, dw_weight, project_weight, expand_bias, dw_bias,
        # project_bias, stride, padding, dilation, expand_act, dw_act, project_act, residual)
        ("inverted_residual", "cl-residual", (t(2, 4, 6, 5, layout="channels_last"), t(12, 4, 1, 1),
                                              t(12, 1, 3, 3), t(4, 12, 1, 1), t(12), t(12), t(4),
                                              [1, 1], [1, 1, 1, 1], [1, 1], "relu6", "relu6",
                                              None, True)),
        ("inverted_residual", "nchw-no-project", (t(1, 3, 7, 6), t(6, 3, 1, 1), t(6, 1, 5, 5),
                                                  None, None, t(6), None, [2, 2], [2, 2, 2, 2],
                                                  [1, 1], "hardswish", "relu", None, False)),
        ("inverted_residual", "f64-grad", (t(1, 2, 5, 4, dtype=f64, grad=True), None,
                                           t(2, 1, 3, 3, dtype=f64, grad=True),
                                           t(2, 2, 1, 1, dtype=f64, grad=True), None, None, None,
                                           [1, 1], [1, 1, 1, 1], [1, 1], None, "relu6", None,
                                           True)),
        # squeeze_excite(x, reduce_weight, reduce_bias, expand_weight, expand_bias, activation, gate)
        ("squeeze_excite", "cl", (t(2, 6, 5, 4, layout="channels_last"), t(3, 6, 1, 1), t(3),
                                  t(6, 3, 1, 1), t(6), "relu", "hardsigmoid")),
        ("squeeze_excite", "nchw-sigmoid-grad", (t(2, 5, 3, 4, grad=True), t(2, 5, 1, 1, grad=True),
                                                 None, t(5, 2, 1, 1, grad=True), t(5, grad=True),
                                                 "hardswish", "sigmoid")),
        ("squeeze_excite", "strided-f64-grad", (t(1, 4, 3, 3, layout="strided", dtype=f64, grad=True),
                                                t(1, 4, 1, 1, dtype=f64, grad=True),
                                                t(1, dtype=f64, grad=True),
                                                t(4, 1, 1, 1, dtype=f64, grad=True), None, None,
                                                "hardsigmoid")),
        ("squeeze_excite", "cl-grad", (t(1, 7, 4, 4, layout="channels_last", grad=True),
                                       t(2, 7, 1, 1, grad=True), t(2, grad=True),
                                       t(7, 2, 1, 1, grad=True), t(7, grad=True), "relu6",
                                       "hardsigmoid")),
        # global_avg_pool(x)
        ("global_avg_pool", "cl", (t(2, 6, 5, 4, layout="channels_last"),)),
        ("global_avg_pool", "strided-f64-grad", (t(1, 4, 3, 3, layout="strided", dtype=f64,
                                                   grad=True),)),
    ]


@pytest.mark.parametrize("name, args", [pytest.param(n, a, id=f"{n}-{i}") for n, i, a in cases()])
def test_opcheck(name, args):
    torch.library.opcheck(getattr(ops, name), args)


def test_every_op_is_checked():
    registered = {n.split("::")[1].split(".")[0] for n in torch._C._dispatch_get_all_op_names()
                  if n.startswith("dsconv::")}
    assert len(registered) == 11
    assert {n for n, _, _ in cases()} == registered
