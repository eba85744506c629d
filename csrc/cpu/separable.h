// The fused depthwise -> pointwise driver, generic over the two microkernels it is given.
// For a tile of output rows it runs depthwise into a caller-owned scratch tile (sized by
// separable_tiling, so it stays in cache), then pointwise from that tile into the
// output: the intermediate tensor never exists in memory.
#pragma once
#include <algorithm>

#include "aligned_vector.h"
#include "cache_sizes.h"
#include "shapes.h"

namespace dsconv {

// Bytes of intermediate a tile holds by default: it stays in L2 next to the pointwise
// weights. The budgets here are for a 512 KiB L2, scaled to the CPU's (l2_scaled).
constexpr int64_t kSeparableTileBytes = 64 * 1024;
// Each tile streams the whole pointwise weight through the GEMM once, so a tile must have
// enough pixels to amortize that: at least kSeparableMinTilePixels when the weight does not
// fit in L2 (NHWC, where the weight is the GEMM's B operand) and always in NCHW (where the
// weight is the A operand and pixels are the vector dimension), as far as
// kSeparableMaxTileBytes allows.
constexpr int64_t kSeparableLargeWeightBytes = 256 * 1024;
constexpr int64_t kSeparableMinTilePixels = 64;
constexpr int64_t kSeparableMaxTileBytes = 256 * 1024;

// Floats from one pixel of the intermediate tile to the next (NHWC: the channels padded to a
// cache line, so the depthwise stores and the GEMM's rows start on one; NCHW: unused).
template <typename T>
int64_t separable_tile_pixel_stride(const DwShape& dw) {
  return dw.layout == Layout::nhwc ? cache_line_multiple<T>(dw.out_channels()) : dw.out_channels();
}

// Elements of the intermediate tile for `rows` rows.
template <typename T>
int64_t separable_tile_elems(const DwShape& dw, int64_t rows) {
  return rows * dw.out_w * separable_tile_pixel_stride<T>(dw);
}

// How one image's output pixels are cut into tiles. Tile t covers pixels [begin(t),
// begin(t + 1)); boundaries fall on row starts (unit = out_w) unless the threads would
// then get clearly unequal work (e.g. 7 rows over 2 threads), where they fall on any pixel
// (unit = 1) and the depthwise row a boundary cuts is computed by both tiles. Tiling
// never changes results: each output element is computed the same way in any tile.
struct SeparableTiling {
  int64_t tiles;   // per image
  int64_t unit;    // pixels per unit of the boundaries: out_w or 1
  int64_t pixels;  // out_h * out_w
  int64_t max_rows;  // intermediate rows a tile spans at most: the scratch tile's height
  int64_t begin(int64_t t) const { return t * (pixels / unit) / tiles * unit; }
};

// The tiling of a call on `threads` threads. A tile holds at most max(kSeparableMaxTileBytes,
// one intermediate row) plus one row. The tile count is raised until the batch's tiles
// split evenly over the threads, so threads finish together.
template <typename T>
SeparableTiling separable_tiling(const DwShape& dw, int64_t pw_out_channels, int64_t threads) {
  const int64_t row_bytes = std::max<int64_t>(1, separable_tile_elems<T>(dw, 1) * int64_t(sizeof(T)));
  const int64_t weight_bytes = dw.out_channels() * pw_out_channels * int64_t(sizeof(T));
  int64_t rows = l2_scaled(kSeparableTileBytes) / row_bytes;
  if (dw.layout == Layout::nchw || weight_bytes > l2_scaled(kSeparableLargeWeightBytes)) {
    const int64_t rows_for_pixels = (kSeparableMinTilePixels + dw.out_w - 1) / std::max<int64_t>(1, dw.out_w);
    rows = std::max(rows, std::min(rows_for_pixels, l2_scaled(kSeparableMaxTileBytes) / row_bytes));
  }
  rows = std::max<int64_t>(1, std::min(dw.out_h, rows));
  SeparableTiling tiling{(dw.out_h + rows - 1) / rows, dw.out_w, dw.out_h * dw.out_w, rows};
  threads = std::max<int64_t>(1, threads);
  // Equal work needs whole tiles per thread and equal tiles: in rows when the rows split
  // evenly (or so many that one row more is noise), else in pixels.
  const int64_t batch_rows = dw.batch * dw.out_h;
  if (batch_rows % threads != 0 && batch_rows < 16 * threads) tiling.unit = 1;
  const int64_t units = tiling.pixels / tiling.unit;
  for (int64_t t = tiling.tiles; threads > 1 && t <= units; ++t) {
    if (dw.batch * t % threads == 0) {
      tiling.tiles = t;
      break;
    }
  }
  const int64_t most_pixels = (units + tiling.tiles - 1) / tiling.tiles * tiling.unit;
  const int64_t most_rows = (most_pixels + dw.out_w - 1) / dw.out_w + (tiling.unit == 1 ? 1 : 0);
  tiling.max_rows = std::min(dw.out_h, most_rows);
  return tiling;
}

// Output pixels [p_begin, p_end) of one image. `dw` describes the depthwise stage with
// the real input strides (its y strides are ignored); `pw` the pointwise stage with the
// real output strides (its x strides are ignored). y_image points at the output image;
// tile holds the intermediate rows the pixels span (SeparableTiling::max_rows at most).
template <typename T>
void separable_forward_tile(DwShape dw, PwShape pw, typename KernelTypes<T>::DwForward dw_kernel,
                            typename KernelTypes<T>::PwForward pw_kernel, const T* x_image,
                            const T* w_dw, const T* b_dw, const T* w_pw, const T* b_pw,
                            T* y_image, int64_t p_begin, int64_t p_end, T* tile) {
  const int64_t oh_begin = p_begin / dw.out_w, oh_end = (p_end + dw.out_w - 1) / dw.out_w;
  const int64_t tile_pixels = (oh_end - oh_begin) * dw.out_w;
  const int64_t skip = p_begin - oh_begin * dw.out_w;  // pixels of the first row before p_begin
  // The tile uses the layout of the call, so each kernel sees its usual unit stride.
  if (dw.layout == Layout::nhwc) {
    const int64_t stride = separable_tile_pixel_stride<T>(dw);
    dw.y_cs = 1, dw.y_ws = stride, dw.y_hs = dw.out_w * stride;
    pw.x_cs = 1, pw.x_ps = stride;
  } else {
    dw.y_cs = tile_pixels, dw.y_ws = 1, dw.y_hs = dw.out_w;
    pw.x_cs = tile_pixels, pw.x_ps = 1;
  }
  dw_kernel(dw, x_image, w_dw, b_dw, tile, oh_begin, oh_end);
  pw_kernel(pw, tile + skip * pw.x_ps, w_pw, b_pw, y_image + p_begin * pw.y_ps, p_end - p_begin);
}

}  // namespace dsconv
