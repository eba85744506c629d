// The fused depthwise -> pointwise driver, generic over the two microkernels it is given.
// For a tile of output rows it runs depthwise into a caller-owned scratch tile (sized by
// separable_tiles_per_image, so it stays in cache), then pointwise from that tile into the
// output: the intermediate tensor never exists in memory.
#pragma once
#include <algorithm>

#include "shapes.h"

namespace dsconv {

// Bytes of intermediate a tile holds by default: it stays in L2 next to the pointwise
// weights.
constexpr int64_t kSeparableTileBytes = 64 * 1024;
// Each tile streams the whole pointwise weight through the GEMM once, so a tile must have
// enough pixels to amortize that: at least kSeparableMinTilePixels when the weight does not
// fit in L2 (NHWC, where the weight is the GEMM's B operand) and always in NCHW (where the
// weight is the A operand and pixels are the vector dimension), as far as
// kSeparableMaxTileBytes allows.
constexpr int64_t kSeparableLargeWeightBytes = 256 * 1024;
constexpr int64_t kSeparableMinTilePixels = 64;
constexpr int64_t kSeparableMaxTileBytes = 256 * 1024;

// Row tiles per image. A tile holds at most max(kSeparableMaxTileBytes, one intermediate
// row). The count is raised until the batch's tiles split evenly over `threads` (each tile
// has out_h / tiles rows, give or take one, see separable_tile_begin), so threads finish
// together. Tiling never changes results: each output element is computed the same way
// in any tile.
template <typename T>
int64_t separable_tiles_per_image(const DwShape& dw, int64_t pw_out_channels, int64_t threads) {
  const int64_t row_bytes = std::max<int64_t>(1, dw.out_w * dw.out_channels() * int64_t(sizeof(T)));
  const int64_t weight_bytes = dw.out_channels() * pw_out_channels * int64_t(sizeof(T));
  int64_t rows = kSeparableTileBytes / row_bytes;
  if (dw.layout == Layout::nchw || weight_bytes > kSeparableLargeWeightBytes) {
    const int64_t rows_for_pixels = (kSeparableMinTilePixels + dw.out_w - 1) / std::max<int64_t>(1, dw.out_w);
    rows = std::max(rows, std::min(rows_for_pixels, kSeparableMaxTileBytes / row_bytes));
  }
  rows = std::max<int64_t>(1, std::min(dw.out_h, rows));
  int64_t tiles = (dw.out_h + rows - 1) / rows;
  for (int64_t t = tiles; threads > 1 && t <= dw.out_h; ++t) {
    if (dw.batch * t % threads == 0) return t;
  }
  return tiles;
}

// First output row of tile t of `tiles` (tile t ends where tile t + 1 begins).
inline int64_t separable_tile_begin(int64_t t, int64_t tiles, int64_t out_h) { return t * out_h / tiles; }

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
