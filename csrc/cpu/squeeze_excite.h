// The squeeze-excite passes that are not a GEMM (MobileNetV3, EfficientNet):
//   y = x * gate(fc2(act(fc1(mean_hw(x)))))
// The channel means of an image (squeeze_excite_means), the gate over fc2's scores
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

struct SeShape {
  int64_t channels, squeezed, pixels;  // pixels: H*W of one image
  Layout layout;
};

namespace se_detail {

constexpr int64_t kLanes = 16;         // independent partial sums of a contiguous row
constexpr int64_t kBlockPixels = 32;   // NHWC: pixels summed before adding to the total

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

// out[j] = inv * (sum over pixels p of x[p * stride + j]) for j < width (<= kLanes): the
// sums of kBlockPixels pixels at a time go into a total, which keeps the rounding error of
// long sums small. Width: int64_t, or a std::integral_constant for a fixed width.
template <typename T, typename Width>
void column_sums(const T* x, int64_t stride, int64_t pixels, Width width, T inv, T* out) {
  T total[kLanes] = {};
  for (int64_t p0 = 0; p0 < pixels; p0 += kBlockPixels) {
    const int64_t p1 = std::min(pixels, p0 + kBlockPixels);
    T acc[kLanes] = {};
    for (int64_t p = p0; p < p1; ++p) {
      const T* v = x + p * stride;
      for (int64_t j = 0; j < width; ++j) acc[j] += v[j];
    }
    for (int64_t j = 0; j < width; ++j) total[j] += acc[j];
  }
  for (int64_t j = 0; j < width; ++j) out[j] = total[j] * inv;
}

}  // namespace se_detail

// mean[c] for channels [c0, c1) of one image; mean points at channel c0's entry.
template <typename T>
void squeeze_excite_means(const SeShape& s, const T* x_image, T* mean, int64_t c0, int64_t c1) {
  using namespace se_detail;
  const T inv = T(1) / T(s.pixels);
  if (s.layout == Layout::nchw) {
    for (int64_t c = c0; c < c1; ++c) mean[c - c0] = row_sum(x_image + c * s.pixels, s.pixels) * inv;
    return;
  }
  // NHWC: kLanes channels at a time (a constant width, so their sums stay in registers),
  // then the rest.
  int64_t c = c0;
  for (; c + kLanes <= c1; c += kLanes) {
    column_sums(x_image + c, s.channels, s.pixels, std::integral_constant<int64_t, kLanes>(),
                inv, mean + (c - c0));
  }
  if (c < c1) column_sums(x_image + c, s.channels, s.pixels, c1 - c, inv, mean + (c - c0));
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
