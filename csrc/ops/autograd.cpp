// Autograd for the three forward ops, registered in C++: under torch.no_grad() with
// nn.Parameter weights (the usual model.eval() setup) the Autograd kernel still runs on
// every call, and a Python-registered one costs ~10 us per call there, more than the
// compute of the 7x7 / 14x14 layers. The formulas match the backward ops' definitions:
// activations are differentiated from the op's output where it fixes the slope (relu,
// relu6) and from the recomputed pre-activation otherwise (hardswish); only what the
// requested gradients need is saved. The backward ops called here have autograd of their
// own (dsconv_ext/_autograd.py), so double backward works through these too.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "checks.h"
#include "conv2d.h"
#include "global_avg_pool.h"
#include "inverted_residual.h"
#include "op_handles.h"
#include "squeeze_excite.h"
#include "tensor_shapes.h"

namespace dsconv::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool needs_preactivation(Activation act) { return act == Activation::hardswish; }
bool slope_from_output(Activation act) { return act == Activation::relu || act == Activation::relu6; }

// dL/d(pre-activation) from dL/d(output).
template <typename Recompute>
at::Tensor activation_backward(const at::Tensor& grad, Activation act, const at::Tensor& output,
                               const Recompute& preactivation) {
  switch (act) {
    case Activation::none:
      return grad;
    case Activation::relu:
      return at::threshold_backward(grad, output, 0);
    case Activation::relu6:
      return at::hardtanh_backward(grad, output, 0, 6);
    case Activation::hardswish:
      return at::hardswish_backward(grad, preactivation());
  }
  return grad;
}

at::Tensor bias_grad(const at::Tensor& g) { return g.sum({0, 2, 3}); }

// The incoming gradient in the layout the forward computed in (saved by save_layout), so
// the backward pass stays in one layout: upstream ops may hand over any strides (a mean's
// gradient is an expanded tensor), and one copy here saves the activation backward's
// mixed-format loop and a layout copy in every backward op below.
void save_layout(AutogradContext* ctx, const at::Tensor& y) {
  ctx->saved_data["channels_last"] = layout_of(y) == Layout::nhwc;
}
at::Tensor incoming_grad(AutogradContext* ctx, const at::Tensor& grad) {
  return grad.contiguous(memory_format(ctx->saved_data["channels_last"].toBool() ? Layout::nhwc
                                                                                 : Layout::nchw));
}

OptString activation_arg(const std::string& name) {
  return name.empty() ? OptString() : OptString(c10::string_view(name));
}

std::string activation_name(const OptString& a) { return a ? std::string(a->data(), a->size()) : ""; }

// Geometry arguments kept for backward.
void save_geometry(AutogradContext* ctx, at::IntArrayRef stride, at::IntArrayRef padding,
                   at::IntArrayRef dilation) {
  ctx->saved_data["stride"] = stride.vec();
  ctx->saved_data["padding"] = padding.vec();
  ctx->saved_data["dilation"] = dilation.vec();
}

struct Geometry3 {
  std::vector<int64_t> stride, padding, dilation;
};
Geometry3 load_geometry(AutogradContext* ctx) {
  return {ctx->saved_data["stride"].toIntVector(), ctx->saved_data["padding"].toIntVector(),
          ctx->saved_data["dilation"].toIntVector()};
}

// What a one-stage op (depthwise or pointwise) keeps for backward: x for the weight
// gradient, the weight for the input gradient, all three inputs when hardswish needs the
// pre-activation recomputed, the output when it fixes the activation's slope. Saved as
// [x, weight, bias, y], each undefined when not needed. Returns whether a bias was given.
bool save_single_stage(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                       const OptTensor& bias, Activation act, const at::Tensor& y) {
  const bool has_bias = bias.has_value() && bias->defined();
  // From requires_grad, not ctx->needs_input_grad: inside a running backward pass the
  // latter answers for that pass only, and a later (double) backward may need more.
  const bool need_x = x.requires_grad(), need_w = weight.requires_grad();
  const bool need_b = has_bias && bias->requires_grad();
  const bool recompute = needs_preactivation(act) && (need_x || need_w || need_b);
  ctx->save_for_backward({need_w || recompute ? x : at::Tensor(),
                          need_x || recompute ? weight : at::Tensor(),
                          recompute && has_bias ? *bias : at::Tensor(),
                          slope_from_output(act) ? y : at::Tensor()});
  return has_bias;
}

class DepthwiseFunction : public torch::autograd::Function<DepthwiseFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const OptTensor& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                            at::IntArrayRef dilation, OptString activation) {
    const Activation act = check_activation(activation, "activation");
    at::Tensor y = Ops::get().depthwise.call(x, weight, bias, stride, padding, dilation, activation);
    const bool has_bias = save_single_stage(ctx, x, weight, bias, act, y);
    save_layout(ctx, y);
    save_geometry(ctx, stride, padding, dilation);
    ctx->saved_data["activation"] = activation_name(activation);
    ctx->saved_data["has_bias"] = has_bias;
    ctx->saved_data["input_size"] = x.sizes().vec();
    ctx->saved_data["weight_size"] = weight.sizes().vec();
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1], &bias = saved[2], &y = saved[3];
    const Geometry3 geo = load_geometry(ctx);
    const std::string act_name = ctx->saved_data["activation"].toStringRef();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const at::Tensor g = activation_backward(
        incoming_grad(ctx, grads[0]), check_activation(activation_arg(act_name), "activation"), y, [&] {
          return Ops::get().depthwise.call(x, weight, bias.defined() ? OptTensor(bias) : OptTensor(),
                                           geo.stride, geo.padding, geo.dilation, OptString());
        });
    at::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) {
      gx = Ops::get().dw_grad_input.call(g, weight, ctx->saved_data["input_size"].toIntVector(),
                                         geo.stride, geo.padding, geo.dilation);
    }
    if (ctx->needs_input_grad(1)) {
      gw = Ops::get().dw_grad_weight.call(g, x, ctx->saved_data["weight_size"].toIntVector(),
                                          geo.stride, geo.padding, geo.dilation);
    }
    if (has_bias && ctx->needs_input_grad(2)) gb = bias_grad(g);
    return {gx, gw, gb, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class PointwiseFunction : public torch::autograd::Function<PointwiseFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const OptTensor& bias, OptString activation, const OptTensor& residual) {
    const Activation act = check_activation(activation, "activation");
    at::Tensor y = Ops::get().pointwise.call(x, weight, bias, activation, residual);
    const bool has_residual = residual.has_value() && residual->defined();
    // With a residual the output no longer gives relu's / relu6's slope: backward
    // recomputes the activation's output from x, the weight and the bias instead.
    const bool recompute_output = has_residual && slope_from_output(act);
    bool has_bias = bias.has_value() && bias->defined();
    if (recompute_output) {
      ctx->save_for_backward({x, weight, has_bias ? *bias : at::Tensor(), at::Tensor()});
    } else {
      has_bias = save_single_stage(ctx, x, weight, bias, act, y);
    }
    save_layout(ctx, y);
    ctx->saved_data["activation"] = activation_name(activation);
    ctx->saved_data["has_bias"] = has_bias;
    ctx->saved_data["recompute_output"] = recompute_output;
    ctx->saved_data["has_residual"] = has_residual;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1], &bias = saved[2];
    const std::string act_name = ctx->saved_data["activation"].toStringRef();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const Activation act = check_activation(activation_arg(act_name), "activation");
    const OptTensor b = bias.defined() ? OptTensor(bias) : OptTensor();
    const at::Tensor grad = incoming_grad(ctx, grads[0]);
    const at::Tensor y = ctx->saved_data["recompute_output"].toBool()
                             ? Ops::get().pointwise.call(x, weight, b, activation_arg(act_name),
                                                         OptTensor())
                             : saved[3];
    const at::Tensor g = activation_backward(grad, act, y, [&] {
      return Ops::get().pointwise.call(x, weight, b, OptString(), OptTensor());
    });
    at::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) gx = Ops::get().pw_grad_input.call(g, weight);
    if (ctx->needs_input_grad(1)) gw = Ops::get().pw_grad_weight.call(g, x);
    if (has_bias && ctx->needs_input_grad(2)) gb = bias_grad(g);
    // d(out)/d(residual) is the identity. needs_input_grad counts the tensors given (an
    // absent bias takes no index), the returned list every argument.
    const bool need_r = ctx->saved_data["has_residual"].toBool() &&
                        ctx->needs_input_grad(has_bias ? 3 : 2);
    return {gx, gw, gb, at::Tensor(), need_r ? grad : at::Tensor()};
  }
};

// Backward recomputes the depthwise stage (the forward never materializes it), then
// chains the pointwise and depthwise backward passes.
class SeparableFunction : public torch::autograd::Function<SeparableFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& dw_weight,
                            const at::Tensor& pw_weight, const OptTensor& dw_bias,
                            const OptTensor& pw_bias, at::IntArrayRef stride,
                            at::IntArrayRef padding, at::IntArrayRef dilation,
                            OptString dw_activation, OptString pw_activation) {
    check_activation(dw_activation, "dw_activation");
    const Activation pw_act = check_activation(pw_activation, "pw_activation");
    at::Tensor y = Ops::get().separable.call(x, dw_weight, pw_weight, dw_bias, pw_bias, stride,
                                             padding, dilation, dw_activation, pw_activation);
    const bool has_dw_bias = dw_bias.has_value() && dw_bias->defined();
    const bool has_pw_bias = pw_bias.has_value() && pw_bias->defined();
    ctx->save_for_backward({x, dw_weight, pw_weight, has_dw_bias ? *dw_bias : at::Tensor(),
                            has_pw_bias ? *pw_bias : at::Tensor(),
                            slope_from_output(pw_act) ? y : at::Tensor()});
    save_geometry(ctx, stride, padding, dilation);
    save_layout(ctx, y);
    ctx->saved_data["dw_activation"] = activation_name(dw_activation);
    ctx->saved_data["pw_activation"] = activation_name(pw_activation);
    ctx->saved_data["input_size"] = x.sizes().vec();
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &dw_weight = saved[1], &pw_weight = saved[2];
    const OptTensor dw_bias = saved[3].defined() ? OptTensor(saved[3]) : OptTensor();
    const OptTensor pw_bias = saved[4].defined() ? OptTensor(saved[4]) : OptTensor();
    const at::Tensor& y = saved[5];
    const Geometry3 geo = load_geometry(ctx);
    const std::string dw_name = ctx->saved_data["dw_activation"].toStringRef();
    const std::string pw_name = ctx->saved_data["pw_activation"].toStringRef();
    const Activation dw_act = check_activation(activation_arg(dw_name), "dw_activation");
    const Activation pw_act = check_activation(activation_arg(pw_name), "pw_activation");
    // Edge indices: x, dw_weight, pw_weight, then each bias that was given.
    const size_t dw_bias_edge = 3, pw_bias_edge = dw_bias ? 4 : 3;
    const bool need_x = ctx->needs_input_grad(0), need_dw_w = ctx->needs_input_grad(1);
    const bool need_pw_w = ctx->needs_input_grad(2);
    const bool need_dw_b = dw_bias && ctx->needs_input_grad(dw_bias_edge);
    const bool need_pw_b = pw_bias && ctx->needs_input_grad(pw_bias_edge);
    const auto& ops = Ops::get();

    const at::Tensor mid = ops.depthwise.call(x, dw_weight, dw_bias, geo.stride, geo.padding,
                                              geo.dilation, activation_arg(dw_name));
    const at::Tensor g_pw = activation_backward(incoming_grad(ctx, grads[0]), pw_act, y, [&] {
      return ops.pointwise.call(mid, pw_weight, pw_bias, OptString(), OptTensor());
    });
    at::Tensor gx, g_dw_w, g_pw_w, g_dw_b, g_pw_b;
    if (need_pw_w) g_pw_w = ops.pw_grad_weight.call(g_pw, mid);
    if (need_pw_b) g_pw_b = bias_grad(g_pw);
    if (need_x || need_dw_w || need_dw_b) {
      const at::Tensor g_mid = ops.pw_grad_input.call(g_pw, pw_weight);
      const at::Tensor g_dw = activation_backward(g_mid, dw_act, mid, [&] {
        return ops.depthwise.call(x, dw_weight, dw_bias, geo.stride, geo.padding, geo.dilation,
                                  OptString());
      });
      if (need_x) {
        gx = ops.dw_grad_input.call(g_dw, dw_weight, ctx->saved_data["input_size"].toIntVector(),
                                    geo.stride, geo.padding, geo.dilation);
      }
      if (need_dw_w) {
        g_dw_w = ops.dw_grad_weight.call(g_dw, x, dw_weight.sizes(), geo.stride, geo.padding,
                                         geo.dilation);
      }
      if (need_dw_b) g_dw_b = bias_grad(g_dw);
    }
    return {gx, g_dw_w, g_pw_w, g_dw_b, g_pw_b, at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

// Whether a call must build a graph node. If not (no_grad, or no input requires grad),
// the op runs below autograd directly: that is the inference path and it should cost
// nothing extra. (A custom Function's context only knows its inputs' edges when it is
// recording, so this check also has to come first.)
bool records(std::initializer_list<const OptTensor*> tensors) {
  if (!at::GradMode::is_enabled()) return false;
  for (const OptTensor* t : tensors) {
    if (t->has_value() && (*t)->defined() && (*t)->requires_grad()) return true;
  }
  return false;
}

at::Tensor depthwise_autograd(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                              at::IntArrayRef stride, at::IntArrayRef padding,
                              at::IntArrayRef dilation, OptString activation) {
  const OptTensor x_ = x, w_ = weight;
  if (!records({&x_, &w_, &bias})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return Ops::get().depthwise.call(x, weight, bias, stride, padding, dilation, activation);
  }
  return DepthwiseFunction::apply(x, weight, bias, stride, padding, dilation, activation);
}

at::Tensor pointwise_autograd(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                              OptString activation, const OptTensor& residual) {
  const OptTensor x_ = x, w_ = weight;
  if (!records({&x_, &w_, &bias, &residual})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return Ops::get().pointwise.call(x, weight, bias, activation, residual);
  }
  return PointwiseFunction::apply(x, weight, bias, activation, residual);
}

at::Tensor separable_autograd(const at::Tensor& x, const at::Tensor& dw_weight,
                              const at::Tensor& pw_weight, const OptTensor& dw_bias,
                              const OptTensor& pw_bias, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef dilation,
                              OptString dw_activation, OptString pw_activation) {
  const OptTensor x_ = x, dw_ = dw_weight, pw_ = pw_weight;
  if (!records({&x_, &dw_, &pw_, &dw_bias, &pw_bias})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return Ops::get().separable.call(x, dw_weight, pw_weight, dw_bias, pw_bias, stride, padding,
                                     dilation, dw_activation, pw_activation);
  }
  return SeparableFunction::apply(x, dw_weight, pw_weight, dw_bias, pw_bias, stride, padding,
                                  dilation, dw_activation, pw_activation);
}

// With gradients, the block runs as its chain of ops (inverted_residual_composite), which
// autograd differentiates op by op (and, through the backward ops, twice): training keeps
// the expanded tensor for backward as the unfused block does. Inference runs the fused kernel.
at::Tensor inverted_residual_autograd(const at::Tensor& x, const OptTensor& expand_weight,
                                      const at::Tensor& dw_weight, const OptTensor& project_weight,
                                      const OptTensor& expand_bias, const OptTensor& dw_bias,
                                      const OptTensor& project_bias, at::IntArrayRef stride,
                                      at::IntArrayRef padding, at::IntArrayRef dilation,
                                      OptString expand_activation, OptString dw_activation,
                                      OptString project_activation, bool residual) {
  const OptTensor x_ = x, dw_ = dw_weight;
  if (!records({&x_, &expand_weight, &dw_, &project_weight, &expand_bias, &dw_bias, &project_bias})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return Ops::get().inverted_residual.call(x, expand_weight, dw_weight, project_weight,
                                             expand_bias, dw_bias, project_bias, stride, padding,
                                             dilation, expand_activation, dw_activation,
                                             project_activation, residual);
  }
  return inverted_residual_composite(x, expand_weight, dw_weight, project_weight, expand_bias,
                                     dw_bias, project_bias, stride, padding, dilation,
                                     expand_activation, dw_activation, project_activation,
                                     residual);
}

// With gradients, ATen's convolution and activation (conv2d_composite), which autograd
// differentiates to any order; inference runs the CPU kernel.
at::Tensor conv2d_autograd(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                           at::IntArrayRef stride, at::IntArrayRef padding,
                           at::IntArrayRef dilation, OptString activation) {
  const OptTensor x_ = x, w_ = weight;
  if (!records({&x_, &w_, &bias})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return Ops::get().conv2d.call(x, weight, bias, stride, padding, dilation, activation);
  }
  return conv2d_composite(x, weight, bias, stride, padding, dilation, activation);
}

// With gradients: the chain of differentiable ops (squeeze_excite_composite); inference
// runs the fused kernel.
at::Tensor squeeze_excite_autograd(const at::Tensor& x, const at::Tensor& reduce_weight,
                                   const OptTensor& reduce_bias, const at::Tensor& expand_weight,
                                   const OptTensor& expand_bias, OptString activation,
                                   c10::string_view gate) {
  const OptTensor x_ = x, rw_ = reduce_weight, ew_ = expand_weight;
  if (!records({&x_, &rw_, &reduce_bias, &ew_, &expand_bias})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return Ops::get().squeeze_excite.call(x, reduce_weight, reduce_bias, expand_weight,
                                          expand_bias, activation, gate);
  }
  return squeeze_excite_composite(x, reduce_weight, reduce_bias, expand_weight, expand_bias,
                                  activation, gate);
}

// With gradients: ATen's mean (global_avg_pool_composite); inference runs the kernel.
at::Tensor global_avg_pool_autograd(const at::Tensor& x) {
  const OptTensor x_ = x;
  if (!records({&x_})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return Ops::get().global_avg_pool.call(x);
  }
  return global_avg_pool_composite(x);
}

}  // namespace

TORCH_LIBRARY_IMPL(dsconv, Autograd, m) {
  m.impl("global_avg_pool", &global_avg_pool_autograd);
  m.impl("squeeze_excite", &squeeze_excite_autograd);
  m.impl("conv2d", &conv2d_autograd);
  m.impl("inverted_residual", &inverted_residual_autograd);
  m.impl("depthwise", &depthwise_autograd);
  m.impl("pointwise", &pointwise_autograd);
  m.impl("separable", &separable_autograd);
}

}  // namespace dsconv::ops
