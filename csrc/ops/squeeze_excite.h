// dsconv::squeeze_excite as a chain of differentiable ops (mean -> pointwise -> pointwise
// -> gate -> mul): what autograd differentiates and what runs on devices without a fused
// kernel. Checks the arguments first (checks.h), so errors name this op's arguments.
#pragma once
#include "op_handles.h"

namespace dsconv::ops {

at::Tensor squeeze_excite_composite(const at::Tensor& x, const at::Tensor& reduce_weight,
                                    const OptTensor& reduce_bias, const at::Tensor& expand_weight,
                                    const OptTensor& expand_bias, OptString activation,
                                    c10::string_view gate);

}  // namespace dsconv::ops
