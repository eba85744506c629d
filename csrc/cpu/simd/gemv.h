// Matrix-vector products for pointwise calls with too few pixels to pay for packing
// (squeeze-excite FCs, classifier heads, 1x1 images): y[p][o] = act(b[o] + W[o, :] . x[p, :])
// with W in ATen's [out, in] layout, read in place. Packing copies the whole weight to use
// each element once; here each weight row streams once, and for further pixels from L1 or L2
// (the R rows a step holds stay there). Threads split the output channels.
#pragma once
#include <cstdint>

#include "../shapes.h"

namespace dsconv::simd {

template <class V>
struct Gemv {
  using reg = typename V::reg;
  static constexpr int N = V::N;
  // Weight rows a step: each x load serves R of them, and R independent FMA chains hide the
  // FMA latency. 8 rows (one accumulator each) streamed 1.2-1.3x faster than 4 rows with two
  // accumulators, from DRAM and from L3 (the classifier heads' 4-5 MB weights).
  static constexpr int R = 8;

  // KernelTypes::PwGemv: channels [oc_begin, oc_end) of npix pixels (x_cs == y_cs == 1).
  static void forward(const PwShape& s, const float* x, const float* w, const float* bias,
                      float* y, int64_t npix, int64_t oc_begin, int64_t oc_end) {
    float* y0 = y - oc_begin;  // channel 0 of the first pixel
    int64_t o = oc_begin;
    for (; o + R <= oc_end; o += R) rows<R>(s, x, w, bias, y0, npix, o);
    for (; o + 4 <= oc_end; o += 4) rows<4>(s, x, w, bias, y0, npix, o);
    for (; o < oc_end; ++o) rows<1>(s, x, w, bias, y0, npix, o);
  }

  // Channels [o, o + RR) of every pixel. Every row is summed in the same order whatever RR
  // is (one accumulator down K, then one sum4), so results do not depend on where a
  // thread's range of rows starts.
  template <int RR>
  static void rows(const PwShape& s, const float* x, const float* w, const float* bias,
                   float* y0, int64_t npix, int64_t o) {
    const int64_t K = s.in_channels;
    const float* wr = w + o * K;
    const typename V::Mask tail = V::mask(static_cast<int>(K % N));
    constexpr int groups = (RR + 3) / 4;  // sum4 calls
    for (int64_t p = 0; p < npix; ++p) {
      const float* xp = x + p * s.x_ps;
      reg acc[4 * groups];
#pragma GCC unroll 8
      for (int r = 0; r < 4 * groups; ++r) acc[r] = V::zero();
      int64_t k = 0;
#pragma GCC unroll 2
      for (; k + N <= K; k += N) {
        const reg xv = V::load(xp + k);
#pragma GCC unroll 8
        for (int r = 0; r < RR; ++r) acc[r] = V::fma(V::load(wr + r * K + k), xv, acc[r]);
      }
      if (k < K) {
        const reg xv = V::load(xp + k, tail);
#pragma GCC unroll 8
        for (int r = 0; r < RR; ++r) acc[r] = V::fma(V::load(wr + r * K + k, tail), xv, acc[r]);
      }
      float sums[4 * groups];
#pragma GCC unroll 2
      for (int g = 0; g < groups; ++g) {
        V::sum4(acc[4 * g], acc[4 * g + 1], acc[4 * g + 2], acc[4 * g + 3], sums + 4 * g);
      }
#pragma GCC unroll 8
      for (int r = 0; r < RR; ++r) {
        y0[p * s.y_ps + o + r] = apply_activation(s.activation, sums[r] + (bias ? bias[o + r] : 0.f));
      }
    }
  }
};

}  // namespace dsconv::simd
