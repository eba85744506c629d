// dsconv::global_avg_pool's ATen composite (global_avg_pool.cpp): what autograd
// differentiates and what CUDA runs.
#pragma once
#include <ATen/core/Tensor.h>

namespace dsconv::ops {

at::Tensor global_avg_pool_composite(const at::Tensor& x);

}  // namespace dsconv::ops
