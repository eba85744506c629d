// The squeeze-excite passes that are not a GEMM (MobileNetV3, EfficientNet):
//   y = x * gate(fc2(act(fc1(mean_hw(x)))))
// The channel means of an image (NCHW: per channel; NHWC: sums over blocks of pixels, then
// over the blocks), the gate over fc2's scores
// (squeeze_excite_gates) and the per-channel scaling of x (squeeze_excite_scale); the two
// matrix-vector products in between run on the registered pointwise kernels (the ops layer
// treats the batch's mean vectors as the pixels of a 1x1 NHWC image). Plain loops over a
// contiguous dimension without cross-iteration dependences, so the compiler vectorizes them
// (the sums keep kLanes independent accumulators: a fixed order, the same in every build).
// They are built for the baseline ISA: they stream x once or twice; the products, which
// read the weights, run on the selected kernel set. Both layouts; x and y are dense images of the shape's layout.
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "shapes.h"

namespace dsconv {

// NHWC: pixels summed in one block before adding to the total.
constexpr int64_t kSeBlockPixels = 32;

struct SeShape {
  int64_t channels, squeezed, pixels;  // pixels: H*W of one image
  Layout layout;
};

namespace se_detail {

constexpr int64_t kLanes = 16;         // independent partial sums of a contiguous row

// Sum of n contiguous values.
template <typename T>
T row_sum(const T* v, int64_t n) {
  T acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int64_t j = 0; j < kLanes; ++j) acc[j] += v[i + j];
  }
  T tail = 0;  // apart: indexing acc at run time would keep it out of registers
  for (; i < n; ++i) tail += v[i];
  for (int64_t w = kLanes / 2; w > 0; w /= 2) {
    for (int64_t j = 0; j < w; ++j) acc[j] += acc[j + w];
  }
  return acc[0] + tail;
}

// out[j] = sum over rows p < rows of x[p * stride + j], j < width (<= kLanes). Width:
// int64_t, or a std::integral_constant for a fixed width (its sums then stay in registers).
template <typename T, typename Width>
void column_sums(const T* x, int64_t stride, int64_t rows, Width width, T* out) {
  T acc[kLanes] = {};
  for (int64_t p = 0; p < rows; ++p) {
    const T* v = x + p * stride;
    for (int64_t j = 0; j < width; ++j) acc[j] += v[j];
  }
  for (int64_t j = 0; j < width; ++j) out[j] = acc[j];
}

}  // namespace se_detail

// The NHWC channel sums are taken in blocks of kSeBlockPixels pixels, then added up block by
// block (which keeps the rounding error of long sums small): blocks of one image can run on
// different threads with the same result.
inline int64_t se_pixel_blocks(const SeShape& s) {
  return (s.pixels + kSeBlockPixels - 1) / kSeBlockPixels;
}

// mean[c] for channels [c0, c1) of one NCHW image; mean points at channel c0's entry.
template <typename T>
void squeeze_excite_means_nchw(const SeShape& s, const T* x_image, T* mean, int64_t c0, int64_t c1) {
  const T inv = T(1) / T(s.pixels);
  for (int64_t c = c0; c < c1; ++c) mean[c - c0] = se_detail::row_sum(x_image + c * s.pixels, s.pixels) * inv;
}

// sums[c] = sum of channel c over pixel block b of one NHWC image, every channel: kLanes
// channels at a time, the block's rows (a few KiB) read from L2 once and then from L1.
template <typename T>
void squeeze_excite_block_sums(const SeShape& s, const T* x_image, int64_t b, T* sums) {
  using namespace se_detail;
  const int64_t C = s.channels;
  const int64_t p0 = b * kSeBlockPixels;
  const int64_t rows = std::min(s.pixels, p0 + kSeBlockPixels) - p0;
  const T* x = x_image + p0 * C;
  int64_t c = 0;
  for (; c + kLanes <= C; c += kLanes) {
    column_sums(x + c, C, rows, std::integral_constant<int64_t, kLanes>(), sums + c);
  }
  if (c < C) column_sums(x + c, C, rows, C - c, sums + c);
}

// mean[c] of one NHWC image from its block sums ([block][C]), added in block order.
template <typename T>
void squeeze_excite_means_from_blocks(const SeShape& s, const T* block_sums, T* mean) {
  const int64_t C = s.channels, blocks = se_pixel_blocks(s);
  const T inv = T(1) / T(s.pixels);
  std::fill(mean, mean + C, T(0));
  for (int64_t b = 0; b < blocks; ++b) {
    for (int64_t c = 0; c < C; ++c) mean[c] += block_sums[b * C + c];
  }
  for (int64_t c = 0; c < C; ++c) mean[c] *= inv;
}

// v[i] = gate(v[i]) for count values.
template <typename T>
void squeeze_excite_gates(Gate gate, T* v, int64_t count) {
  if (gate == Gate::hardsigmoid) {
    for (int64_t i = 0; i < count; ++i) v[i] = apply_gate(Gate::hardsigmoid, v[i]);
  } else {
    for (int64_t i = 0; i < count; ++i) v[i] = apply_gate(Gate::sigmoid, v[i]);
  }
}

// y = x * scale[c] over units [u0, u1) of one image: pixels in NHWC, channels in NCHW.
// x_image, y_image: the image's first element; scale: its C gate values.
template <typename T>
void squeeze_excite_scale(const SeShape& s, const T* x_image, const T* scale, T* y_image,
                          int64_t u0, int64_t u1) {
  if (s.layout == Layout::nchw) {
    for (int64_t c = u0; c < u1; ++c) {
      const T g = scale[c];
      const T* xr = x_image + c * s.pixels;
      T* yr = y_image + c * s.pixels;
      for (int64_t i = 0; i < s.pixels; ++i) yr[i] = xr[i] * g;
    }
    return;
  }
  const int64_t C = s.channels;
  for (int64_t p = u0; p < u1; ++p) {
    const T* xr = x_image + p * C;
    T* yr = y_image + p * C;
    for (int64_t c = 0; c < C; ++c) yr[c] = xr[c] * scale[c];
  }
}

}  // namespace dsconv
