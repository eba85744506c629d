// dsconv::conv2d as ATen's convolution and activation: what autograd differentiates, what
// runs on CUDA, and what the CPU kernel falls back to for empty inputs. Checks the
// arguments first (checks.h), so errors name this op's arguments.
#pragma once
#include "op_handles.h"

namespace dsconv::ops {

at::Tensor conv2d_composite(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                            at::IntArrayRef stride, at::IntArrayRef padding,
                            at::IntArrayRef dilation, OptString activation);

}  // namespace dsconv::ops
