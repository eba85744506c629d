// Matrix-vector products for pointwise calls with too few pixels to pay for packing
// (squeeze-excite FCs, classifier heads, 1x1 images): y[p][o] = act(b[o] + W[o, :] . x[p, :])
// with W in ATen's [out, in] layout, read in place. Packing copies the whole weight to use
// each element once; here each weight row streams once, and for further pixels from L1 (the
// R rows a step holds stay there). Threads split the output channels.
#pragma once
#include <cstdint>

#include "../shapes.h"

namespace dsconv::simd {

template <class V>
struct Gemv {
  using reg = typename V::reg;
  static constexpr int N = V::N;
  static constexpr int R = 4;  // weight rows a step (one V::sum4): each x load serves R of them
  static_assert(R == 4, "rows() reduces a step with one sum4");

  // KernelTypes::PwGemv: channels [oc_begin, oc_end) of npix pixels (x_cs == y_cs == 1).
  static void forward(const PwShape& s, const float* x, const float* w, const float* bias,
                      float* y, int64_t npix, int64_t oc_begin, int64_t oc_end) {
    float* y0 = y - oc_begin;  // channel 0 of the first pixel
    int64_t o = oc_begin;
    for (; o + R <= oc_end; o += R) rows<R>(s, x, w, bias, y0, npix, o);
    for (; o < oc_end; ++o) rows<1>(s, x, w, bias, y0, npix, o);
  }

  // Channels [o, o + RR) of every pixel: two accumulators per row (alternate vectors of
  // K), so 2 * RR FMA chains hide the FMA latency.
  template <int RR>
  static void rows(const PwShape& s, const float* x, const float* w, const float* bias,
                   float* y0, int64_t npix, int64_t o) {
    const int64_t K = s.in_channels;
    const float* wr = w + o * K;
    const typename V::Mask tail = V::mask(static_cast<int>(K % N));
    for (int64_t p = 0; p < npix; ++p) {
      const float* xp = x + p * s.x_ps;
      reg acc[2][RR];
#pragma GCC unroll 8
      for (int r = 0; r < RR; ++r) acc[0][r] = acc[1][r] = V::zero();
      int64_t k = 0;
      for (; k + 2 * N <= K; k += 2 * N) {
#pragma GCC unroll 2
        for (int u = 0; u < 2; ++u) {
          const reg xv = V::load(xp + k + u * N);
#pragma GCC unroll 8
          for (int r = 0; r < RR; ++r) {
            acc[u][r] = V::fma(V::load(wr + r * K + k + u * N), xv, acc[u][r]);
          }
        }
      }
      if (k + N <= K) {
        const reg xv = V::load(xp + k);
#pragma GCC unroll 8
        for (int r = 0; r < RR; ++r) acc[0][r] = V::fma(V::load(wr + r * K + k), xv, acc[0][r]);
        k += N;
      }
      if (k < K) {
        const reg xv = V::load(xp + k, tail);
#pragma GCC unroll 8
        for (int r = 0; r < RR; ++r) acc[1][r] = V::fma(V::load(wr + r * K + k, tail), xv, acc[1][r]);
      }
      // One reduction order for every row, so results do not depend on where a thread's
      // range of rows starts.
      reg total[4] = {V::zero(), V::zero(), V::zero(), V::zero()};
#pragma GCC unroll 8
      for (int r = 0; r < RR; ++r) total[r] = V::add(acc[0][r], acc[1][r]);
      float sums[4];
      V::sum4(total[0], total[1], total[2], total[3], sums);
#pragma GCC unroll 8
      for (int r = 0; r < RR; ++r) {
        y0[p * s.y_ps + o + r] = apply_activation(s.activation, sums[r] + (bias ? bias[o + r] : 0.f));
      }
    }
  }
};

}  // namespace dsconv::simd
