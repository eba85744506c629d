// Vectorized depthwise forward, both layouts, written once against the vector API
// (vec_avx2.h / vec_avx512.h) and instantiated per ISA in kernels_<isa>.cpp.
//  - NHWC: vectors across channels; weights packed in channel groups ([C/G][tap][G]).
//  - NCHW: vectors across output columns; weights in ATen layout ([channel][tap]).
// Output columns whose window lies wholly inside the input ("interior") run without
// bounds checks; the few border columns and the rows' tap ranges are computed once.
// KH/KW/SW > 0 fix the kernel size / column stride at compile time (taps then live in
// registers); 0 means "any", read from the shape.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../aligned_vector.h"
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

// ROW_PX > 0: NHWC 3x3 and 5x5 with column stride 1 or 2 run in row groups of ROW_PX
// pixels by ROW_NV channel vectors (nhwc_row_group; sized to the register file).
template <class V, int ROW_PX = 0, int ROW_NV = 1>
struct Depthwise {
  using reg = typename V::reg;
  static constexpr int N = V::N;

  // NHWC weights in groups of G channels, each group taps-major: [C/G][tap][G], zero
  // padded to whole groups. A group's taps are contiguous, so the kernel's weight loads for
  // one channel step stay in a few L1 lines whatever C is; with one [tap][C] array they are
  // C floats apart, and for power-of-two C (MobileNetV1: 256..1024) they map to the same L1
  // sets as the input pixels, which are also C floats apart.
  static constexpr int G = 2 * N;  // nhwc_pixel_group's widest channel step
  static int64_t pack_channel_groups(const DwShape& s, const float* w, float* out) {
    const int64_t taps = s.kernel_h * s.kernel_w, channels = s.out_channels();
    const int64_t size = (channels + G - 1) / G * G * taps;
    if (out != nullptr) {
      std::fill(out, out + size, 0.f);
      for (int64_t c = 0; c < channels; ++c) {
        for (int64_t t = 0; t < taps; ++t) *tap_weights(out, taps, t, c) = w[c * taps + t];
      }
    }
    return size;
  }
  // Tap t's weights from channel c on (c a multiple of N), in pack_channel_groups' layout.
  template <typename P>
  static P* tap_weights(P* w, int64_t taps, int64_t t, int64_t c) {
    return w + (c / G) * taps * G + t * G + c % G;
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
  static void nhwc_pixels(int64_t taps_rt, const float* const* in, const float* w,
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
      for (int v = 0; v < NV; ++v) wt[v] = load(tap_weights(w, taps, t, c) + v * N);
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
      nhwc_pixels<TAPS, PX, NV, true>(taps, in, w, bias, out, c, act, V::mask(N));
    }
    for (; c + N <= C; c += N) nhwc_pixels<TAPS, PX, 1, true>(taps, in, w, bias, out, c, act, V::mask(N));
    if (c < C) {
      nhwc_pixels<TAPS, PX, 1, false>(taps, in, w, bias, out, c, act, V::mask(static_cast<int>(C - c)));
    }
  }

  // ---- NHWC, multiplier 1, row groups (ROW_PX > 0) ----
  //
  // PX output pixels of one row, channels [c, c + NV*N): per kernel row, its KW tap weights
  // stay in registers while the (PX-1)*SW + KW input columns under the PX windows stream
  // by, each loaded once and used by every window that covers it. Loads per FMA at 3x3,
  // stride 1: (10 + 3) / 24 = 0.54, against (4 + 1) / 4 = 1.25 pixel by pixel (the L1
  // ports, not the FMAs, bound that loop). Registers: PX*NV accumulators + KW*NV weights
  // + a column: 28 of 32 for 8x2 at 5x5.
  // Each pixel sums its taps in the order the pixel-by-pixel loop does (kernel row, then
  // column); padding taps are skipped where that loop adds zero times the weight.
  struct RowGroup {
    const float* const* rows;  // [KH]: input row of each kernel row (column 0), or nullptr
    int64_t x_ws, iw0, in_w;   // pixel stride; input column of the first window; row width
    const float* w;            // pack_channel_groups' layout
    const float* bias;
    float* out;                // first output pixel of the group
    int64_t y_ws;
    int count;                 // pixels to store, <= PX
    Activation act;
  };

  // EDGE: some of the columns lie outside the input (padding: skipped) or the group holds
  // fewer than PX pixels.
  template <int KH, int KW, int SW, int PX, int NV, bool FULL, bool EDGE>
  static void nhwc_row_group(const RowGroup& g, int64_t c, typename V::Mask m) {
    auto load = [m](const float* p) { return FULL ? V::load(p) : V::load(p, m); };
    constexpr int COLS = (PX - 1) * SW + KW;
    reg acc[PX][NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const reg b = g.bias ? load(g.bias + c + v * N) : V::zero();
#pragma GCC unroll 16
      for (int p = 0; p < PX; ++p) acc[p][v] = b;
    }
#pragma GCC unroll 5
    for (int i = 0; i < KH; ++i) {
      const float* row = g.rows[i];
      if (row == nullptr) continue;  // a padding row
      reg wt[KW][NV];
#pragma GCC unroll 5
      for (int k = 0; k < KW; ++k) {
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) wt[k][v] = load(tap_weights(g.w, KH * KW, i * KW + k, c) + v * N);
      }
#pragma GCC unroll 32
      for (int j = 0; j < COLS; ++j) {
        const int64_t iw = g.iw0 + j;
        if (EDGE && (iw < 0 || iw >= g.in_w)) continue;  // a padding column
        const float* col = row + iw * g.x_ws + c;
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
          const reg xv = load(col + v * N);
#pragma GCC unroll 16
          for (int p = 0; p < PX; ++p) {
            const int k = j - p * SW;  // the tap column this input column is for pixel p
            if (k >= 0 && k < KW) acc[p][v] = V::fma(xv, wt[k][v], acc[p][v]);
          }
        }
      }
    }
#pragma GCC unroll 16
    for (int p = 0; p < PX; ++p) {
      if (EDGE && p >= g.count) break;
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const reg r = activate<V>(g.act, acc[p][v]);
        FULL ? V::store(g.out + p * g.y_ws + c + v * N, r) : V::store(g.out + p * g.y_ws + c + v * N, r, m);
      }
    }
  }

  template <int KH, int KW, int SW, int PX, bool EDGE>
  static void nhwc_row_group_channels(const RowGroup& g, int64_t C) {
    int64_t c = 0;
    if constexpr (ROW_NV == 2) {
      for (; c + 2 * N <= C; c += 2 * N) nhwc_row_group<KH, KW, SW, PX, 2, true, EDGE>(g, c, V::mask(N));
    }
    for (; c + N <= C; c += N) nhwc_row_group<KH, KW, SW, PX, 1, true, EDGE>(g, c, V::mask(N));
    if (c < C) nhwc_row_group<KH, KW, SW, PX, 1, false, EDGE>(g, c, V::mask(static_cast<int>(C - c)));
  }

  // Output rows [oh_begin, oh_end), each cut into groups of at most PX pixels as equal as
  // the count allows (28 pixels: 4 of 7, not 3 of 8 and 1 of 4).
  template <int KH, int KW, int SW>
  static void forward_nhwc_row_groups(const DwShape& s, const float* x, const float* w,
                                      const float* bias, float* y, int64_t oh_begin, int64_t oh_end) {
    constexpr int PX = ROW_PX;
    const int64_t groups = (s.out_w + PX - 1) / PX;
    const float* rows[KH];
    RowGroup g{rows, s.x_ws, 0, s.in_w, w, bias, nullptr, s.y_ws, 0, s.activation};
    for (int64_t oh = oh_begin; oh < oh_end; ++oh) {
      const int64_t ih0 = oh * s.stride_h - s.pad_top;
      for (int i = 0; i < KH; ++i) {
        const int64_t ih = ih0 + i * s.dilation_h;
        rows[i] = ih >= 0 && ih < s.in_h ? x + ih * s.x_hs : nullptr;
      }
      float* y_row = y + (oh - oh_begin) * s.y_hs;
      for (int64_t gi = 0; gi < groups; ++gi) {
        const int64_t ow0 = gi * s.out_w / groups, ow1 = (gi + 1) * s.out_w / groups;
        g.iw0 = ow0 * SW - s.pad_left;
        g.out = y_row + ow0 * s.y_ws;
        g.count = static_cast<int>(ow1 - ow0);
        const bool edge = g.count < PX || g.iw0 < 0 || g.iw0 + (PX - 1) * SW + KW > s.in_w;
        if (edge) {
          nhwc_row_group_channels<KH, KW, SW, PX, true>(g, s.channels);
        } else {
          nhwc_row_group_channels<KH, KW, SW, PX, false>(g, s.channels);
        }
      }
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
    const int64_t step = s.stride_w * s.x_ws, dh = s.dilation_h * s.x_hs, dw = s.dilation_w * s.x_ws;
    const int64_t ih0 = oh * s.stride_h - s.pad_top;
    const TapRange ki = tap_range(oh, s.stride_h, s.pad_top, s.dilation_h, KH, s.in_h);
    reg taps[KH * KW];
    for (int t = 0; t < KH * KW; ++t) taps[t] = load(w + t * G);  // w: the group at this vector
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
        nhwc_row<KH, KW, true>(s, x + c, tap_weights(w, KH * KW, 0, c), bias ? bias + c : nullptr,
                               y_row + c, oh, inner, V::mask(N));
      }
      if (c < C) {
        nhwc_row<KH, KW, false>(s, x + c, tap_weights(w, KH * KW, 0, c), bias ? bias + c : nullptr,
                                y_row + c, oh, inner, V::mask(static_cast<int>(C - c)));
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
      if constexpr (ROW_PX > 0) {
        if (s.dilation_w == 1 && s.stride_w == 1) {
          forward_nhwc_row_groups<KH, KW, 1>(s, x, w, bias, y, oh_begin, oh_end);
          return;
        }
        if (s.dilation_w == 1 && s.stride_w == 2) {
          forward_nhwc_row_groups<KH, KW, 2>(s, x, w, bias, y, oh_begin, oh_end);
          return;
        }
      }
    }
    // Per-thread scratch, reused across calls; plain pointers below (a thread_local in a
    // shared library costs a lookup per access).
    thread_local AlignedVector<float> zeros_buf;
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
      // Output pixels [first, first + P) as one group (P: a std::integral_constant).
      auto group = [&](auto px, int64_t first) {
        constexpr int P = decltype(px)::value;
        float* out[P];
        for (int p = 0; p < P; ++p) {
          gather_taps(first + p, in + p * taps);
          out[p] = y_row + (first + p) * s.y_ws;
        }
        nhwc_pixel_group<TAPS, P>(taps, in, w, C, bias, out, s.activation);
      };
      int64_t ow = 0;
      for (; ow + PX <= s.out_w; ow += PX) group(std::integral_constant<int, PX>{}, ow);
      // A row's last 1-3 pixels (7- and 14-wide rows leave 3 and 2): a pair still loads
      // each tap's weights once for both pixels.
      if (ow + 2 <= s.out_w) {
        group(std::integral_constant<int, 2>{}, ow);
        ow += 2;
      }
      if (ow < s.out_w) group(std::integral_constant<int, 1>{}, ow);
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

  // Lanes row[from .. from + N), zero where the index falls outside [0, n): an unmasked
  // load inside the row, a masked one at its ends.
  static reg load_row_part(const float* row, int64_t from, int64_t n) {
    if (from >= 0 && from + N <= n) return V::load(row + from);
    const int lo = static_cast<int>(std::clamp<int64_t>(-from, 0, N));
    const int hi = static_cast<int>(std::clamp<int64_t>(n - from, 0, N));
    return lo < hi ? V::load(row + from, V::mask_range(lo, hi)) : V::zero();
  }

  // Fixed kernel size and column stride, in the manner of ncnn: the input rows a call
  // needs are copied, one channel at a time, into a zero-padded per-thread buffer, so every
  // output vector runs the same unmasked loop (taps broadcast into registers, two output
  // vectors in flight). For stride 2 each buffered row is split into its even and odd
  // columns, so every tap reads one contiguous vector instead of deinterleaving two. The
  // copy (one read and write per input element, against KH*KW FMAs per output element) is
  // made straight from the input with range-masked loads and full stores, one channel
  // ahead of the computation, so the computation's loads never wait on those stores. When
  // output rows are contiguous, a row's last vector is stored whole (the next row's store
  // overwrites the spill) unless it would spill past the range.
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
    // Stride 2: columns per parity; room for every column read and for the whole input row
    // (the deinterleaving stores write up to (pad_left + in_w) / 2 + N).
    const int64_t plane = (std::max(span, s.pad_left + s.in_w + 2 * N) + 2 * N - 1) / (2 * N) * N;
    const int64_t width = SW == 1 ? (span + N - 1) / N * N : 2 * plane;
    const int64_t channel_floats = rows * width;
    thread_local AlignedVector<float> buffer_storage;
    buffer_storage.resize(static_cast<size_t>(2 * channel_floats));
    // Where tap column j of output vector ow starts in a buffered row.
    auto tap_column = [&](int64_t ow, int64_t j) {
      const int64_t col = j * dw;
      return SW == 1 ? ow + col : (col % 2) * plane + ow + col / 2;
    };
    auto fill_channel = [&](int64_t c, float* dst) {
      const float* xc = x + c * s.x_cs;
      for (int64_t r = 0; r < rows; ++r, dst += width) {
        const int64_t ih = row0 + r;
        if (ih < 0 || ih >= s.in_h) {
          for (int64_t b = 0; b < width; b += N) V::store(dst + b, V::zero());
          continue;
        }
        const float* row = xc + ih * s.x_hs;
        if constexpr (SW == 1) {
          for (int64_t b = 0; b < width; b += N) V::store(dst + b, load_row_part(row, b - s.pad_left, s.in_w));
        } else {
          // Padded column b = input column b - pad_left goes to parity (b % 2), index b / 2:
          // input column m lands at parity (m + pad_left) % 2, index (m + pad_left) / 2. The
          // row is deinterleaved 2N input columns at a time and stored at those offsets (the
          // zero lanes past the input's end fall on padding or on columns stored next).
          for (int64_t b = 0; b < width; b += N) V::store(dst + b, V::zero());
          const int64_t to_even = s.pad_left / 2, to_odd = (s.pad_left + 1) / 2;  // index of input column 0 / 1
          float* even_input = dst + (s.pad_left % 2) * plane;      // plane holding input columns 0, 2, 4, ...
          float* odd_input = dst + ((s.pad_left + 1) % 2) * plane;  // plane holding input columns 1, 3, 5, ...
          for (int64_t m = 0; m < s.in_w; m += 2 * N) {
            const reg lo = load_row_part(row, m, s.in_w), hi = load_row_part(row, m + N, s.in_w);
            V::store(even_input + to_even + m / 2, V::even_lanes(lo, hi));
            V::store(odd_input + to_odd + m / 2, V::odd_lanes(lo, hi));
          }
        }
      }
    };
    const bool rows_contiguous = s.y_hs == s.out_w;
    const int64_t mult = s.multiplier;
    if (s.channels > 0) fill_channel(0, buffer_storage.data());
    for (int64_t c = 0; c < s.channels; ++c) {
      const float* buffer = buffer_storage.data() + (c % 2) * channel_floats;
      if (c + 1 < s.channels) fill_channel(c + 1, buffer_storage.data() + ((c + 1) % 2) * channel_floats);
      for (int64_t oc = c * mult; oc < (c + 1) * mult; ++oc) {
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
            // A whole store may spill into the rows after this one (stored later) if it stays
            // within the range.
            if (ow + N <= s.out_w || (rows_contiguous && ow + N <= (oh_end - oh) * s.out_w)) {
              V::store(out + ow, acc);
            } else {
              V::store(out + ow, acc, V::mask(static_cast<int>(s.out_w - ow)));
            }
          }
        }
      }
    }
  }

  // ---- NCHW, flat: stride S in {1, 2} with out_w >= in_w / S (as with 'same' padding) ----
  //
  // Split the input plane into S*S sub-images by row and column parity, sub-image (p, q)
  // holding x[S*r + p][S*k + q] at r * out_w + k (its row pitch is the output's). Then tap
  // (i, j) of output element f = oh * out_w + ow reads sub-image (a % S, b % S) at
  // f + (a / S) * out_w + b / S, with a = i*dh - pad_top, b = j*dw - pad_left (floored): a
  // fixed offset. So a range of output rows is one flat run of vectors with contiguous
  // loads, every lane does useful work even for 7- or 14-wide planes, and no store is
  // masked but the last of a tiny plane. Per channel, the sub-image rows a chunk of output
  // rows reads are built into a per-thread window (zero rows outside the image), one channel
  // ahead of the computation so its loads never wait on those stores. A tap column left or
  // right of the image wraps into a neighbouring row: each tap column is summed apart and
  // added under a column mask, looked up by the column the vector starts at. The last
  // vector of a run is moved back to end at the run's end, recomputing a few lanes with
  // identical results.
  template <int S>
  static bool fits_flat(const DwShape& s) {
    return s.stride_h == S && s.stride_w == S && s.out_w * S >= s.in_w && s.y_hs == s.out_w &&
           (S == 2 || s.out_w == s.in_w);
  }

  // Floats of sub-image window per channel and chunk (two are live: L1-sized).
  static constexpr int64_t kFlatWindowFloats = 2048;

  template <int KH, int KW, int S>
  static void forward_nchw_flat(const DwShape& s, const float* x, const float* w, const float* bias,
                                float* y, int64_t oh_begin, int64_t oh_end) {
    constexpr int TAPS = KH * KW, SUBS = S * S;
    const int64_t OW = s.out_w;
    const Activation act = s.activation;
    auto floor_div = [](int64_t v) { return v >= 0 ? v / S : -((-v + S - 1) / S); };
    int64_t off[TAPS], sub_of[TAPS];
    for (int t = 0; t < TAPS; ++t) {
      const int64_t a = (t / KW) * s.dilation_h - s.pad_top, b = (t % KW) * s.dilation_w - s.pad_left;
      const int64_t ra = floor_div(a), rb = floor_div(b);
      off[t] = ra * OW + rb;
      sub_of[t] = (a - ra * S) * S + (b - rb * S);
    }
    // Output elements [oh_a * OW, oh_b * OW) read sub-image rows [oh_a + row_lo, oh_b - 1 + row_hi].
    auto rows_below = [OW](int64_t v) { return v >= 0 ? v / OW : -((-v + OW - 1) / OW); };
    const int64_t row_lo = rows_below(*std::min_element(off, off + TAPS));
    const int64_t row_hi = rows_below(OW - 1 + *std::max_element(off, off + TAPS));
    // keep[(c0 * KW + j) * N + l]: all ones where lane l of a vector starting at column c0
    // has tap column j inside the image.
    thread_local AlignedVector<float> keep_storage, window_storage;
    keep_storage.resize(static_cast<size_t>(OW * KW * N));
    float* const keep = keep_storage.data();
    const float all_ones = [] {
      const uint32_t bits = ~0u;
      float f;
      std::memcpy(&f, &bits, sizeof f);
      return f;
    }();
    for (int64_t c0 = 0; c0 < OW; ++c0) {
      for (int j = 0; j < KW; ++j) {
        for (int l = 0; l < N; ++l) {
          const int64_t col = (c0 + l) % OW * S + j * s.dilation_w - s.pad_left;
          keep[(c0 * KW + j) * N + l] = col >= 0 && col < s.in_w ? all_ones : 0.f;
        }
      }
    }
    const int64_t halo = row_hi - row_lo;
    const int64_t chunk_rows = std::max<int64_t>(1, kFlatWindowFloats / (SUBS * OW) - halo);
    const int64_t sub_rows_max = std::min(chunk_rows, oh_end - oh_begin) + halo;
    const int64_t sub_floats = sub_rows_max * OW + 2 * N;  // 2N: the last row's spill
    const int64_t window = SUBS * sub_floats;
    window_storage.resize(static_cast<size_t>(2 * window));
    // A sub-image row takes input columns [0, row_floats): the whole row and, where out_w
    // reaches past it, zeros up to S * out_w.
    const int64_t full_parts = s.in_w / N, tail = s.in_w % N;
    const auto tail_mask = V::mask(static_cast<int>(tail));
    float tail_keep_lanes[N];
    for (int l = 0; l < N; ++l) tail_keep_lanes[l] = l < tail ? all_ones : 0.f;
    const reg tail_keep = V::load(tail_keep_lanes);
    auto plane_end = [&](const float* xc) { return xc + (s.in_h - 1) * s.x_hs + s.in_w; };
    const int64_t row_floats = S * OW;

    for (int64_t oh_a = oh_begin; oh_a < oh_end; oh_a += chunk_rows) {
      const int64_t oh_b = std::min(oh_end, oh_a + chunk_rows);
      const int64_t r_lo = oh_a + row_lo, r_hi = oh_b - 1 + row_hi;  // sub-image rows [r_lo, r_hi]
      // Builds channel c's sub-image rows [r_lo, r_hi] into dst. Lanes past an input row's
      // end are zero; they land on that row's padding columns or on the next row, which is
      // built after it (the last row's spill has 2N floats of room).
      auto build = [&](int64_t c, float* dst) {
        const float* xc = x + c * s.x_cs;
        for (int p = 0; p < S; ++p) {
          for (int64_t r = r_lo; r <= r_hi; ++r) {
            const int64_t ih = r * S + p;
            float* row_dst[S];
            for (int q = 0; q < S; ++q) row_dst[q] = dst + (p * S + q) * sub_floats + (r - r_lo) * OW;
            if (ih < 0 || ih >= s.in_h) {
              for (int q = 0; q < S; ++q) {
                for (int64_t k = 0; k < OW; k += N) V::store(row_dst[q] + k, V::zero());
              }
              continue;
            }
            const float* row = xc + ih * s.x_hs;
            // The row's tail is read whole (then cleared past the row's end) where that stays
            // inside the plane: masked loads are slow on some cores.
            const bool tail_whole = row + (full_parts + 1) * N <= plane_end(xc);
            auto part = [&](int64_t k) {  // input columns [k*N, k*N + N), zero past the end
              if (k < full_parts) return V::load(row + k * N);
              if (k > full_parts || tail == 0) return V::zero();
              return tail_whole ? V::bit_and(V::load(row + k * N), tail_keep) : V::load(row + k * N, tail_mask);
            };
            for (int64_t k = 0; k * N < row_floats; k += S) {
              if constexpr (S == 1) {
                V::store(row_dst[0] + k * N, part(k));
              } else {
                const reg lo = part(k), hi = part(k + 1);
                V::store(row_dst[0] + k * N / 2, V::even_lanes(lo, hi));
                V::store(row_dst[1] + k * N / 2, V::odd_lanes(lo, hi));
              }
            }
          }
        }
      };
      // Each channel's rows are a new stream for the hardware prefetcher: ask for them early.
      auto prefetch_rows = [&](int64_t c) {
        const int64_t ih_lo = std::max<int64_t>(0, r_lo * S), ih_hi = std::min(s.in_h, r_hi * S + S);
        for (int64_t ih = ih_lo; ih < ih_hi; ++ih) {
          const float* row = x + c * s.x_cs + ih * s.x_hs;
          for (int64_t b = 0; b < s.in_w; b += 16) __builtin_prefetch(row + b);
        }
      };
      const int64_t f_begin = oh_a * OW, f_end = oh_b * OW, count = f_end - f_begin;
      float* const y_chunk = y + (oh_a - oh_begin) * s.y_hs;
      if (s.channels > 0) build(0, window_storage.data());
      for (int64_t c = 0; c < s.channels; ++c) {
        const float* buf = window_storage.data() + (c % 2) * window;
        if (c + 1 < s.channels) build(c + 1, window_storage.data() + ((c + 1) % 2) * window);
        if (c + 2 < s.channels) prefetch_rows(c + 2);
        const float* src[TAPS];  // src[t][f]: the input tap t of output element f reads
        for (int t = 0; t < TAPS; ++t) src[t] = buf + sub_of[t] * sub_floats - r_lo * OW + off[t];
        for (int64_t oc = c * s.multiplier; oc < (c + 1) * s.multiplier; ++oc) {
          float* yc = y_chunk + oc * s.y_cs - f_begin;
          reg taps[TAPS];
          for (int t = 0; t < TAPS; ++t) taps[t] = V::set1(w[oc * TAPS + t]);
          const reg bv = V::set1(bias ? bias[oc] : 0.f);
          // Output elements [f, f + N) (the first `lanes` stored), first column c0.
          auto vector_at = [&](int64_t f, int64_t c0, int lanes) {
            const float* kc = keep + c0 * KW * N;
            reg acc = bv;
#pragma GCC unroll 5
            for (int j = 0; j < KW; ++j) {
              reg part = V::mul(V::load(src[j] + f), taps[j]);
#pragma GCC unroll 5
              for (int i = 1; i < KH; ++i) part = V::fma(V::load(src[i * KW + j] + f), taps[i * KW + j], part);
              acc = V::add(acc, V::bit_and(part, V::load(kc + j * N)));
            }
            acc = activate<V>(act, acc);
            lanes == N ? V::store(yc + f, acc) : V::store(yc + f, acc, V::mask(lanes));
          };
          if (count < N) {
            vector_at(f_begin, 0, static_cast<int>(count));
            continue;
          }
          int64_t f = f_begin, c0 = 0;  // c0: column of the vector's first element
          for (; f + N <= f_end; f += N) {
            vector_at(f, c0, N);
            c0 += N;
            while (c0 >= OW) c0 -= OW;
          }
          if (f < f_end) vector_at(f_end - N, (OW - N % OW) % OW, N);
        }
      }
    }
  }

  template <int KH, int KW, int SW>
  static void forward_nchw(const DwShape& s, const float* x, const float* w, const float* bias,
                           float* y, int64_t oh_begin, int64_t oh_end) {
    if constexpr (KH > 0 && KW > 0 && SW > 0) {
      if (fits_flat<SW>(s)) {
        forward_nchw_flat<KH, KW, SW>(s, x, w, bias, y, oh_begin, oh_end);
        return;
      }
    }
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
