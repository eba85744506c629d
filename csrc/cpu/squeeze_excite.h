// The squeeze-excite passes that are not a GEMM (MobileNetV3, EfficientNet):
//   y = x * gate(fc2(act(fc1(mean_hw(x)))))
// The channel means of an image (squeeze_excite_means), the gate over fc2's scores
// (squeeze_excite_gates) and the per-channel scaling of x (squeeze_excite_scale); the two
// matrix-vector products in between run on the registered pointwise kernels (the ops layer
// treats the batch's mean vectors as the pixels of a 1x1 NHWC image). Plain loops over a
// contiguous dimension without cross-iteration dependences, so the compiler vectorizes them
// (the sums keep kLanes independent accumulators: a fixed order, the same in every build).
// Both layouts; x and y are dense images of the shape's layout.
#pragma once
#include <algorithm>
#include <cstdint>

#include "shapes.h"

namespace dsconv {

struct SeShape {
  int64_t channels, squeezed, pixels;  // pixels: H*W of one image
  Layout layout;
};

namespace se_detail {

constexpr int64_t kLanes = 16;         // independent partial sums of a contiguous row
constexpr int64_t kBlockPixels = 32;   // NHWC: pixels summed into a partial before adding it
constexpr int64_t kBlockChannels = 256;

// Sum of n contiguous values.
template <typename T>
T row_sum(const T* v, int64_t n) {
  T acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int64_t j = 0; j < kLanes; ++j) acc[j] += v[i + j];
  }
  for (int64_t j = 0; i < n; ++i, ++j) acc[j] += v[i];
  for (int64_t w = kLanes / 2; w > 0; w /= 2) {
    for (int64_t j = 0; j < w; ++j) acc[j] += acc[j + w];
  }
  return acc[0];
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
  // NHWC: each pixel's channels are contiguous; sums of kBlockPixels pixels go into a
  // partial first, which keeps the rounding error of long sums small.
  const int64_t C = s.channels;
  for (int64_t cb = c0; cb < c1; cb += kBlockChannels) {
    const int64_t n = std::min(kBlockChannels, c1 - cb);
    T total[kBlockChannels] = {}, part[kBlockChannels];
    for (int64_t p0 = 0; p0 < s.pixels; p0 += kBlockPixels) {
      const int64_t p1 = std::min(s.pixels, p0 + kBlockPixels);
      std::fill(part, part + n, T(0));
      for (int64_t p = p0; p < p1; ++p) {
        const T* row = x_image + p * C + cb;
        for (int64_t c = 0; c < n; ++c) part[c] += row[c];
      }
      for (int64_t c = 0; c < n; ++c) total[c] += part[c];
    }
    for (int64_t c = 0; c < n; ++c) mean[cb - c0 + c] = total[c] * inv;
  }
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
