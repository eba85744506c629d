// The residual add of a fused block, done while the output tile is still in cache: y += r
// over one image's pixels [p0, p1), in either layout (inverted_residual adds the block's
// input per tile of output rows, pointwise its residual argument per pixel range).
#pragma once
#include <cstdint>

#include "shapes.h"

namespace dsconv {

// r and y are dense [channels, pixels] images in `layout` (NHWC: [pixels, channels]).
template <typename T>
void add_residual_pixels(Layout layout, int64_t channels, int64_t pixels, const T* r_image,
                         T* y_image, int64_t p0, int64_t p1) {
  auto add = [](T* y, const T* r, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] += r[i];
  };
  if (layout == Layout::nhwc) {
    add(y_image + p0 * channels, r_image + p0 * channels, (p1 - p0) * channels);
  } else {
    for (int64_t c = 0; c < channels; ++c) {
      add(y_image + c * pixels + p0, r_image + c * pixels + p0, p1 - p0);
    }
  }
}

}  // namespace dsconv
