// Every argument rule of every op, once. Each failure names the argument, says what
// was wrong and what was expected. Tensor problems raise RuntimeError (as ATen does),
// bad scalar arguments raise ValueError.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>

#include <initializer_list>
#include <optional>
#include <string>

#include "../cpu/activation.h"

namespace dsconv::ops {

// The float dtypes each device's kernels implement: float32 and float64 everywhere,
// float16 and bfloat16 too on CUDA (computed in float32).
inline bool dtype_supported(at::ScalarType s, c10::DeviceType device) {
  if (s == at::kFloat || s == at::kDouble) return true;
  return device == c10::DeviceType::CUDA && (s == at::kHalf || s == at::kBFloat16);
}

inline bool dtype_supported(const at::Tensor& t) {
  return dtype_supported(t.scalar_type(), t.device().type());
}

inline const char* supported_dtypes(const at::Tensor& t) {
  return t.is_cuda() ? "float32, float64, float16 or bfloat16" : "float32 or float64";
}

inline void check_float_tensor(const at::Tensor& t, const char* name, int64_t dim,
                               const char* expected_shape) {
  TORCH_CHECK(t.defined(), name, " must be a tensor, got None");
  TORCH_CHECK(t.dim() == dim, name, " must be a ", dim, "-D tensor ", expected_shape, ", got a ",
              t.dim(), "-D tensor of shape ", t.sizes());
  TORCH_CHECK(dtype_supported(t), name, " must be ", supported_dtypes(t), " on ", t.device().type(),
              ", got ", t.scalar_type());
}

// `t` must share `x`'s dtype and device.
inline void check_same_kind(const at::Tensor& t, const char* name, const at::Tensor& x,
                            const char* x_name) {
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), name, " has dtype ", t.scalar_type(), " but ",
              x_name, " has dtype ", x.scalar_type(), "; all tensors of a call must share one dtype");
  TORCH_CHECK(t.device() == x.device(), name, " is on ", t.device(), " but ", x_name, " is on ",
              x.device(), "; all tensors of a call must be on one device");
}

inline void check_input(const at::Tensor& x, const char* name) {
  check_float_tensor(x, name, 4, "[N, C, H, W]");
}

// Depthwise weight [C*M, 1, kh, kw] for an input of `channels` channels.
inline void check_dw_weight(const at::Tensor& w, const char* name, int64_t channels,
                            const at::Tensor& x, const char* x_name) {
  check_float_tensor(w, name, 4, "[C*M, 1, kh, kw]");
  check_same_kind(w, name, x, x_name);
  TORCH_CHECK(w.size(1) == 1, name, ".shape[1] must be 1 for a depthwise weight [C*M, 1, kh, kw], got shape ",
              w.sizes());
  TORCH_CHECK(w.size(2) > 0 && w.size(3) > 0, name, " must have a kernel of at least 1x1, got shape ",
              w.sizes());
  const bool ok = channels == 0 ? w.size(0) == 0 : (w.size(0) >= channels && w.size(0) % channels == 0);
  TORCH_CHECK(ok, name, ".shape[0] must be a positive multiple of the input channels C=", channels,
              " (C times the channel multiplier), got ", w.size(0));
}

// Pointwise weight [C_out, C_in, 1, 1] for an input of `in_channels` channels.
inline void check_pw_weight(const at::Tensor& w, const char* name, int64_t in_channels,
                            const at::Tensor& x, const char* x_name) {
  check_float_tensor(w, name, 4, "[C_out, C_in, 1, 1]");
  check_same_kind(w, name, x, x_name);
  TORCH_CHECK(w.size(2) == 1 && w.size(3) == 1, name,
              " must be a 1x1 weight [C_out, C_in, 1, 1], got shape ", w.sizes());
  TORCH_CHECK(w.size(1) == in_channels, name, ".shape[1] must equal the ", in_channels,
              " channels it is applied to, got ", w.size(1), " (shape ", w.sizes(), ")");
}

inline void check_bias(const std::optional<at::Tensor>& b, const char* name, int64_t channels,
                       const at::Tensor& x, const char* x_name) {
  if (!b.has_value() || !b->defined()) return;
  TORCH_CHECK(b->dim() == 1 && b->size(0) == channels, name, " must be a 1-D tensor of ", channels,
              " elements (one per output channel), got shape ", b->sizes());
  check_same_kind(*b, name, x, x_name);
}

// Convolution geometry along both spatial axes, validated.
struct Geometry {
  int64_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w;
  int64_t pad_top, pad_bottom, pad_left, pad_right;
  int64_t out_h, out_w;
};

// padding is [top, bottom, left, right]; weight_name names the argument the kernel size
// comes from.
inline Geometry check_geometry(int64_t in_h, int64_t in_w, int64_t kernel_h, int64_t kernel_w,
                               const char* weight_name, at::IntArrayRef stride,
                               at::IntArrayRef padding, at::IntArrayRef dilation) {
  TORCH_CHECK_VALUE(stride.size() == 2, "stride must have 2 elements (h, w), got ", stride.size());
  TORCH_CHECK_VALUE(dilation.size() == 2, "dilation must have 2 elements (h, w), got ",
                    dilation.size());
  TORCH_CHECK_VALUE(padding.size() == 4, "padding must have 4 elements (top, bottom, left, right), got ",
                    padding.size());
  TORCH_CHECK_VALUE(stride[0] > 0 && stride[1] > 0, "stride must be positive, got ", stride);
  TORCH_CHECK_VALUE(dilation[0] > 0 && dilation[1] > 0, "dilation must be positive, got ", dilation);
  for (int64_t p : padding) {
    TORCH_CHECK_VALUE(p >= 0, "padding must be non-negative, got ", padding);
  }
  Geometry g{kernel_h, kernel_w, stride[0], stride[1], dilation[0], dilation[1],
             padding[0], padding[1], padding[2], padding[3], 0, 0};
  // Padded sizes and kernel spans in checked arithmetic: huge paddings or dilations must
  // not wrap around into a small (wrong) output.
  int64_t padded_h = 0, padded_w = 0, span_h = 0, span_w = 0;
  const bool overflow =
      c10::add_overflows(in_h, g.pad_top, &padded_h) ||
      c10::add_overflows(padded_h, g.pad_bottom, &padded_h) ||
      c10::add_overflows(in_w, g.pad_left, &padded_w) ||
      c10::add_overflows(padded_w, g.pad_right, &padded_w) ||
      c10::mul_overflows(g.dilation_h, kernel_h - 1, &span_h) ||
      c10::mul_overflows(g.dilation_w, kernel_w - 1, &span_w);
  TORCH_CHECK_VALUE(!overflow, "padding ", padding, " or dilation ", dilation, " is too large: with ",
                    weight_name, "'s ", kernel_h, "x", kernel_w, " kernel and the ", in_h, "x", in_w,
                    " input the padded size or the kernel span exceeds 64-bit integers");
  ++span_h, ++span_w;
  TORCH_CHECK(span_h <= padded_h && span_w <= padded_w, weight_name, " has a kernel of size ",
              kernel_h, "x", kernel_w, " which with dilation ", dilation, " spans ", span_h, "x",
              span_w, ", larger than the padded input ", padded_h, "x", padded_w, " (input ", in_h,
              "x", in_w, ", padding ", padding, ")");
  g.out_h = (padded_h - span_h) / g.stride_h + 1;
  g.out_w = (padded_w - span_w) / g.stride_w + 1;
  return g;
}

// A backward op's grad_out must have the forward output's shape.
inline void check_grad_out_shape(const at::Tensor& grad_out, std::initializer_list<int64_t> expected) {
  TORCH_CHECK(grad_out.sizes() == at::IntArrayRef(expected), "grad_out must have shape ",
              at::IntArrayRef(expected), " for this input and weight, got ", grad_out.sizes());
}

// Output channels per input channel of a depthwise weight with `out_channels` rows.
inline int64_t dw_multiplier(int64_t channels, int64_t out_channels) {
  return channels == 0 ? 1 : out_channels / channels;
}

// depthwise_backward_input: input_size is [N, C, H, W] of the forward input.
inline Geometry check_dw_backward_input(const at::Tensor& grad_out, const at::Tensor& weight,
                                        at::IntArrayRef input_size, at::IntArrayRef stride,
                                        at::IntArrayRef padding, at::IntArrayRef dilation) {
  check_input(grad_out, "grad_out");
  TORCH_CHECK_VALUE(input_size.size() == 4, "input_size must be [N, C, H, W], got ", input_size);
  for (int64_t d : input_size) {
    TORCH_CHECK_VALUE(d >= 0, "input_size must be non-negative, got ", input_size);
  }
  check_dw_weight(weight, "weight", input_size[1], grad_out, "grad_out");
  const Geometry g = check_geometry(input_size[2], input_size[3], weight.size(2), weight.size(3),
                                    "weight", stride, padding, dilation);
  check_grad_out_shape(grad_out, {input_size[0], weight.size(0), g.out_h, g.out_w});
  return g;
}

// depthwise_backward_weight: weight_size is [C*M, 1, kh, kw].
inline Geometry check_dw_backward_weight(const at::Tensor& grad_out, const at::Tensor& x,
                                         at::IntArrayRef weight_size, at::IntArrayRef stride,
                                         at::IntArrayRef padding, at::IntArrayRef dilation) {
  check_input(grad_out, "grad_out");
  check_input(x, "x");
  check_same_kind(grad_out, "grad_out", x, "x");
  TORCH_CHECK_VALUE(weight_size.size() == 4 && weight_size[1] == 1 && weight_size[2] > 0 &&
                        weight_size[3] > 0,
                    "weight_size must be [C*M, 1, kh, kw] with kh, kw >= 1, got ", weight_size);
  const int64_t channels = x.size(1);
  const int64_t out_channels = weight_size[0];
  TORCH_CHECK(channels == 0 ? out_channels == 0
                            : (out_channels >= channels && out_channels % channels == 0),
              "weight_size[0] must be a positive multiple of the input channels C=", channels,
              ", got ", out_channels);
  const Geometry g = check_geometry(x.size(2), x.size(3), weight_size[2], weight_size[3],
                                    "weight_size", stride, padding, dilation);
  check_grad_out_shape(grad_out, {x.size(0), out_channels, g.out_h, g.out_w});
  return g;
}

inline void check_pw_forward(const at::Tensor& x, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias,
                             const std::optional<at::Tensor>& residual) {
  check_input(x, "x");
  check_pw_weight(weight, "weight", x.size(1), x, "x");
  check_bias(bias, "bias", weight.size(0), x, "x");
  if (residual.has_value() && residual->defined()) {
    const std::vector<int64_t> sizes = {x.size(0), weight.size(0), x.size(2), x.size(3)};
    const at::IntArrayRef out(sizes);
    TORCH_CHECK(residual->sizes() == out, "residual is added to the output, so it must have "
                "the output's shape ", out, ", got ", residual->sizes());
    check_same_kind(*residual, "residual", x, "x");
  }
}

// The pointwise stage of separable, applied to the depthwise output's mid_channels.
inline void check_separable_pw(const at::Tensor& pw_weight, const std::optional<at::Tensor>& pw_bias,
                               int64_t mid_channels, const at::Tensor& x) {
  check_pw_weight(pw_weight, "pw_weight", mid_channels, x, "x");
  check_bias(pw_bias, "pw_bias", pw_weight.size(0), x, "x");
}

// conv2d: a dense (groups=1) weight [C_out, C_in, kh, kw] over x's C_in channels.
inline Geometry check_conv2d(const at::Tensor& x, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation) {
  check_input(x, "x");
  check_float_tensor(weight, "weight", 4, "[C_out, C_in, kh, kw]");
  check_same_kind(weight, "weight", x, "x");
  TORCH_CHECK(weight.size(1) == x.size(1), "weight.shape[1] must equal x's ", x.size(1),
              " input channels (conv2d is a dense convolution, groups=1), got shape ",
              weight.sizes());
  TORCH_CHECK(weight.size(2) > 0 && weight.size(3) > 0,
              "weight must have a kernel of at least 1x1, got shape ", weight.sizes());
  check_bias(bias, "bias", weight.size(0), x, "x");
  return check_geometry(x.size(2), x.size(3), weight.size(2), weight.size(3), "weight", stride,
                        padding, dilation);
}

// inverted_residual: x -> expand (1x1, optional) -> depthwise -> project (1x1, optional),
// each stage's weight taking the previous stage's channels; residual needs the output to
// have x's shape.
struct IrGeometry {
  Geometry g;
  int64_t expanded, mid, out;  // channels after each stage
};
inline IrGeometry check_inverted_residual(
    const at::Tensor& x, const std::optional<at::Tensor>& expand_weight, const at::Tensor& dw_weight,
    const std::optional<at::Tensor>& project_weight, const std::optional<at::Tensor>& expand_bias,
    const std::optional<at::Tensor>& dw_bias, const std::optional<at::Tensor>& project_bias,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
    bool expand_activation, bool project_activation, bool residual) {
  check_input(x, "x");
  const bool has_expand = expand_weight.has_value() && expand_weight->defined();
  const bool has_project = project_weight.has_value() && project_weight->defined();
  IrGeometry r{};
  r.expanded = x.size(1);
  if (has_expand) {
    check_pw_weight(*expand_weight, "expand_weight", x.size(1), x, "x");
    r.expanded = expand_weight->size(0);
    check_bias(expand_bias, "expand_bias", r.expanded, x, "x");
  } else {
    TORCH_CHECK_VALUE(!(expand_bias.has_value() && expand_bias->defined()) && !expand_activation,
                      "expand_bias and expand_activation need an expand_weight (without one "
                      "there is no expand stage)");
  }
  check_dw_weight(dw_weight, "dw_weight", r.expanded, x, "x");
  check_bias(dw_bias, "dw_bias", dw_weight.size(0), x, "x");
  r.g = check_geometry(x.size(2), x.size(3), dw_weight.size(2), dw_weight.size(3), "dw_weight",
                       stride, padding, dilation);
  r.mid = r.out = dw_weight.size(0);
  if (has_project) {
    check_pw_weight(*project_weight, "project_weight", r.mid, x, "x");
    r.out = project_weight->size(0);
    check_bias(project_bias, "project_bias", r.out, x, "x");
  } else {
    TORCH_CHECK_VALUE(!(project_bias.has_value() && project_bias->defined()) && !project_activation,
                      "project_bias and project_activation need a project_weight (without one "
                      "there is no project stage)");
  }
  if (residual) {
    TORCH_CHECK(r.out == x.size(1) && r.g.out_h == x.size(2) && r.g.out_w == x.size(3),
                "residual=True adds x to the output, so the output [", x.size(0), ", ", r.out,
                ", ", r.g.out_h, ", ", r.g.out_w, "] must have x's shape ", x.sizes());
  }
  return r;
}

// squeeze_excite: reduce_weight [S, C, 1, 1] takes x's C channels to S, expand_weight
// [C, S, 1, 1] takes them back. Returns S.
inline int64_t check_squeeze_excite(const at::Tensor& x, const at::Tensor& reduce_weight,
                                    const std::optional<at::Tensor>& reduce_bias,
                                    const at::Tensor& expand_weight,
                                    const std::optional<at::Tensor>& expand_bias) {
  check_input(x, "x");
  check_pw_weight(reduce_weight, "reduce_weight", x.size(1), x, "x");
  const int64_t squeezed = reduce_weight.size(0);
  check_bias(reduce_bias, "reduce_bias", squeezed, x, "x");
  check_pw_weight(expand_weight, "expand_weight", squeezed, x, "x");
  TORCH_CHECK(expand_weight.size(0) == x.size(1), "expand_weight.shape[0] must equal x's ",
              x.size(1), " channels (the excitation scales each of them), got ",
              expand_weight.size(0), " (shape ", expand_weight.sizes(), ")");
  check_bias(expand_bias, "expand_bias", x.size(1), x, "x");
  return squeezed;
}

inline void check_pw_backward_input(const at::Tensor& grad_out, const at::Tensor& weight) {
  check_input(grad_out, "grad_out");
  check_float_tensor(weight, "weight", 4, "[C_out, C_in, 1, 1]");
  check_pw_weight(weight, "weight", weight.size(1), grad_out, "grad_out");
  TORCH_CHECK(grad_out.size(1) == weight.size(0), "grad_out has ", grad_out.size(1),
              " channels but weight has C_out=", weight.size(0));
}

inline void check_pw_backward_weight(const at::Tensor& grad_out, const at::Tensor& x) {
  check_input(grad_out, "grad_out");
  check_input(x, "x");
  check_same_kind(grad_out, "grad_out", x, "x");
  TORCH_CHECK(grad_out.size(0) == x.size(0) && grad_out.size(2) == x.size(2) &&
                  grad_out.size(3) == x.size(3),
              "grad_out must match x in batch and spatial size, got grad_out ", grad_out.sizes(),
              " and x ", x.sizes());
}

inline Activation check_activation(const std::optional<c10::string_view>& name,
                                   const char* arg_name) {
  Activation act = Activation::none;
  if (!name.has_value()) return act;
  const std::string s(name->data(), name->size());
  if (s != "none" && parse_activation(s.c_str(), &act)) return act;
  int count = 0;  // the message is built only for a bad name: this runs on every call
  const char* const* names = activation_names(&count);
  std::string expected = "None";
  for (int i = 1; i < count; ++i) expected += std::string(", '") + names[i] + "'";
  TORCH_CHECK_VALUE(false, arg_name, " '", s, "' is not supported; expected one of ", expected);
  return act;
}

inline Gate check_gate(c10::string_view name) {
  Gate gate = Gate::hardsigmoid;
  const std::string s(name.data(), name.size());
  if (parse_gate(s.c_str(), &gate)) return gate;
  int count = 0;
  const char* const* names = gate_names(&count);
  std::string expected;
  for (int i = 0; i < count; ++i) expected += std::string(i ? ", '" : "'") + names[i] + "'";
  TORCH_CHECK_VALUE(false, "gate '", s, "' is not supported; expected one of ", expected);
  return gate;
}

}  // namespace dsconv::ops
