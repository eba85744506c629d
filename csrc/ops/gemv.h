// Pointwise products with so few pixels in all that packing the weight would cost more
// than it saves (squeeze-excite FCs, classifier heads, 1x1 images): matrix-vector kernels
// on ATen's weight layout, threads splitting the output channels. No packed copy is made.
#pragma once
#include <ATen/Parallel.h>

#include "../cpu/dispatch.h"
#include "tensor_shapes.h"

namespace dsconv::ops {

// Pixels in all (batch x H x W) up to which a pointwise call runs as matrix-vector
// products: each step's weight rows are reused from L1 for the other pixels.
constexpr int64_t kGemvMaxPixels = 4;

// Whether the whole batch of `s` is at most kGemvMaxPixels equally spaced vectors of
// contiguous channels: NHWC images (one after another), or 1x1 images.
inline bool gemv_serves(const PwShape& s) {
  return s.batch * s.pixels <= kGemvMaxPixels && (s.layout == Layout::nhwc || s.pixels == 1);
}

// y = act(weight . x + bias) for a call gemv_serves: x and y dense in s's layout, weight
// ATen's [out_channels, in_channels].
template <typename T>
void pointwise_gemv(const PwShape& s, const T* x, const T* weight, const T* bias, T* y) {
  const int64_t vectors = s.batch * s.pixels;
  const PwShape v = make_pw_shape(1, s.in_channels, s.out_channels, 1, vectors, s.activation,
                                  Layout::nhwc);
  const auto kernel = kernel_fn<typename KernelTypes<T>::PwGemv>(
      select_kernel(pw_query(Op::pw_gemv, dtype_of<T>(), v)));
  at::parallel_for(0, s.out_channels, grain_for(s.in_channels * vectors, 1 << 16),
                   [&](int64_t begin, int64_t end) {
    kernel(v, x, weight, bias, y + begin, vectors, begin, end);
  });
}

}  // namespace dsconv::ops
