// The fused inverted-residual driver (MobileNetV2/V3, EfficientNet): 1x1 expand -> act ->
// depthwise -> act -> 1x1 project (-> + x), generic over the three microkernels it is
// given. For a tile of output rows it expands only the input rows the tile's depthwise
// window needs into a per-thread row buffer, then runs the fused separable tile
// (csrc/cpu/separable.h) on that buffer: neither the expanded tensor nor the depthwise
// output ever exists in memory. Consecutive tiles of one thread share their overlapping
// input rows (moved to the buffer's front, not expanded again). Both layouts work (the
// native tests run both); the op computes in NHWC, where this is fastest.
#pragma once
#include <algorithm>
#include <cstring>

#include "aligned_vector.h"
#include "cache_sizes.h"
#include "residual.h"
#include "separable.h"
#include "shapes.h"

namespace dsconv {

// One block. The stages' x / y strides that depend on the tile are set by the driver: the
// expand stage reads x (its x strides are the input's) and writes the row buffer; the
// depthwise stage reads the row buffer (or x when there is no expand stage) and, without a
// project stage, writes the output (its y strides are the output's); the project stage
// writes the output (its y strides are the output's).
struct IrShape {
  bool has_expand, has_project, residual;
  PwShape expand;   // x -> expanded (valid when has_expand)
  DwShape dw;       // whole-image depthwise geometry over the expanded channels
  PwShape project;  // depthwise output -> y (valid when has_project)
};

template <typename T>
struct IrKernels {
  typename KernelTypes<T>::PwForward expand, project;
  typename KernelTypes<T>::DwForward dw;
};

template <typename T>
struct IrWeights {
  const T *expand, *expand_bias, *dw, *dw_bias, *project, *project_bias;
};

// Bytes the row buffer and the depthwise tile of one tile may take together: with the
// weights they stay in L2. These budgets are for a 512 KiB L2; the tiling scales them to
// the CPU's (l2_scaled: on a 2 MiB L2, MobileNetV2's 112x112 and 56x56 blocks ran 1.08x
// faster with 4x the budget).
constexpr int64_t kIrTileBytes = 192 * 1024;
// The budget where the weights are larger than kIrTileBytes.
constexpr int64_t kIrLargeWeightTileBytes = 512 * 1024;

// Input rows the depthwise window of `out_rows` consecutive output rows spans.
inline int64_t ir_input_rows(const DwShape& dw, int64_t out_rows) {
  return std::min(dw.in_h, (out_rows - 1) * dw.stride_h + (dw.kernel_h - 1) * dw.dilation_h + 1);
}

// Floats from one pixel of the NHWC row buffer to the next: the expanded channels padded to
// a cache line (separable_tile_pixel_stride), so the expand GEMM's stores and the
// depthwise loads of every pixel start on one. NCHW holds each channel's rows apart.
template <typename T>
int64_t ir_row_pixel_stride(const DwShape& dw) {
  return dw.layout == Layout::nhwc ? cache_line_multiple<T>(dw.channels) : dw.channels;
}

// Elements of a row buffer of `rows` input rows, rounded up to whole cache lines: the
// depthwise tile follows it in one scratch block, and both start on a line.
template <typename T>
int64_t ir_row_buffer_elems(const DwShape& dw, int64_t rows) {
  return cache_line_multiple<T>(rows * dw.in_w * ir_row_pixel_stride<T>(dw));
}

// How one image's output rows are cut into tiles: tile t covers rows [begin(t), begin(t+1)),
// tiles differ by at most one row.
struct IrTiling {
  int64_t tiles;         // per image
  int64_t out_h;
  int64_t buffer_rows;   // input rows the row buffer holds
  int64_t buffer_elems, dw_tile_elems;
  int64_t begin(int64_t t) const { return t * out_h / tiles; }
};

template <typename T>
IrTiling ir_tiling(const IrShape& s, int64_t threads) {
  const DwShape& dw = s.dw;
  const int64_t in_row = s.has_expand ? dw.in_w * ir_row_pixel_stride<T>(dw) : 0;
  const int64_t mid_row = s.has_project ? separable_tile_elems<T>(dw, 1) : 0;
  auto bytes = [&](int64_t r) {
    return (ir_input_rows(dw, r) * in_row + r * mid_row) * int64_t(sizeof(T));
  };
  int64_t rows = 1;
  while (rows < dw.out_h && bytes(rows + 1) <= l2_scaled(kIrTileBytes)) ++rows;
  // Each tile streams the expand and project weights once: where they outweigh the budget,
  // tiles grow (to a whole small image) so the weights are read fewer times.
  const int64_t weight_bytes = (s.has_expand ? s.expand.in_channels * dw.channels : 0) +
                               (s.has_project ? dw.out_channels() * s.project.out_channels : 0);
  if (weight_bytes * int64_t(sizeof(T)) > l2_scaled(kIrTileBytes)) {
    while (rows < dw.out_h && bytes(rows + 1) <= l2_scaled(kIrLargeWeightTileBytes)) ++rows;
  }
  // Equal work per thread: a tile count the threads divide (tiles then differ by a row at
  // most; a thread's consecutive tiles share their overlapping input rows).
  int64_t tiles = (dw.out_h + rows - 1) / rows;
  threads = std::max<int64_t>(1, threads);
  while (tiles < dw.out_h && dw.batch * tiles % threads != 0) ++tiles;
  const int64_t most_rows = (dw.out_h + tiles - 1) / tiles;
  const int64_t buffer_rows = s.has_expand ? ir_input_rows(dw, most_rows) : 0;
  return IrTiling{tiles, dw.out_h, buffer_rows,
                  s.has_expand ? ir_row_buffer_elems<T>(dw, buffer_rows) : 0, most_rows * mid_row};
}

// The expanded rows a thread holds: input rows [lo, hi) of image `image`. NHWC rows are
// contiguous (row stride in_w * ir_row_pixel_stride); NCHW keeps each channel's rows at a
// fixed channel stride of capacity * in_w.
template <typename T>
struct ExpandedRows {
  T* data;
  int64_t capacity;
  int64_t image = -1, lo = 0, hi = 0;
};

// Output rows [oy0, oy1) of image n. x_image / y_image point at the image; `dw_tile`
// holds IrTiling::dw_tile_elems. Without an expand stage `s.dw`'s x strides are x's.
template <typename T>
void inverted_residual_rows(const IrShape& s, const IrKernels<T>& k, const IrWeights<T>& w,
                            const T* x_image, T* y_image, int64_t n, int64_t oy0, int64_t oy1,
                            ExpandedRows<T>& rows, T* dw_tile) {
  const DwShape& dw = s.dw;
  const int64_t top = oy0 * dw.stride_h - dw.pad_top;  // first input row of the window
  int64_t lo = std::max<int64_t>(0, top);
  int64_t hi = std::min(dw.in_h, (oy1 - 1) * dw.stride_h - dw.pad_top +
                                     (dw.kernel_h - 1) * dw.dilation_h + 1);
  if (hi <= lo) {  // the window is all padding: hold one row the taps never reach
    lo = std::min(lo, dw.in_h - 1);
    hi = lo + 1;
  }
  DwShape sub = dw;  // the tile's depthwise: over input rows [lo, hi), output rows [oy0, oy1)
  sub.in_h = hi - lo;
  sub.pad_top = lo - top;
  sub.out_h = oy1 - oy0;
  const T* src;
  if (s.has_expand) {
    const bool nhwc = dw.layout == Layout::nhwc;
    const int64_t pixel_stride = ir_row_pixel_stride<T>(dw);
    const int64_t row_elems = dw.in_w * pixel_stride;  // NHWC
    PwShape e = s.expand;
    if (nhwc) {
      e.y_cs = 1, e.y_ps = pixel_stride;
      sub.x_cs = 1, sub.x_ws = pixel_stride, sub.x_hs = row_elems;
    } else {
      e.y_cs = rows.capacity * dw.in_w, e.y_ps = 1;
      sub.x_cs = e.y_cs, sub.x_ws = 1, sub.x_hs = dw.in_w;
    }
    int64_t first_new = lo;
    if (rows.image == n && lo >= rows.lo && lo < rows.hi && hi >= rows.hi) {
      // The previous tile's rows from lo on are this tile's first rows.
      const int64_t shift = lo - rows.lo, keep = rows.hi - lo;
      if (shift > 0 && nhwc) {
        std::memmove(rows.data, rows.data + shift * row_elems, keep * row_elems * sizeof(T));
      } else if (shift > 0) {
        for (int64_t c = 0; c < dw.channels; ++c) {
          T* plane = rows.data + c * e.y_cs;
          std::memmove(plane, plane + shift * dw.in_w, keep * dw.in_w * sizeof(T));
        }
      }
      first_new = rows.hi;
    }
    if (hi > first_new) {
      k.expand(e, x_image + first_new * dw.in_w * e.x_ps, w.expand, w.expand_bias,
               rows.data + (first_new - lo) * dw.in_w * e.y_ps, (hi - first_new) * dw.in_w);
    }
    rows.image = n, rows.lo = lo, rows.hi = hi;
    src = rows.data;
  } else {
    src = x_image + lo * dw.x_hs;
  }
  if (s.has_project) {
    const PwShape& p = s.project;
    separable_forward_tile<T>(sub, p, k.dw, k.project, src, w.dw, w.dw_bias, w.project,
                              w.project_bias, y_image + oy0 * dw.out_w * p.y_ps, 0,
                              sub.out_h * dw.out_w, dw_tile);
  } else {
    k.dw(sub, src, w.dw, w.dw_bias, y_image + oy0 * dw.y_hs, 0, sub.out_h);
  }
  if (s.residual) {
    const int64_t channels = s.has_project ? s.project.out_channels : dw.out_channels();
    // x and y have one shape (the op checks it): rows [oy0, oy1) are a pixel range.
    add_residual_pixels<T>(dw.layout, channels, dw.out_h * dw.out_w, x_image, y_image,
                           oy0 * dw.out_w, oy1 * dw.out_w);
  }
}

}  // namespace dsconv
