// dsconv::inverted_residual as the chain of the other ops (pointwise -> separable or
// depthwise -> + x): what autograd differentiates, what runs on devices without a fused
// kernel, and what the fused CPU kernel falls back to for empty inputs. Checks the
// arguments first (checks.h), so errors name this op's arguments.
#pragma once
#include "op_handles.h"

namespace dsconv::ops {

at::Tensor inverted_residual_composite(const at::Tensor& x, const OptTensor& expand_weight,
                                       const at::Tensor& dw_weight,
                                       const OptTensor& project_weight,
                                       const OptTensor& expand_bias, const OptTensor& dw_bias,
                                       const OptTensor& project_bias, at::IntArrayRef stride,
                                       at::IntArrayRef padding, at::IntArrayRef dilation,
                                       OptString expand_activation, OptString dw_activation,
                                       OptString project_activation, bool residual);

}  // namespace dsconv::ops
