// Shared by the depthwise and separable ops: the checked, laid-out form of a depthwise
// stage's arguments.
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

}  // namespace dsconv::ops
