// Shared by the depthwise and separable ops of every device: the checked, laid-out form of
// their arguments.
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>

#include "../cpu/shapes.h"

namespace dsconv::ops {

struct DepthwiseCall {
  DwShape shape;
  at::Tensor x;       // dense in shape.layout
  at::Tensor weight;  // contiguous [C*M, 1, kh, kw]
  at::Tensor bias;    // contiguous, or undefined
};

DepthwiseCall prepare_depthwise(const at::Tensor& x, const at::Tensor& weight,
                                const std::optional<at::Tensor>& bias, const char* weight_name,
                                const char* bias_name, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation,
                                Activation act);

// A separable call, checked: its depthwise stage and its pointwise stage.
struct SeparableCall {
  DepthwiseCall dw;
  PwShape pw;            // the output's strides
  at::Tensor pw_weight;  // [C_out, C*M, 1, 1], contiguous or input-major (packing.h)
  at::Tensor pw_bias;    // contiguous, or undefined
};

SeparableCall prepare_separable(const at::Tensor& x, const at::Tensor& dw_weight,
                                const at::Tensor& pw_weight,
                                const std::optional<at::Tensor>& dw_bias,
                                const std::optional<at::Tensor>& pw_bias, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation,
                                std::optional<c10::string_view> dw_activation,
                                std::optional<c10::string_view> pw_activation);

// The output `c` writes, allocated: [N, C_out, H', W'] in the input's layout.
at::Tensor empty_separable_output(const SeparableCall& c);

// t made contiguous, or an undefined tensor where t is absent.
at::Tensor contiguous_or_undefined(const std::optional<at::Tensor>& t);

}  // namespace dsconv::ops
