// Vectorized depthwise backward passes, both layouts, every geometry (any kernel size,
// stride, padding, dilation, multiplier), written once against the vector API
// (csrc/cpu/x86/vec_*.h, csrc/cpu/arm/vec_neon.h) and instantiated per ISA through kernel_set.h.
//
// The ops layer passes the pre-activation output gradient (activation and bias gradients
// are computed there), so these are plain linear maps.
//  - Input gradient, gathered per grad-input element (each is written by one thread):
//    NHWC: vectors across channels. Per input pixel the (grad-output pixel, tap) pairs that
//      reach it are listed once; pixels one column-stride apart that are reached by the same
//      taps run together, so each weight vector is loaded once for all of them.
//    NCHW: vectors across input columns. Each grad-output row is spread, at the column
//      stride, into a zero-filled row, so every grad-input row is the same unmasked
//      correlation of those rows with the flipped kernel rows that reach it.
//  - Weight gradient of a range of output channels, reduced over batch and pixels in an
//    order fixed per channel, so the result does not depend on how the ops layer splits
//    channels between threads:
//    NHWC: vectors across channels, per tap a sweep over the output row's valid columns;
//    NCHW: vectors across output columns (input rows split into one plane per column
//      phase so every tap reads contiguously), summed horizontally at the end.
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../aligned_vector.h"
#include "../shapes.h"
#include "depthwise.h"

namespace dsconv::simd {

// Grad-output positions along one axis that reach input position i: tap k reaches it
// from o = (i + pad - k * dilation) / stride when that divides and lies in [0, out_size).
struct Reach {
  int64_t tap, out;
};
static inline int64_t axis_reach(int64_t i, int64_t kernel, int64_t stride, int64_t pad,
                                 int64_t dilation, int64_t out_size, Reach* list) {
  int64_t count = 0;
  for (int64_t k = 0; k < kernel; ++k) {
    const int64_t t = i + pad - k * dilation;
    if (t >= 0 && t % stride == 0 && t / stride < out_size) list[count++] = {k, t / stride};
  }
  return count;
}

// Output positions [lo, hi) whose tap k lands inside an input axis of size in_size.
static inline TapRange valid_outputs(int64_t k, int64_t stride, int64_t pad, int64_t dilation,
                                     int64_t in_size, int64_t out_size) {
  const int64_t first = pad - k * dilation;  // o * stride >= first
  const int64_t lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  const int64_t last = in_size - 1 + pad - k * dilation;  // o * stride <= last
  const int64_t hi = last < 0 ? 0 : std::min(out_size, last / stride + 1);
  return {std::min(lo, out_size), std::max(std::min(lo, out_size), hi)};
}

template <class V>
struct DepthwiseBackward {
  using reg = typename V::reg;
  using Mask = typename V::Mask;
  static constexpr int N = V::N;

  // NHWC input-gradient weights: out[(m * taps + t) * C + c] = w[(c * M + m) * taps + t], so
  // for a fixed m and tap the weights of consecutive input channels are contiguous.
  static int64_t pack_channels_inner(const DwShape& s, const float* w, float* out) {
    const int64_t taps = s.kernel_h * s.kernel_w, C = s.channels, M = s.multiplier;
    if (out != nullptr) {
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t m = 0; m < M; ++m) {
          for (int64_t t = 0; t < taps; ++t) out[(m * taps + t) * C + c] = w[(c * M + m) * taps + t];
        }
      }
    }
    return taps * C * M;
  }

  // Channels [c, c + NV*N) of grad-output pixel p: contiguous, or every M-th channel.
  template <bool FULL, bool STRIDED>
  static reg load_gy(const float* p, int64_t M, Mask m) {
    if (STRIDED) return FULL ? V::gather(p, M) : V::gather(p, M, m);
    return FULL ? V::load(p) : V::load(p, m);
  }

  // ---- input gradient, NHWC: x_cs == y_cs == 1 ----

  // Channels [c, c + NV*N) of PX grad-input pixels out + p * out_step, each the sum over
  // the `count` listed terms: grad-output pixel g[t] + p * g_step (channel stride M) times
  // weight row wt[t].
  template <int PX, int NV, bool FULL, bool STRIDED>
  static void nhwc_input_pixels(int64_t count, const float* const* g, const float* const* wt,
                                int64_t g_step, int64_t M, float* out, int64_t out_step, int64_t c,
                                Mask m) {
    reg acc[PX][NV];
#pragma GCC unroll 4
    for (int p = 0; p < PX; ++p) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[p][v] = V::zero();
    }
    for (int64_t t = 0; t < count; ++t) {
      reg wv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) wv[v] = FULL ? V::load(wt[t] + c + v * N) : V::load(wt[t] + c + v * N, m);
#pragma GCC unroll 4
      for (int p = 0; p < PX; ++p) {
        const float* gp = g[t] + p * g_step;
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
          acc[p][v] = V::fma(load_gy<FULL, STRIDED>(gp + (c + v * N) * M, M, m), wv[v], acc[p][v]);
        }
      }
    }
#pragma GCC unroll 4
    for (int p = 0; p < PX; ++p) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        float* o = out + p * out_step + c + v * N;
        FULL ? V::store(o, acc[p][v]) : V::store(o, acc[p][v], m);
      }
    }
  }

  template <int PX, bool STRIDED>
  static void nhwc_input_group(int64_t C, int64_t count, const float* const* g, const float* const* wt,
                               int64_t g_step, int64_t M, float* out, int64_t out_step) {
    int64_t c = 0;
    for (; c + 2 * N <= C; c += 2 * N) {
      nhwc_input_pixels<PX, 2, true, STRIDED>(count, g, wt, g_step, M, out, out_step, c, V::mask(N));
    }
    for (; c + N <= C; c += N) {
      nhwc_input_pixels<PX, 1, true, STRIDED>(count, g, wt, g_step, M, out, out_step, c, V::mask(N));
    }
    if (c < C) {
      nhwc_input_pixels<PX, 1, false, STRIDED>(count, g, wt, g_step, M, out, out_step, c,
                                               V::mask(static_cast<int>(C - c)));
    }
  }

  template <bool STRIDED>
  static void backward_input_nhwc_rows(const DwShape& s, const float* gy, const float* w, float* gx,
                                       int64_t ih_begin, int64_t ih_end) {
    constexpr int PX = 4;
    const int64_t C = s.channels, M = s.multiplier, kh = s.kernel_h, kw = s.kernel_w;
    const int64_t taps = kh * kw, sw = s.stride_w;
    // Per input column: the (tap column, grad-output column) pairs that reach it.
    thread_local std::vector<Reach> col_buf, row_buf;
    thread_local std::vector<int64_t> col_count_buf;
    thread_local std::vector<const float*> g_buf, w_buf;
    col_buf.resize(static_cast<size_t>(s.in_w * kw));
    col_count_buf.resize(static_cast<size_t>(s.in_w));
    row_buf.resize(static_cast<size_t>(kh));
    g_buf.resize(static_cast<size_t>(M * taps));
    w_buf.resize(static_cast<size_t>(M * taps));
    Reach* const cols = col_buf.data();
    int64_t* const col_count = col_count_buf.data();
    Reach* const rows = row_buf.data();
    const float** const g = g_buf.data();
    const float** const wt = w_buf.data();
    for (int64_t iw = 0; iw < s.in_w; ++iw) {
      col_count[iw] = axis_reach(iw, kw, sw, s.pad_left, s.dilation_w, s.out_w, cols + iw * kw);
    }
    // Columns iw and iw + sw are reached by the same taps (from grad-output columns one apart).
    auto same_taps = [&](int64_t a, int64_t b) {
      if (col_count[a] != col_count[b]) return false;
      for (int64_t i = 0; i < col_count[a]; ++i) {
        if (cols[a * kw + i].tap != cols[b * kw + i].tap) return false;
      }
      return true;
    };
    for (int64_t ih = ih_begin; ih < ih_end; ++ih) {
      float* gx_row = gx + (ih - ih_begin) * s.x_hs;
      const int64_t nrows = axis_reach(ih, kh, s.stride_h, s.pad_top, s.dilation_h, s.out_h, rows);
      // The terms of column iw, in a fixed order (m, tap row, tap column).
      auto list_terms = [&](int64_t iw) {
        int64_t count = 0;
        for (int64_t m = 0; m < M; ++m) {
          for (int64_t r = 0; r < nrows; ++r) {
            for (int64_t q = 0; q < col_count[iw]; ++q) {
              const Reach& col = cols[iw * kw + q];
              g[count] = gy + rows[r].out * s.y_hs + col.out * s.y_ws + m;
              wt[count] = w + (m * taps + rows[r].tap * kw + col.tap) * C;
              ++count;
            }
          }
        }
        return count;
      };
      for (int64_t r = 0; r < std::min(sw, s.in_w); ++r) {
        int64_t iw = r;
        while (iw < s.in_w) {
          const int64_t last = iw + (PX - 1) * sw;
          bool group = last < s.in_w;
          for (int64_t p = 1; group && p < PX; ++p) group = same_taps(iw, iw + p * sw);
          const int64_t count = list_terms(iw);
          if (group) {
            nhwc_input_group<PX, STRIDED>(C, count, g, wt, s.y_ws, M, gx_row + iw * s.x_ws, sw * s.x_ws);
            iw += PX * sw;
          } else {
            nhwc_input_group<1, STRIDED>(C, count, g, wt, s.y_ws, M, gx_row + iw * s.x_ws, 0);
            iw += sw;
          }
        }
      }
    }
  }

  static void backward_input_nhwc(const DwShape& s, const float* gy, const float* w, float* gx,
                                  int64_t ih_begin, int64_t ih_end) {
    if (s.multiplier == 1) {
      backward_input_nhwc_rows<false>(s, gy, w, gx, ih_begin, ih_end);
    } else {
      backward_input_nhwc_rows<true>(s, gy, w, gx, ih_begin, ih_end);
    }
  }

  // ---- input gradient, NCHW: x_ws == y_ws == 1 ----

  // U vectors of grad-input columns from iw: sum over the listed (buffered row, tap row)
  // pairs and every tap column of row[iw + (kw - 1 - kj) * dw] * w[tap row][kj]; adds to
  // what `out` holds unless FIRST.
  template <int U, bool FIRST>
  static void nchw_input_vectors(const float* const* brow, const float* const* wrow, int64_t nterms,
                                 int64_t kw, int64_t dw, float* out, int64_t iw, int lanes) {
    reg acc[U];
    const Mask m = V::mask(lanes);
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      const bool full = u < U - 1 || lanes == N;
      acc[u] = FIRST ? V::zero() : full ? V::load(out + iw + u * N) : V::load(out + iw + u * N, m);
    }
    for (int64_t t = 0; t < nterms; ++t) {
      const float* b = brow[t] + iw + (kw - 1) * dw;
      for (int64_t kj = 0; kj < kw; ++kj) {
        const reg wv = V::set1(wrow[t][kj]);
#pragma GCC unroll 4
        for (int u = 0; u < U; ++u) acc[u] = V::fma(V::load(b - kj * dw + u * N), wv, acc[u]);
      }
    }
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      if (u < U - 1 || lanes == N) {
        V::store(out + iw + u * N, acc[u]);
      } else {
        V::store(out + iw + u * N, acc[u], m);
      }
    }
  }

  template <bool FIRST>
  static void nchw_input_row(const float* const* brow, const float* const* wrow, int64_t nterms,
                             int64_t kw, int64_t dw, float* out, int64_t in_w) {
    constexpr int U = 4;
    int64_t iw = 0;
    for (; iw + U * N <= in_w; iw += U * N) nchw_input_vectors<U, FIRST>(brow, wrow, nterms, kw, dw, out, iw, N);
    for (; iw < in_w; iw += N) {
      nchw_input_vectors<1, FIRST>(brow, wrow, nterms, kw, dw, out, iw,
                                   static_cast<int>(std::min<int64_t>(N, in_w - iw)));
    }
  }

  static void backward_input_nchw(const DwShape& s, const float* gy, const float* w, float* gx,
                                  int64_t ih_begin, int64_t ih_end) {
    const int64_t kh = s.kernel_h, kw = s.kernel_w, M = s.multiplier, taps = kh * kw;
    const int64_t sw = s.stride_w, dw = s.dilation_w, span = (kw - 1) * dw;
    // Grad-output rows that reach grad-input rows [ih_begin, ih_end).
    const int64_t reach_lo = ih_begin + s.pad_top - (kh - 1) * s.dilation_h;
    const int64_t oh_lo = reach_lo <= 0 ? 0 : (reach_lo + s.stride_h - 1) / s.stride_h;
    const int64_t oh_hi = std::min(s.out_h, (ih_end - 1 + s.pad_top) / s.stride_h + 1);
    const int64_t nbuf = std::max<int64_t>(0, oh_hi - oh_lo);
    // A spread row: column b holds grad-output column (b - lead) / sw where that divides,
    // else 0, so grad-input column iw, tap kj reads column iw + (kw - 1 - kj) * dw.
    const int64_t lead = span - s.pad_left;
    const int64_t width = (s.in_w + N - 1) / N * N + span;
    thread_local AlignedVector<float> buffer_storage;
    thread_local std::vector<Reach> reach_buf;
    thread_local std::vector<int64_t> reach_count_buf;
    thread_local std::vector<const float*> brow_buf, wrow_buf;
    buffer_storage.resize(static_cast<size_t>(std::max<int64_t>(1, nbuf * width)));
    reach_buf.resize(static_cast<size_t>((ih_end - ih_begin) * kh));
    reach_count_buf.resize(static_cast<size_t>(ih_end - ih_begin));
    brow_buf.resize(static_cast<size_t>(kh));
    wrow_buf.resize(static_cast<size_t>(kh));
    float* const buffer = buffer_storage.data();
    Reach* const reach = reach_buf.data();
    int64_t* const reach_count = reach_count_buf.data();
    const float** const brow = brow_buf.data();
    const float** const wrow = wrow_buf.data();
    for (int64_t ih = ih_begin; ih < ih_end; ++ih) {
      const int64_t i = ih - ih_begin;
      reach_count[i] = axis_reach(ih, kh, s.stride_h, s.pad_top, s.dilation_h, s.out_h, reach + i * kh);
    }
    // Grad-output columns landing inside a spread row: b = ow * sw + lead in [0, width).
    const int64_t ow_lo = lead >= 0 ? 0 : (-lead + sw - 1) / sw;
    const int64_t ow_hi = std::min(s.out_w, (width - 1 - lead) / sw + 1);
    for (int64_t c = 0; c < s.channels; ++c) {
      for (int64_t m = 0; m < M; ++m) {
        const int64_t oc = c * M + m;
        const float* gyc = gy + oc * s.y_cs;
        for (int64_t r = 0; r < nbuf; ++r) {
          float* row = buffer + r * width;
          const float* src = gyc + (oh_lo + r) * s.y_hs;
          std::fill(row, row + width, 0.f);
          for (int64_t ow = ow_lo; ow < ow_hi; ++ow) row[ow * sw + lead] = src[ow];
        }
        const float* wc = w + oc * taps;
        for (int64_t ih = ih_begin; ih < ih_end; ++ih) {
          const int64_t i = ih - ih_begin;
          for (int64_t t = 0; t < reach_count[i]; ++t) {
            brow[t] = buffer + (reach[i * kh + t].out - oh_lo) * width;
            wrow[t] = wc + reach[i * kh + t].tap * kw;
          }
          float* out = gx + i * s.x_hs + c * s.x_cs;
          if (m == 0) {
            nchw_input_row<true>(brow, wrow, reach_count[i], kw, dw, out, s.in_w);
          } else {
            nchw_input_row<false>(brow, wrow, reach_count[i], kw, dw, out, s.in_w);
          }
        }
      }
    }
  }

  // ---- weight gradient, NHWC: x_cs == y_cs == 1 ----

  // Lanes are input channels [c, c + N) for one m (output channels (c + l) * M + m).
  // acc[tap * N ..] += sum over output row oh of one image, per tap a sweep over the
  // columns where it lands inside the input (four partial sums, combined per row).
  template <bool FULL, bool STRIDED>
  static void nhwc_weight_row(const DwShape& s, const float* gy_row, const float* x_img, int64_t oh,
                              const TapRange* ow_valid, float* acc, int64_t M, Mask m) {
    const int64_t kw = s.kernel_w;
    const TapRange ki = tap_range(oh, s.stride_h, s.pad_top, s.dilation_h, s.kernel_h, s.in_h);
    const int64_t g_step = s.y_ws, x_step = s.stride_w * s.x_ws;
    auto load_x = [m](const float* p) { return FULL ? V::load(p) : V::load(p, m); };
    for (int64_t i = ki.lo; i < ki.hi; ++i) {
      const float* x_row = x_img + (oh * s.stride_h - s.pad_top + i * s.dilation_h) * s.x_hs;
      for (int64_t j = 0; j < kw; ++j) {
        const TapRange o = ow_valid[j];
        const float* gp = gy_row + o.lo * g_step;
        const float* xp = x_row + (o.lo * s.stride_w - s.pad_left + j * s.dilation_w) * s.x_ws;
        reg a[4] = {V::zero(), V::zero(), V::zero(), V::zero()};
        int64_t ow = o.lo;
        for (; ow + 4 <= o.hi; ow += 4, gp += 4 * g_step, xp += 4 * x_step) {
#pragma GCC unroll 4
          for (int u = 0; u < 4; ++u) {
            a[u] = V::fma(load_gy<FULL, STRIDED>(gp + u * g_step, M, m), load_x(xp + u * x_step), a[u]);
          }
        }
        for (; ow < o.hi; ++ow, gp += g_step, xp += x_step) {
          a[0] = V::fma(load_gy<FULL, STRIDED>(gp, M, m), load_x(xp), a[0]);
        }
        float* at = acc + (i * kw + j) * N;
        V::store(at, V::add(V::load(at), V::add(V::add(a[0], a[1]), V::add(a[2], a[3]))));
      }
    }
  }

  // The same sum for a KH x KW kernel with the taps' accumulators in registers for the
  // whole row: per output column one grad-output load and one input load per tap. Columns
  // in `inner` (all taps inside the input) run unchecked.
  template <int KH, int KW, bool FULL, bool STRIDED>
  static void nhwc_weight_row_fixed(const DwShape& s, const float* gy_row, const float* x_img, int64_t oh,
                                    TapRange inner, float* acc_mem, int64_t M, Mask m) {
    const TapRange ki = tap_range(oh, s.stride_h, s.pad_top, s.dilation_h, KH, s.in_h);
    const int64_t sw = s.stride_w, dwx = s.dilation_w * s.x_ws;
    const float* rows[KH];
#pragma GCC unroll 8
    for (int i = 0; i < KH; ++i) {
      const int64_t ih = i >= ki.lo && i < ki.hi ? oh * s.stride_h - s.pad_top + i * s.dilation_h : 0;
      rows[i] = x_img + ih * s.x_hs;
    }
    reg acc[KH * KW];
#pragma GCC unroll 25
    for (int t = 0; t < KH * KW; ++t) acc[t] = V::load(acc_mem + t * N);
    auto load_x = [m](const float* p) { return FULL ? V::load(p) : V::load(p, m); };
    // One output column; CHECK: test each tap column against the input's width.
    auto column = [&](int64_t ow, auto check) {
      const reg g = load_gy<FULL, STRIDED>(gy_row + ow * s.y_ws, M, m);
      const int64_t iw0 = ow * sw - s.pad_left;
#pragma GCC unroll 8
      for (int i = 0; i < KH; ++i) {
        if (i < ki.lo || i >= ki.hi) continue;
        const float* xp = rows[i] + iw0 * s.x_ws;
#pragma GCC unroll 8
        for (int j = 0; j < KW; ++j) {
          if (decltype(check)::value) {
            const int64_t iw = iw0 + j * s.dilation_w;
            if (iw < 0 || iw >= s.in_w) continue;
          }
          acc[i * KW + j] = V::fma(g, load_x(xp + j * dwx), acc[i * KW + j]);
        }
      }
    };
    int64_t ow = 0;
    for (; ow < inner.lo; ++ow) column(ow, std::true_type{});
    for (; ow < inner.hi; ++ow) column(ow, std::false_type{});
    for (; ow < s.out_w; ++ow) column(ow, std::true_type{});
#pragma GCC unroll 25
    for (int t = 0; t < KH * KW; ++t) V::store(acc_mem + t * N, acc[t]);
  }

  template <int KH, int KW, bool STRIDED>
  static void backward_weight_nhwc_channels(const DwShape& s, const float* gy, const float* x, float* gw,
                                            int64_t oc_begin, int64_t oc_end) {
    const int64_t M = s.multiplier, taps = s.kernel_h * s.kernel_w;
    // Input channels whose output channels meet [oc_begin, oc_end).
    const int64_t c_lo = oc_begin / M, c_hi = (oc_end - 1) / M + 1;
    const int64_t blocks = (c_hi - c_lo + N - 1) / N;
    thread_local AlignedVector<float> acc_storage;
    thread_local std::vector<TapRange> ow_valid_buf;
    acc_storage.resize(static_cast<size_t>(blocks * M * taps * N));
    ow_valid_buf.resize(static_cast<size_t>(s.kernel_w));
    float* const acc_all = acc_storage.data();  // [block][m][tap][N]
    TapRange* const ow_valid = ow_valid_buf.data();
    for (int64_t j = 0; j < s.kernel_w; ++j) {
      ow_valid[j] = valid_outputs(j, s.stride_w, s.pad_left, s.dilation_w, s.in_w, s.out_w);
    }
    std::fill(acc_all, acc_all + blocks * M * taps * N, 0.f);
    const TapRange inner = interior_columns(s);
    // Blocks inside the row loop, so the rows stay in cache while every block reads them.
    for (int64_t n = 0; n < s.batch; ++n) {
      for (int64_t oh = 0; oh < s.out_h; ++oh) {
        for (int64_t b = 0; b < blocks; ++b) {
          const int64_t c = c_lo + b * N;
          const int lanes = static_cast<int>(std::min<int64_t>(N, c_hi - c));
          const Mask mk = V::mask(lanes);
          const float* x_img = x + n * s.x_ns + c;
          for (int64_t m = 0; m < M; ++m) {
            const float* gy_row = gy + n * s.y_ns + oh * s.y_hs + c * M + m;
            float* const acc = acc_all + (b * M + m) * taps * N;
            if constexpr (KH > 0 && KW > 0) {
              if (lanes == N) {
                nhwc_weight_row_fixed<KH, KW, true, STRIDED>(s, gy_row, x_img, oh, inner, acc, M, mk);
              } else {
                nhwc_weight_row_fixed<KH, KW, false, STRIDED>(s, gy_row, x_img, oh, inner, acc, M, mk);
              }
            } else if (lanes == N) {
              nhwc_weight_row<true, STRIDED>(s, gy_row, x_img, oh, ow_valid, acc, M, mk);
            } else {
              nhwc_weight_row<false, STRIDED>(s, gy_row, x_img, oh, ow_valid, acc, M, mk);
            }
          }
        }
      }
    }
    for (int64_t oc = oc_begin; oc < oc_end; ++oc) {
      const int64_t ci = oc / M - c_lo, m = oc % M;
      const float* a = acc_all + ((ci / N * M + m) * taps) * N + ci % N;
      for (int64_t t = 0; t < taps; ++t) gw[(oc - oc_begin) * taps + t] = a[t * N];
    }
  }

  // KH, KW > 0 fix the kernel size (taps in registers); 0: any.
  template <int KH, int KW>
  static void backward_weight_nhwc(const DwShape& s, const float* gy, const float* x, float* gw,
                                   int64_t oc_begin, int64_t oc_end) {
    if (oc_end <= oc_begin) return;
    if (s.multiplier == 1) {
      backward_weight_nhwc_channels<KH, KW, false>(s, gy, x, gw, oc_begin, oc_end);
    } else {
      backward_weight_nhwc_channels<KH, KW, true>(s, gy, x, gw, oc_begin, oc_end);
    }
  }

  // ---- weight gradient, NCHW: x_ws == y_ws == 1 ----

  // out[b] = input column b - pad_left (0 outside), b < len. Writes up to N - 1 floats past
  // len (the caller leaves room): the copy's last vector is a masked load (zeros past the
  // row) stored whole, as masked stores are slow on some CPUs (AMD).
  static void pad_row(const float* x_row, int64_t in_w, int64_t pad_left, int64_t len, float* out) {
    const int64_t lead = std::min(len, pad_left);
    const int64_t copy = std::max<int64_t>(0, std::min(in_w, len - lead));
    std::fill(out, out + lead, 0.f);
    float* const d = out + lead;
    int64_t i = 0;
    for (; i + N <= copy; i += N) V::store(d + i, V::load(x_row + i));
    if (i < copy) {
      V::store(d + i, V::load(x_row + i, V::mask(static_cast<int>(copy - i))));
      i += N;
    }
    if (lead + i < len) std::fill(d + i, out + len, 0.f);
  }

  // The rows of one input channel as `phases` planes of `plane` floats each: plane q, index
  // j holds padded column j * phases + q (input column j * phases + q - pad_left). Rows are
  // padded into `staging` first, all of them, and only then split: splitting a row right
  // after writing it would load each vector across two stores still in flight, which
  // stalls. Both buffers hold in_h * plane * phases + N floats.
  static void split_rows(const DwShape& s, const float* xc, int64_t phases, int64_t plane,
                         float* staging, float* out) {
    const int64_t len = plane * phases;
    float* const padded = phases == 1 ? out : staging;
    for (int64_t ih = 0; ih < s.in_h; ++ih) pad_row(xc + ih * s.x_hs, s.in_w, s.pad_left, len, padded + ih * len);
    if (phases == 1) return;
    for (int64_t ih = 0; ih < s.in_h; ++ih) {
      const float* src = staging + ih * len;
      float* dst = out + ih * len;
      if (phases == 2) {  // plane is a multiple of N
        for (int64_t j = 0; j < plane; j += N) {
          V::store(dst + j, V::load_even(src + 2 * j));
          V::store(dst + plane + j, V::load_even(src + 2 * j + 1));
        }
        continue;
      }
      for (int64_t q = 0; q < phases; ++q) {
        for (int64_t j = 0; j < plane; ++j) dst[q * plane + j] = src[j * phases + q];
      }
    }
  }

  // a[tap * N ..] += one image's sum for one output channel: gyc is its grad-output plane,
  // buffer its input rows split by split_rows. Fixed KH x KW: the taps' accumulators stay
  // in registers over the image, one grad-output load per vector for all taps; any size:
  // per tap a sweep over each row with two partial sums.
  template <int KH, int KW>
  static void nchw_weight_image(const DwShape& s, const float* gyc, const float* buffer, int64_t plane,
                                int64_t row_len, float* a) {
    const int64_t kh = KH > 0 ? KH : s.kernel_h, kw = KW > 0 ? KW : s.kernel_w;
    const int64_t sw = s.stride_w, dw = s.dilation_w;
    const int64_t vectors_full = s.out_w / N;
    const Mask tail = V::mask(static_cast<int>(s.out_w - vectors_full * N));
    if constexpr (KH > 0 && KW > 0) {
      int64_t xoff[KW];
      for (int j = 0; j < KW; ++j) xoff[j] = (j * dw) % sw * plane + (j * dw) / sw;
      reg acc[KH * KW];
#pragma GCC unroll 25
      for (int t = 0; t < KH * KW; ++t) acc[t] = V::load(a + t * N);
      for (int64_t oh = 0; oh < s.out_h; ++oh) {
        const float* g = gyc + oh * s.y_hs;
        const TapRange ki = tap_range(oh, s.stride_h, s.pad_top, s.dilation_h, KH, s.in_h);
        const float* rows[KH];
#pragma GCC unroll 8
        for (int i = 0; i < KH; ++i) {
          const int64_t ih = i >= ki.lo && i < ki.hi ? oh * s.stride_h - s.pad_top + i * s.dilation_h : 0;
          rows[i] = buffer + ih * row_len;
        }
        auto vector = [&](int64_t v, auto masked) {
          constexpr bool MASKED = decltype(masked)::value;
          const reg gv = MASKED ? V::load(g + v * N, tail) : V::load(g + v * N);
#pragma GCC unroll 8
          for (int i = 0; i < KH; ++i) {
            if (i < ki.lo || i >= ki.hi) continue;
#pragma GCC unroll 8
            for (int j = 0; j < KW; ++j) {
              const float* xp = rows[i] + xoff[j] + v * N;
              acc[i * KW + j] = V::fma(gv, MASKED ? V::load(xp, tail) : V::load(xp), acc[i * KW + j]);
            }
          }
        };
        for (int64_t v = 0; v < vectors_full; ++v) vector(v, std::false_type{});
        if (vectors_full * N < s.out_w) vector(vectors_full, std::true_type{});
      }
#pragma GCC unroll 25
      for (int t = 0; t < KH * KW; ++t) V::store(a + t * N, acc[t]);
      return;
    }
    for (int64_t oh = 0; oh < s.out_h; ++oh) {
      const float* g = gyc + oh * s.y_hs;
      const TapRange ki = tap_range(oh, s.stride_h, s.pad_top, s.dilation_h, kh, s.in_h);
      for (int64_t i = ki.lo; i < ki.hi; ++i) {
        const float* row = buffer + (oh * s.stride_h - s.pad_top + i * s.dilation_h) * row_len;
        for (int64_t j = 0; j < kw; ++j) {
          const float* xp = row + (j * dw) % sw * plane + (j * dw) / sw;
          reg a0 = V::zero(), a1 = V::zero();
          int64_t v = 0;
          for (; v + 2 <= vectors_full; v += 2) {
            a0 = V::fma(V::load(g + v * N), V::load(xp + v * N), a0);
            a1 = V::fma(V::load(g + (v + 1) * N), V::load(xp + (v + 1) * N), a1);
          }
          if (v < vectors_full) {
            a0 = V::fma(V::load(g + v * N), V::load(xp + v * N), a0);
            ++v;
          }
          if (v * N < s.out_w) a1 = V::fma(V::load(g + v * N, tail), V::load(xp + v * N, tail), a1);
          float* at = a + (i * kw + j) * N;
          V::store(at, V::add(V::load(at), V::add(a0, a1)));
        }
      }
    }
  }

  // KH, KW > 0 fix the kernel size (taps in registers); 0: any.
  template <int KH, int KW>
  static void backward_weight_nchw(const DwShape& s, const float* gy, const float* x, float* gw,
                                   int64_t oc_begin, int64_t oc_end) {
    if (oc_end <= oc_begin) return;
    const int64_t M = s.multiplier, kh = s.kernel_h, kw = s.kernel_w, taps = kh * kw;
    const int64_t sw = s.stride_w, dw = s.dilation_w;
    const int64_t out_w_vec = (s.out_w + N - 1) / N * N;
    // Output vector at column ow, tap column kj reads plane (kj*dw) % sw from ow + (kj*dw) / sw.
    const int64_t plane = (out_w_vec + (kw - 1) * dw / sw + 1 + N - 1) / N * N;
    const int64_t row_len = plane * sw;
    thread_local AlignedVector<float> buffer_storage, staging_storage, chan_acc_storage;
    buffer_storage.resize(static_cast<size_t>(s.in_h * row_len + N));  // + N: see split_rows
    staging_storage.resize(static_cast<size_t>(sw == 1 ? 0 : s.in_h * row_len + N));
    float* const buffer = buffer_storage.data();
    float* const staging = staging_storage.data();
    const int64_t c_lo = oc_begin / M, c_hi = (oc_end - 1) / M + 1;
    // Partial sums of the output channels of one input channel: [m][tap][N].
    chan_acc_storage.resize(static_cast<size_t>(M * taps * N));
    float* const chan_acc = chan_acc_storage.data();
    for (int64_t c = c_lo; c < c_hi; ++c) {
      const int64_t m_lo = std::max<int64_t>(0, oc_begin - c * M);
      const int64_t m_hi = std::min<int64_t>(M, oc_end - c * M);
      std::fill(chan_acc, chan_acc + M * taps * N, 0.f);
      for (int64_t n = 0; n < s.batch; ++n) {
        const float* xc = x + n * s.x_ns + c * s.x_cs;
        split_rows(s, xc, sw, plane, staging, buffer);
        for (int64_t m = m_lo; m < m_hi; ++m) {
          const int64_t oc = c * M + m;
          const float* gyc = gy + n * s.y_ns + oc * s.y_cs;
          nchw_weight_image<KH, KW>(s, gyc, buffer, plane, row_len, chan_acc + m * taps * N);
        }
      }
      for (int64_t m = m_lo; m < m_hi; ++m) {
        const int64_t oc = c * M + m;
        for (int64_t t = 0; t < taps; ++t) {
          const float* at = chan_acc + (m * taps + t) * N;
          float sum = 0.f;
          for (int l = 0; l < N; ++l) sum += at[l];
          gw[(oc - oc_begin) * taps + t] = sum;
        }
      }
    }
  }
};

}  // namespace dsconv::simd
