// The fused depthwise -> pointwise driver, generic over the two microkernels it is given.
// For a tile of output rows it runs depthwise into a caller-owned scratch tile (sized by
// separable_tile_rows, so it stays in cache), then pointwise from that tile into the
// output: the intermediate tensor never exists in memory.
#pragma once
#include <algorithm>

#include "shapes.h"

namespace dsconv {

// Bytes of intermediate a tile may hold. One output row is the minimum tile, so the
// scratch per tile is max(kSeparableTileBytes, one intermediate row).
constexpr int64_t kSeparableTileBytes = 64 * 1024;

template <typename T>
int64_t separable_tile_rows(const DwShape& dw) {
  const int64_t row_bytes = std::max<int64_t>(1, dw.out_w * dw.out_channels() * int64_t(sizeof(T)));
  return std::max<int64_t>(1, std::min<int64_t>(dw.out_h, kSeparableTileBytes / row_bytes));
}

// Output rows [oh_begin, oh_end) of one image. `dw` describes the depthwise stage with
// the real input strides (its y strides are ignored); `pw` the pointwise stage with the
// real output strides (its x strides are ignored). y points at row oh_begin of the
// output image; tile holds (oh_end - oh_begin) * out_w * out_channels elements.
template <typename T>
void separable_forward_rows(DwShape dw, PwShape pw, typename KernelTypes<T>::DwForward dw_kernel,
                            typename KernelTypes<T>::PwForward pw_kernel, const T* x_image,
                            const T* w_dw, const T* b_dw, const T* w_pw, const T* b_pw, T* y_row,
                            int64_t oh_begin, int64_t oh_end, T* tile) {
  const int64_t rows = oh_end - oh_begin;
  const int64_t tile_pixels = rows * dw.out_w;
  const int64_t mid_channels = dw.out_channels();
  // The tile uses the layout of the call, so each kernel sees its usual unit stride.
  if (dw.layout == Layout::nhwc) {
    dw.y_cs = 1, dw.y_ws = mid_channels, dw.y_hs = dw.out_w * mid_channels;
    pw.x_cs = 1, pw.x_ps = mid_channels;
  } else {
    dw.y_cs = tile_pixels, dw.y_ws = 1, dw.y_hs = dw.out_w;
    pw.x_cs = tile_pixels, pw.x_ps = 1;
  }
  dw_kernel(dw, x_image, w_dw, b_dw, tile, oh_begin, oh_end);
  pw_kernel(pw, tile, w_pw, b_pw, y_row, tile_pixels);
}

}  // namespace dsconv
