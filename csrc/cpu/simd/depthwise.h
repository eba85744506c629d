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
#include <vector>

#include "../shapes.h"
#include "activation_vec.h"

namespace dsconv::simd {

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

// NHWC rows whose pixels are at most this many bytes apart run row by row per channel
// vector (taps in registers); wider pixels run pixel by pixel with channels innermost.
constexpr int64_t kSmallChannelBytes = 96;

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
  //
  // Pixel by pixel, all channels innermost (contiguous), in the manner of XNNPACK: per
  // output pixel the KH*KW input pixel addresses are computed once, taps outside the input
  // pointing at a zero row, so every pixel, border or not, runs the same unchecked loop.
  // (Keeping taps in registers across a row instead walks pixels C floats apart, which
  // for power-of-two C maps every load to a few L1 sets.)

  // Channels [c, c + NV*N) of PX output pixels: each tap's weight vectors are loaded once
  // and used for all PX pixels, so loads per FMA drop from 2 to (1 + PX) / PX.
  // in[p * taps + t]: input pixel of tap t for pixel p; out[p]: output pixel p.
  template <int TAPS, int PX, int NV, bool FULL>
  static void nhwc_pixels(int64_t taps_rt, const float* const* in, const float* w, int64_t C,
                          const float* bias, float* const* out, int64_t c, Activation act,
                          typename V::Mask m) {
    const int64_t taps = TAPS > 0 ? TAPS : taps_rt;
    auto load = [m](const float* p) { return FULL ? V::load(p) : V::load(p, m); };
    reg acc[PX][NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const reg b = bias ? load(bias + c + v * N) : V::zero();
#pragma GCC unroll 4
      for (int p = 0; p < PX; ++p) acc[p][v] = b;
    }
#pragma GCC unroll 25
    for (int64_t t = 0; t < taps; ++t) {
      reg wt[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) wt[v] = load(w + t * C + c + v * N);
#pragma GCC unroll 4
      for (int p = 0; p < PX; ++p) {
        const float* xt = in[p * taps + t] + c;
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[p][v] = V::fma(load(xt + v * N), wt[v], acc[p][v]);
      }
    }
#pragma GCC unroll 4
    for (int p = 0; p < PX; ++p) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const reg r = activate<V>(act, acc[p][v]);
        FULL ? V::store(out[p] + c + v * N, r) : V::store(out[p] + c + v * N, r, m);
      }
    }
  }

  // All channels of PX output pixels.
  template <int TAPS, int PX>
  static void nhwc_pixel_group(int64_t taps, const float* const* in, const float* w, int64_t C,
                               const float* bias, float* const* out, Activation act) {
    constexpr int NV = 2;
    int64_t c = 0;
    for (; c + NV * N <= C; c += NV * N) {
      nhwc_pixels<TAPS, PX, NV, true>(taps, in, w, C, bias, out, c, act, V::mask(N));
    }
    for (; c + N <= C; c += N) nhwc_pixels<TAPS, PX, 1, true>(taps, in, w, C, bias, out, c, act, V::mask(N));
    if (c < C) {
      nhwc_pixels<TAPS, PX, 1, false>(taps, in, w, C, bias, out, c, act, V::mask(static_cast<int>(C - c)));
    }
  }

  // Small C: one output row for one channel vector, the KH*KW taps in registers for the
  // whole row (pixels are only C floats apart, so walking a row per channel vector stays
  // in cache). Interior pixels of rows whose taps are all inside run four at a time so the FMA
  // chains overlap; border pixels skip their outside taps (compile-time tap indices, so
  // the taps still never leave registers).
  template <int KH, int KW, bool FULL>
  static void nhwc_row(const DwShape& s, const float* x, const float* w, const float* bias,
                       float* y_row, int64_t oh, TapRange inner, typename V::Mask m) {
    auto load = [m](const float* p) { return FULL ? V::load(p) : V::load(p, m); };
    auto store = [m](float* p, reg v) { FULL ? V::store(p, v) : V::store(p, v, m); };
    const int64_t C = s.channels;
    const int64_t step = s.stride_w * s.x_ws, dh = s.dilation_h * s.x_hs, dw = s.dilation_w * s.x_ws;
    const int64_t ih0 = oh * s.stride_h - s.pad_top;
    const TapRange ki = tap_range(oh, s.stride_h, s.pad_top, s.dilation_h, KH, s.in_h);
    reg taps[KH * KW];
    for (int t = 0; t < KH * KW; ++t) taps[t] = load(w + t * C);
    const reg b = bias ? load(bias) : V::zero();
    auto border = [&](int64_t ow) {
      const TapRange kj = tap_range(ow, s.stride_w, s.pad_left, s.dilation_w, KW, s.in_w);
      const int64_t iw0 = ow * s.stride_w - s.pad_left;
      reg acc = b;
#pragma GCC unroll 25
      for (int i = 0; i < KH; ++i) {
#pragma GCC unroll 25
        for (int j = 0; j < KW; ++j) {
          if (i >= ki.lo && i < ki.hi && j >= kj.lo && j < kj.hi) {
            const float* p = x + (ih0 + i * s.dilation_h) * s.x_hs + (iw0 + j * s.dilation_w) * s.x_ws;
            acc = V::fma(load(p), taps[i * KW + j], acc);
          }
        }
      }
      store(y_row + ow * s.y_ws, activate<V>(s.activation, acc));
    };
    if (ki.lo != 0 || ki.hi != KH) inner = {s.out_w, s.out_w};  // no full-window pixels
    int64_t ow = 0;
    for (; ow < inner.lo; ++ow) border(ow);
    constexpr int U = 4;
    for (; ow + U <= inner.hi; ow += U) {
      const float* base = x + ih0 * s.x_hs + (ow * s.stride_w - s.pad_left) * s.x_ws;
      reg acc[U];
#pragma GCC unroll 4
      for (int u = 0; u < U; ++u) acc[u] = b;
#pragma GCC unroll 25
      for (int t = 0; t < KH * KW; ++t) {
        const float* p = base + (t / KW) * dh + (t % KW) * dw;
#pragma GCC unroll 4
        for (int u = 0; u < U; ++u) acc[u] = V::fma(load(p + u * step), taps[t], acc[u]);
      }
#pragma GCC unroll 4
      for (int u = 0; u < U; ++u) store(y_row + (ow + u) * s.y_ws, activate<V>(s.activation, acc[u]));
    }
    for (; ow < s.out_w; ++ow) border(ow);
  }

  template <int KH, int KW>
  static void forward_nhwc_rows(const DwShape& s, const float* x, const float* w, const float* bias,
                                float* y, int64_t oh_begin, int64_t oh_end) {
    const int64_t C = s.channels;
    const TapRange inner = interior_columns(s);
    for (int64_t oh = oh_begin; oh < oh_end; ++oh) {
      float* y_row = y + (oh - oh_begin) * s.y_hs;
      int64_t c = 0;
      for (; c + N <= C; c += N) {
        nhwc_row<KH, KW, true>(s, x + c, w + c, bias ? bias + c : nullptr, y_row + c, oh, inner, V::mask(N));
      }
      if (c < C) {
        nhwc_row<KH, KW, false>(s, x + c, w + c, bias ? bias + c : nullptr, y_row + c, oh, inner,
                                V::mask(static_cast<int>(C - c)));
      }
    }
  }

  template <int KH, int KW>
  static void forward_nhwc(const DwShape& s, const float* x, const float* w, const float* bias,
                           float* y, int64_t oh_begin, int64_t oh_end) {
    constexpr int TAPS = KH * KW;
    const int64_t kh = KH > 0 ? KH : s.kernel_h, kw = KW > 0 ? KW : s.kernel_w;
    const int64_t C = s.channels;
    if constexpr (KH > 0 && KW > 0) {
      if (C * int64_t(sizeof(float)) <= kSmallChannelBytes) {
        forward_nhwc_rows<KH, KW>(s, x, w, bias, y, oh_begin, oh_end);
        return;
      }
    }
    // Per-thread scratch, reused across calls; plain pointers below (a thread_local in a
    // shared library costs a lookup per access).
    thread_local std::vector<float> zeros_buf;
    constexpr int PX = 4;
    thread_local std::vector<const float*> in_buf;
    thread_local std::vector<int64_t> offset_buf;
    thread_local std::vector<TapRange> col_taps_buf;
    if (static_cast<int64_t>(zeros_buf.size()) < C) zeros_buf.assign(static_cast<size_t>(C), 0.f);
    in_buf.resize(static_cast<size_t>(PX * kh * kw));
    offset_buf.resize(static_cast<size_t>(kh * kw));
    col_taps_buf.resize(static_cast<size_t>(s.out_w));
    const float* const zeros = zeros_buf.data();
    const float** const in = in_buf.data();         // [pixel in group][tap]
    int64_t* const offset = offset_buf.data();      // tap t's offset from the window's corner
    TapRange* const col_taps = col_taps_buf.data();  // valid tap columns of each output column
    const int64_t taps = kh * kw;
    for (int64_t i = 0; i < kh; ++i) {
      for (int64_t j = 0; j < kw; ++j) offset[i * kw + j] = i * s.dilation_h * s.x_hs + j * s.dilation_w * s.x_ws;
    }
    for (int64_t ow = 0; ow < s.out_w; ++ow) {
      col_taps[ow] = tap_range(ow, s.stride_w, s.pad_left, s.dilation_w, kw, s.in_w);
    }
    const TapRange inner = interior_columns(s);
    for (int64_t oh = oh_begin; oh < oh_end; ++oh) {
      float* y_row = y + (oh - oh_begin) * s.y_hs;
      const int64_t ih0 = oh * s.stride_h - s.pad_top;
      const TapRange ki = tap_range(oh, s.stride_h, s.pad_top, s.dilation_h, kh, s.in_h);
      const bool full_rows = ki.lo == 0 && ki.hi == kh;
      // Input addresses of every tap of pixel ow, outside taps pointing at the zero row.
      auto gather_taps = [&](int64_t ow, const float** dst) {
        const int64_t iw0 = ow * s.stride_w - s.pad_left;
        if (full_rows && ow >= inner.lo && ow < inner.hi) {
          const float* corner = x + ih0 * s.x_hs + iw0 * s.x_ws;
          for (int64_t t = 0; t < taps; ++t) dst[t] = corner + offset[t];
          return;
        }
        const TapRange kj = col_taps[ow];
        for (int64_t i = 0; i < kh; ++i) {
          for (int64_t j = 0; j < kw; ++j) {
            const bool inside = i >= ki.lo && i < ki.hi && j >= kj.lo && j < kj.hi;
            dst[i * kw + j] = inside ? x + (ih0 + i * s.dilation_h) * s.x_hs + (iw0 + j * s.dilation_w) * s.x_ws
                                     : zeros;
          }
        }
      };
      int64_t ow = 0;
      for (; ow + PX <= s.out_w; ow += PX) {
        float* out[PX];
        for (int p = 0; p < PX; ++p) {
          gather_taps(ow + p, in + p * taps);
          out[p] = y_row + (ow + p) * s.y_ws;
        }
        nhwc_pixel_group<TAPS, PX>(taps, in, w, C, bias, out, s.activation);
      }
      for (; ow < s.out_w; ++ow) {
        float* out[1] = {y_row + ow * s.y_ws};
        gather_taps(ow, in);
        nhwc_pixel_group<TAPS, 1>(taps, in, w, C, bias, out, s.activation);
      }
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

  // Copies n floats (vector loads and stores; rows here are short, a memcpy call per row
  // would cost more than the copy).
  static void copy_floats(const float* src, float* dst, int64_t n) {
    int64_t i = 0;
    for (; i + N <= n; i += N) V::store(dst + i, V::load(src + i));
    if (i < n) {
      const auto m = V::mask(static_cast<int>(n - i));
      V::store(dst + i, V::load(src + i, m), m);
    }
  }

  // Fixed kernel size and column stride, in the manner of ncnn: the input rows a call
  // needs are copied, one channel at a time, into a zero-padded per-thread buffer, so every
  // output vector runs the same unmasked loop (taps broadcast into registers, two output
  // vectors in flight); only the last partial vector of a row stores with a mask. For
  // stride 2 each buffered row is split into its even and odd columns, so every tap reads
  // one contiguous vector instead of deinterleaving two. The copy is one read and write per
  // input element, against KH*KW FMAs per output element.
  template <int KH, int KW, int SW>
  static void forward_nchw_fixed(const DwShape& s, const float* x, const float* w, const float* bias,
                                 float* y, int64_t oh_begin, int64_t oh_end) {
    static_assert(SW == 1 || SW == 2, "stride 1 or 2");
    const int64_t dh = s.dilation_h, dw = s.dilation_w;
    const int64_t row0 = oh_begin * s.stride_h - s.pad_top;  // first input row needed
    const int64_t rows = (oh_end - 1 - oh_begin) * s.stride_h + (KH - 1) * dh + 1;
    const int64_t out_w_vec = (s.out_w + N - 1) / N * N;
    // A padded row: column b holds input column b - pad_left. Stride 1 keeps it as is;
    // stride 2 stores column b at (b % 2) * plane + b / 2. Output vector ow, tap j reads
    // padded columns ow*SW + j*dw onward.
    const int64_t span = out_w_vec * SW + (KW - 1) * dw;  // padded columns read
    // Stride 2 splits rows 2N columns at a time (load_even of the row and of the row
    // shifted by one), so both the staging row and the planes are rounded up to that.
    const int64_t split_span = (span + 2 * N - 1) / (2 * N) * (2 * N);
    const int64_t plane = split_span / 2;
    const int64_t width = SW == 1 ? span : 2 * plane;
    thread_local std::vector<float> buffer_storage, row_storage;
    buffer_storage.resize(static_cast<size_t>(rows * width));
    if (SW == 2) row_storage.assign(static_cast<size_t>(split_span + 2 * N), 0.f);
    float* const buffer = buffer_storage.data();
    float* const padded_row = row_storage.data();
    // Where tap column j of output vector ow starts in a buffered row.
    auto tap_column = [&](int64_t ow, int64_t j) {
      const int64_t col = j * dw;
      return SW == 1 ? ow + col : (col % 2) * plane + ow + col / 2;
    };
    int64_t buffered_channel = -1;
    for (int64_t oc = 0; oc < s.out_channels(); ++oc) {
      const int64_t c = oc / s.multiplier;
      if (c != buffered_channel) {  // pad this input channel's rows into the buffer
        const float* xc = x + c * s.x_cs;
        for (int64_t r = 0; r < rows; ++r) {
          float* dst = SW == 1 ? buffer + r * width : padded_row;
          const int64_t ih = row0 + r;
          const int64_t lead = std::min(span, s.pad_left);
          const int64_t copy = ih < 0 || ih >= s.in_h ? 0 : std::min(s.in_w, span - lead);
          std::fill(dst, dst + lead, 0.f);
          copy_floats(xc + ih * s.x_hs, dst + lead, copy);
          std::fill(dst + lead + copy, dst + span, 0.f);
          if (SW == 2) {
            float* even = buffer + r * width;
            float* odd = even + plane;
            for (int64_t b = 0; b < split_span; b += 2 * N) {
              V::store(even + b / 2, V::load_even(padded_row + b));
              V::store(odd + b / 2, V::load_even(padded_row + b + 1));
            }
          }
        }
        buffered_channel = c;
      }
      reg taps[KH * KW];
      for (int t = 0; t < KH * KW; ++t) taps[t] = V::set1(w[oc * KH * KW + t]);
      const reg b = V::set1(bias ? bias[oc] : 0.f);
      for (int64_t oh = oh_begin; oh < oh_end; ++oh) {
        const float* base = buffer + (oh - oh_begin) * s.stride_h * width;
        float* out = y + (oh - oh_begin) * s.y_hs + oc * s.y_cs;
        int64_t ow = 0;
        for (; ow + 2 * N <= s.out_w; ow += 2 * N) {
          reg acc0 = b, acc1 = b;
#pragma GCC unroll 25
          for (int t = 0; t < KH * KW; ++t) {
            const float* p = base + (t / KW) * dh * width + tap_column(ow, t % KW);
            acc0 = V::fma(V::load(p), taps[t], acc0);
            acc1 = V::fma(V::load(p + N), taps[t], acc1);
          }
          V::store(out + ow, activate<V>(s.activation, acc0));
          V::store(out + ow + N, activate<V>(s.activation, acc1));
        }
        for (; ow < s.out_w; ow += N) {
          reg acc = b;
#pragma GCC unroll 25
          for (int t = 0; t < KH * KW; ++t) {
            acc = V::fma(V::load(base + (t / KW) * dh * width + tap_column(ow, t % KW)), taps[t], acc);
          }
          acc = activate<V>(s.activation, acc);
          if (ow + N <= s.out_w) {
            V::store(out + ow, acc);
          } else {
            V::store(out + ow, acc, V::mask(static_cast<int>(s.out_w - ow)));
          }
        }
      }
    }
  }

  template <int KH, int KW, int SW>
  static void forward_nchw(const DwShape& s, const float* x, const float* w, const float* bias,
                           float* y, int64_t oh_begin, int64_t oh_end) {
    if constexpr (KH > 0 && KW > 0 && SW > 0) {
      forward_nchw_fixed<KH, KW, SW>(s, x, w, bias, y, oh_begin, oh_end);
      return;
    }
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
        int64_t ow = inner.lo;
        // Remaining interior columns, N at a time; the last partial vector is masked.
        for (; ow < inner.hi; ow += N) {
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

}  // namespace dsconv::simd
