// Vectorized depthwise forward, both layouts, written once against the vector API
// (vec_avx2.h / vec_avx512.h) and instantiated per ISA in kernels_<isa>.cpp.
//  - NHWC: vectors across channels; weights packed taps-major ([tap][channel]).
//  - NCHW: vectors across output columns; weights in ATen layout ([channel][tap]).
// Output columns whose window lies wholly inside the input ("interior") run without
// bounds checks; the few border columns and the rows' tap ranges are computed once.
// KH/KW/SW > 0 fix the kernel size / column stride at compile time (taps then live in
// registers); 0 means "any", read from the shape.
#pragma once
#include <algorithm>
#include <cstdint>

#include "../shapes.h"
#include "activation_vec.h"

namespace dsconv::x86 {

// Free functions here are `static`: this header is compiled once per ISA, and internal
// linkage keeps each ISA's copy apart.

// Taps [lo, hi) of a kernel axis that land inside the input for output position o.
struct TapRange {
  int64_t lo, hi;
};
static inline TapRange tap_range(int64_t o, int64_t stride, int64_t pad, int64_t dilation, int64_t kernel,
                          int64_t in_size) {
  const int64_t start = o * stride - pad;  // input position of tap 0
  int64_t lo = start >= 0 ? 0 : (-start + dilation - 1) / dilation;
  int64_t hi = start + (kernel - 1) * dilation < in_size ? kernel
               : start >= in_size                         ? 0
                                                          : (in_size - 1 - start) / dilation + 1;
  lo = std::min(lo, kernel);
  return {lo, std::max(lo, hi)};
}

// Output columns [begin, end) whose taps are all inside the input.
static inline TapRange interior_columns(const DwShape& s) {
  const int64_t span = (s.kernel_w - 1) * s.dilation_w;
  const int64_t begin = std::min(s.out_w, (s.pad_left + s.stride_w - 1) / s.stride_w);
  const int64_t last = s.in_w - 1 - span + s.pad_left;  // largest valid ow * stride
  const int64_t end = last < 0 ? 0 : std::min(s.out_w, last / s.stride_w + 1);
  return {begin, std::max(begin, end)};
}

template <class V>
struct Depthwise {
  using reg = typename V::reg;
  static constexpr int N = V::N;

  static int64_t pack_taps_major(const DwShape& s, const float* w, float* out) {
    const int64_t taps = s.kernel_h * s.kernel_w, channels = s.out_channels();
    if (out != nullptr) {
      for (int64_t c = 0; c < channels; ++c) {
        for (int64_t t = 0; t < taps; ++t) out[t * channels + c] = w[c * taps + t];
      }
    }
    return taps * channels;
  }

  // ---- NHWC, multiplier 1: x_cs == y_cs == 1 ----

  // One output pixel, all channels, taps [ki.lo, ki.hi) x [kj.lo, kj.hi); weights from memory.
  static void nhwc_pixel(const DwShape& s, const float* x, const float* w, const float* bias,
                         float* out, int64_t ih0, int64_t iw0, TapRange ki, TapRange kj) {
    const int64_t C = s.channels;
    int64_t c = 0;
    auto accumulate = [&](int lanes, auto load) {
      reg acc = bias ? load(bias + c) : V::zero();
      for (int64_t i = ki.lo; i < ki.hi; ++i) {
        const float* row = x + (ih0 + i * s.dilation_h) * s.x_hs + c;
        const float* wrow = w + i * s.kernel_w * C + c;
        for (int64_t j = kj.lo; j < kj.hi; ++j) {
          acc = V::fma(load(row + (iw0 + j * s.dilation_w) * s.x_ws), load(wrow + j * C), acc);
        }
      }
      (void)lanes;
      return activate<V>(s.activation, acc);
    };
    for (; c + N <= C; c += N) {
      V::store(out + c, accumulate(N, [](const float* p) { return V::load(p); }));
    }
    if (c < C) {
      const auto m = V::mask(static_cast<int>(C - c));
      V::store(out + c, accumulate(static_cast<int>(C - c), [m](const float* p) { return V::load(p, m); }), m);
    }
  }

  template <int KH, int KW>
  static void forward_nhwc(const DwShape& s, const float* x, const float* w, const float* bias,
                           float* y, int64_t oh_begin, int64_t oh_end) {
    const int64_t C = s.channels;
    const TapRange inner = interior_columns(s);
    for (int64_t oh = oh_begin; oh < oh_end; ++oh) {
      float* y_row = y + (oh - oh_begin) * s.y_hs;
      const int64_t ih0 = oh * s.stride_h - s.pad_top;
      const TapRange ki = tap_range(oh, s.stride_h, s.pad_top, s.dilation_h, s.kernel_h, s.in_h);
      auto border = [&](int64_t ow) {
        const TapRange kj = tap_range(ow, s.stride_w, s.pad_left, s.dilation_w, s.kernel_w, s.in_w);
        nhwc_pixel(s, x, w, bias, y_row + ow * s.y_ws, ih0, ow * s.stride_w - s.pad_left, ki, kj);
      };
      const bool full_rows = KH > 0 && ki.lo == 0 && ki.hi == KH;
      if (!full_rows || KW == 0) {
        for (int64_t ow = 0; ow < s.out_w; ++ow) border(ow);
        continue;
      }
      for (int64_t ow = 0; ow < inner.lo; ++ow) border(ow);
      // Interior: per channel vector, the KH*KW taps stay in registers across the row.
      if constexpr (KH > 0 && KW > 0) {
        for (int64_t c = 0; c < C; c += N) {
          const int lanes = static_cast<int>(std::min<int64_t>(N, C - c));
          const auto m = V::mask(lanes);
          auto load = [&](const float* p) { return lanes == N ? V::load(p) : V::load(p, m); };
          reg taps[KH * KW];
          for (int t = 0; t < KH * KW; ++t) taps[t] = load(w + t * C + c);
          const reg b = bias ? load(bias + c) : V::zero();
          for (int64_t ow = inner.lo; ow < inner.hi; ++ow) {
            const float* base = x + ih0 * s.x_hs + (ow * s.stride_w - s.pad_left) * s.x_ws + c;
            reg acc = b;
#pragma GCC unroll 25
            for (int i = 0; i < KH; ++i) {
#pragma GCC unroll 25
              for (int j = 0; j < KW; ++j) {
                const float* p = base + i * s.dilation_h * s.x_hs + j * s.dilation_w * s.x_ws;
                acc = V::fma(load(p), taps[i * KW + j], acc);
              }
            }
            acc = activate<V>(s.activation, acc);
            if (lanes == N) {
              V::store(y_row + ow * s.y_ws + c, acc);
            } else {
              V::store(y_row + ow * s.y_ws + c, acc, m);
            }
          }
        }
      }
      for (int64_t ow = std::max(inner.hi, inner.lo); ow < s.out_w; ++ow) border(ow);
    }
  }

  // ---- NCHW, any multiplier: x_ws == y_ws == 1 ----

  // N (or `lanes`) input columns starting at p with column stride sw.
  template <int SW>
  static reg load_columns(const float* p, int64_t sw, int lanes, typename V::Mask m) {
    if (lanes < N) return V::gather(p, SW > 0 ? SW : sw, m);
    if ((SW > 0 ? SW : sw) == 1) return V::load(p);
    return V::gather(p, SW > 0 ? SW : sw);
  }

  template <int KH, int KW, int SW>
  static void forward_nchw(const DwShape& s, const float* x, const float* w, const float* bias,
                           float* y, int64_t oh_begin, int64_t oh_end) {
    const int64_t kh = KH > 0 ? KH : s.kernel_h, kw = KW > 0 ? KW : s.kernel_w;
    const int64_t sw = SW > 0 ? SW : s.stride_w;
    const int64_t taps = kh * kw;
    const TapRange inner = interior_columns(s);
    for (int64_t oh = oh_begin; oh < oh_end; ++oh) {
      const int64_t ih0 = oh * s.stride_h - s.pad_top;
      const TapRange ki = tap_range(oh, s.stride_h, s.pad_top, s.dilation_h, kh, s.in_h);
      for (int64_t oc = 0; oc < s.out_channels(); ++oc) {
        const float* xc = x + (oc / s.multiplier) * s.x_cs;
        const float* wc = w + oc * taps;
        const float b = bias ? bias[oc] : 0.f;
        float* out = y + (oh - oh_begin) * s.y_hs + oc * s.y_cs;
        auto scalar_column = [&](int64_t ow) {
          const TapRange kj = tap_range(ow, sw, s.pad_left, s.dilation_w, kw, s.in_w);
          const int64_t iw0 = ow * sw - s.pad_left;
          float acc = b;
          for (int64_t i = ki.lo; i < ki.hi; ++i) {
            const float* row = xc + (ih0 + i * s.dilation_h) * s.x_hs;
            for (int64_t j = kj.lo; j < kj.hi; ++j) acc += row[iw0 + j * s.dilation_w] * wc[i * kw + j];
          }
          out[ow] = apply_activation(s.activation, acc);
        };
        for (int64_t ow = 0; ow < inner.lo; ++ow) scalar_column(ow);
        // Interior columns, N at a time; the last partial vector is masked.
        for (int64_t ow = inner.lo; ow < inner.hi; ow += N) {
          const int lanes = static_cast<int>(std::min<int64_t>(N, inner.hi - ow));
          const auto m = V::mask(lanes);
          reg acc = V::set1(b);
          for (int64_t i = ki.lo; i < ki.hi; ++i) {
            const float* row = xc + (ih0 + i * s.dilation_h) * s.x_hs + ow * sw - s.pad_left;
            const float* wrow = wc + i * kw;
#pragma GCC unroll 8
            for (int64_t j = 0; j < kw; ++j) {
              acc = V::fma(load_columns<SW>(row + j * s.dilation_w, sw, lanes, m), V::set1(wrow[j]), acc);
            }
          }
          acc = activate<V>(s.activation, acc);
          if (lanes == N) {
            V::store(out + ow, acc);
          } else {
            V::store(out + ow, acc, m);
          }
        }
        for (int64_t ow = std::max(inner.hi, inner.lo); ow < s.out_w; ++ow) scalar_column(ow);
      }
    }
  }
};

}  // namespace dsconv::x86
