// Pointwise (1x1) convolution drivers over the GEMM microkernel, with their weight
// packing. Both keep one operand block in L2 while the other streams:
//  - NHWC: Y[pix x Cout] = X[pix x Cin] . W^T. Rows are pixels (A = input, read in place),
//    B = W^T packed in panels of NR = NV*N output channels: packed[panel][ci][NR], zero
//    padded, so each k step loads whole vectors; or W^T read in place (PwShape::w_ks),
//    the edge panel through masked loads.
//  - NCHW: Y[Cout x pix] = W[Cout x Cin] . X. Rows are output channels (A = W packed in
//    panels of MR channels: packed[panel][ci][MR], or W^T in place), B = input rows read
//    in place.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "../cache_sizes.h"
#include "../shapes.h"
#include "gemm_tile.h"

namespace dsconv::simd {

// Pixel rows of X (Cin floats each) that fit in about half of L2 with the B panel (for a
// 512 KiB L2, scaled to the CPU's: l2_scaled).
constexpr int64_t kPointwiseBlockBytes = 128 * 1024;

// MR x NV vectors is the tile; NHWC forward uses the second tile MR2 x NV2 instead where its
// width divides C_out and the first tile's does not (on AVX2, 4x24 for C_out = 24, 72, 120,
// ...: 1.14x at C_out = 24, where 6x16 leaves a half-empty panel; where both divide C_out,
// 6x16 measured as fast or faster), and the deep tile MR_DEEP x NV from kDeepK input
// channels on (same panels, so the same packing). MR_NARROW > 0: C_out <= one vector uses
// an MR_NARROW x 1 tile on one-vector panels (AVX-512 12x16 at C_out = 16, K = 32:
// 1.19-1.28x the 8x32 tile, whose 8 one-vector FMA chains barely cover the FMA latency; at
// C_out = 96 or 144, 12x16 was 0.68-0.85x of 8x32, so only the narrow case).
template <class V, int MR, int NV, int MR2 = MR, int NV2 = NV, int MR_DEEP = MR, int MR_NARROW = 0>
struct Pointwise {
  static constexpr int NR = NV * V::N;
  static constexpr int NR2 = NV2 * V::N;
  // From this K on, a K x NR weight panel no longer fits in L1 and streams from L2 once per
  // tile of rows: a taller tile reads it fewer times (AVX-512, 14x32 against 8x32 on an
  // Intel Xeon with 48 KiB L1, weights in L2: 1.05-1.07x at K = 384..960, 1.16x at
  // K = 1024; from K = 64 to 240 the two were level within +-5%, and below 64 8x32 was as
  // fast or faster).
  static constexpr int64_t kDeepK = 384;

  // Whether NHWC forward (and its packing) uses the second tile for C_out = n.
  static bool second_tile(int64_t n) {
    return (MR2 != MR || NV2 != NV) && n % NR2 == 0 && n % NR != 0;
  }
  // Whether NHWC forward (and its packing) uses the narrow tile for C_out = n.
  static bool narrow_tile(int64_t n) { return MR_NARROW > 0 && NV > 1 && n <= V::N && !second_tile(n); }

  // Output channels in panels of `rows`: out[panel][k][r] = w[panel*rows + r][k], zero
  // padded. NHWC uses panels of NR (the B operand), NCHW panels of MR (the A operand).
  static int64_t pack_panels(const PwShape& s, const float* w, float* out, int64_t rows) {
    const int64_t panels = (s.out_channels + rows - 1) / rows;
    const int64_t K = s.in_channels;
    if (out != nullptr) {
      // Blocks of kPackK inputs: rows of w are read contiguously and the block of the panel
      // they fill stays in L1 (w is repacked on every call when it has no version counter).
      constexpr int64_t kPackK = 64;
      for (int64_t p = 0; p < panels; ++p) {
        float* panel = out + p * K * rows;
        for (int64_t k0 = 0; k0 < K; k0 += kPackK) {
          const int64_t k1 = std::min(K, k0 + kPackK);
          for (int64_t r = 0; r < rows; ++r) {
            const int64_t co = p * rows + r;
            const float* src = w + co * K;
            for (int64_t k = k0; k < k1; ++k) panel[k * rows + r] = co < s.out_channels ? src[k] : 0.f;
          }
        }
      }
    }
    return panels * K * rows;
  }
  static int64_t pack_nhwc(const PwShape& s, const float* w, float* out) {
    return pack_panels(s, w, out, second_tile(s.out_channels)   ? NR2
                                  : narrow_tile(s.out_channels) ? V::N
                                                                : NR);
  }
  static int64_t pack_nchw(const PwShape& s, const float* w, float* out) { return pack_panels(s, w, out, MR); }

  // Blocks over K, so a KC x NR panel slice stays in L1 and the operand block in L2;
  // later K blocks accumulate into the output, and the activation runs on the last one.
  static constexpr int64_t KC = 256;
  // NHWC forward blocks K only past 1024: re-loading and re-storing the C tile for each K
  // block cost more than streaming a taller B panel from L2 (measured on Zen 3, hot
  // caches: K = 512..1024 at 49..196 pixels 1.03-1.06x faster than KC; the NCHW loop,
  // whose A panel is the weight, was 0.94-0.97x with it, so it keeps KC).
  static constexpr int64_t KC_NHWC = 1024;
  // From this K on, NHWC forward spreads the next panel's prefetch over pixel tiles.
  static constexpr int64_t kSpreadPrefetchK = 256;

  // x and y point at the first of npix pixels; x_cs == y_cs == 1. Rows of A are read in
  // place (broadcast from x with row stride x_ps): a block of pixels stays in L2 while each
  // KC x NR panel slice of B stays in L1.
  static void forward_nhwc(const PwShape& s, const float* x, const float* packed, const float* bias,
                           float* y, int64_t npix) {
    if (second_tile(s.out_channels)) {
      forward_nhwc_tile<MR2, NV2>(s, x, packed, bias, y, npix);
    } else if (narrow_tile(s.out_channels)) {
      forward_nhwc_tile<(MR_NARROW > 0 ? MR_NARROW : MR), 1>(s, x, packed, bias, y, npix);
    } else if (MR_DEEP != MR && s.in_channels >= kDeepK) {
      forward_nhwc_tile<MR_DEEP, NV>(s, x, packed, bias, y, npix);
    } else {
      forward_nhwc_tile<MR, NV>(s, x, packed, bias, y, npix);
    }
  }

  // Whether NHWC forward runs each tile of pixel rows over every column panel (the rows stay
  // in L1 while the weights stream from L1/L2) instead of each panel over every row tile
  // (the panel stays in L1 while the rows stream from L2). Pays where the whole weight is
  // small and a row tile's K loop short, so re-reading its rows from L2 for every panel is
  // not hidden. The op, 1 / 2 threads (Xeon, 48 KiB L1, AVX-512 8x32 tiles; C_in, H=W,
  // C_out): 16,112,96 1.32x / 1.24x, 16,112,64 1.15x / 1.05x, 32,112,64 1.03x / 1.07x,
  // 64,56,128 1.05x / 1.00x. Left out, as they measured level or slower: 64 KiB of weights
  // (128,56,128 0.92x on 2 threads) and a partial last panel (24,56,72 0.91x). Whole
  // networks are level (MobileNet V1/V2/V3-Large 0.996-1.007x): their pointwise GEMMs
  // mostly run inside the fused drivers on a few rows at a time.
  static constexpr int64_t kPixelsOuterWeightBytes = 32 * 1024;
  static bool pixels_outer(const PwShape& s, int64_t panel_width) {
    return s.out_channels % panel_width == 0 && s.out_channels > panel_width &&
           s.out_channels * s.in_channels * int64_t(sizeof(float)) <= kPixelsOuterWeightBytes;
  }

  template <int TMR, int TNV>
  static void forward_nhwc_tile(const PwShape& s, const float* x, const float* packed,
                                const float* bias, float* y, int64_t npix) {
    constexpr int TNR = TNV * V::N;
    const int64_t K = s.in_channels;
    const int64_t kc_max = std::min<int64_t>(std::max<int64_t>(K, 1), KC_NHWC);
    const int64_t block = std::max<int64_t>(TMR, l2_scaled(kPointwiseBlockBytes) / (4 * kc_max) / TMR * TMR);
    for (int64_t p0 = 0; p0 < npix; p0 += block) {
      const int64_t p1 = std::min(npix, p0 + block);
      // Pixel rows split as evenly as the tile count allows (49 pixels: 4 tiles of 6 and 5
      // of 5, not 8 of 6 and 1): a tile of one or two rows has too few accumulator chains
      // to cover the FMA latency (1-row tiles took ~1% of MobileNetV2 at 25% of peak).
      const int64_t tiles = (p1 - p0 + TMR - 1) / TMR;
      const int64_t rows = (p1 - p0) / tiles, taller = (p1 - p0) % tiles;  // taller: rows + 1
      auto tile_rows = [&](int64_t t) { return static_cast<int>(rows + (t < taller ? 1 : 0)); };
      // Column panel co from input k0 on: packed [panel][k][TNR], or W^T's rows in place;
      // b_ks floats between its rows.
      auto panel_at = [&](int64_t co, int64_t k0) {
        return s.w_ks ? packed + k0 * s.w_ks + co : packed + (co / TNR) * K * TNR + k0 * TNR;
      };
      const int64_t b_ks = s.w_ks ? s.w_ks : TNR;
      if (pixels_outer(s, TNR)) {
        // One K block: at most kPixelsOuterWeightBytes over at least two panels of >= 8
        // channels bounds K well below KC_NHWC.
        static_assert(kPixelsOuterWeightBytes / (2 * 8 * int64_t(sizeof(float))) <= KC_NHWC);
        for (int64_t t = 0, p = p0; t < tiles; ++t) {
          const int mr = tile_rows(t);
          for (int64_t co = 0; co < s.out_channels; co += TNR) {  // whole panels only
            gemm_tile<V, TMR, TNV>(mr, K, x + p * s.x_ps, s.x_ps, 1, panel_at(co, 0), b_ks, TNR,
                                   y + p * s.y_ps + co, s.y_ps,
                                   TileBias{nullptr, bias ? bias + co : nullptr}, false, s.activation);
          }
          p += mr;
        }
        continue;
      }
      for (int64_t k0 = 0; k0 < K || k0 == 0; k0 += KC_NHWC) {
        const int64_t kc = std::min(KC_NHWC, K - k0);
        const bool first = k0 == 0, last = k0 + KC_NHWC >= K;
        for (int64_t co = 0; co < s.out_channels; co += TNR) {
          const int nr = static_cast<int>(std::min<int64_t>(TNR, s.out_channels - co));
          const float* panel = panel_at(co, k0);
          // The next panel is prefetched while this one computes: whole networks read their
          // weights from L3 or DRAM, where the strided rows of an in-place weight are not
          // prefetched by the hardware (MobileNet V1/V2/V3-Large: in place 1.03-1.08x
          // slower than packed without it, 1.00-1.04x with it; packed 1-2% faster too).
          // The first pixel tile requests the next panel's rows at each k step; a panel of
          // kSpreadPrefetchK rows or more is instead requested one line every second k
          // step, by as many tiles as that takes, each a contiguous share (packed: TNR / 8
          // tiles; in place, two lines of a row per 4 k steps: 4 tiles): a whole panel at
          // once held the fill buffers the tile's own loads needed (Xeon, the op on weights
          // out of cache, 1 thread, packed: K=512, 98 pixels 1.13x; 512 -> 1024 at 49
          // pixels 1.12x; 320 -> 1280 at 49 1.09x; 960 -> 160 1.12x; weights in cache level;
          // K = 128 at 3136 pixels 0.98-0.99x, hence the threshold. In place: 1.03-1.15x).
          const int64_t next_panel = co + TNR >= s.out_channels ? 0 : s.w_ks ? TNR : K * TNR;
          const int64_t sharers = s.w_ks ? 4 : (TNR + 7) / 8;  // tiles covering a panel
          const bool spread = next_panel != 0 && kc >= kSpreadPrefetchK && tiles >= sharers;
          // Where tile t's share starts: packed, t * kc / 2 lines on; in place, t * kc / 4 rows.
          const int64_t share_step = s.w_ks ? (kc / 4) * s.w_ks : (kc / 2) * kCacheLineFloats;
          const TileBias tb{nullptr, bias ? bias + co : nullptr};
          for (int64_t t = 0, p = p0; t < tiles; ++t) {
            const int mr = tile_rows(t);
            const float* share = spread && t < sharers ? panel + next_panel + t * share_step
                                                       : nullptr;
            gemm_tile<V, TMR, TNV>(mr, kc, x + p * s.x_ps + k0, s.x_ps, 1, panel, b_ks, nr,
                                   y + p * s.y_ps + co, s.y_ps, tb, !first,
                                   last ? s.activation : Activation::none,
                                   !spread && t == 0 ? next_panel : 0, share, s.w_ks);
            p += mr;
          }
        }
        if (K == 0) break;
      }
    }
  }

  // Weight gradient rows [oc_begin, oc_end), NHWC (x_cs == y_cs == 1):
  //   gw[co][ci] = sum over images n and pixels p of gy[n][p][co] * x[n][p][ci],
  // a GEMM whose K runs over all pixels. Rows are output channels (broadcast from gy's
  // pixel rows), columns input channels (vectors of x's pixel rows). K is blocked so a
  // block of gy and x stays in L2 while every (row, column) tile of gw accumulates it.
  static void backward_weight_nhwc(const PwShape& s, const float* gy, const float* x, float* gw,
                                   int64_t oc_begin, int64_t oc_end) {
    const int64_t cin = s.in_channels;
    bool first = true;
    for (int64_t n = 0; n < s.batch; ++n) {
      for (int64_t p0 = 0; p0 < s.pixels; p0 += KC) {
        const int64_t kc = std::min(KC, s.pixels - p0);
        const float* gy_block = gy + n * s.y_ns + p0 * s.y_ps;
        const float* x_block = x + n * s.x_ns + p0 * s.x_ps;
        for (int64_t co = oc_begin; co < oc_end; co += MR) {
          const int mr = static_cast<int>(std::min<int64_t>(MR, oc_end - co));
          for (int64_t ci = 0; ci < cin; ci += NR) {
            const int nr = static_cast<int>(std::min<int64_t>(NR, cin - ci));
            gemm_tile<V, MR, NV>(mr, kc, gy_block + co, 1, s.y_ps, x_block + ci, s.x_ps, nr,
                                 gw + (co - oc_begin) * cin + ci, cin, TileBias{}, !first,
                                 Activation::none);
          }
        }
        first = false;
      }
    }
  }

  // x and y point at the first of npix pixels; x_ps == y_ps == 1.
  static void forward_nchw(const PwShape& s, const float* x, const float* packed, const float* bias,
                           float* y, int64_t npix) {
    const int64_t K = s.in_channels;
    const int64_t kc_max = std::min<int64_t>(std::max<int64_t>(K, 1), KC);
    const int64_t block = std::max<int64_t>(NR, l2_scaled(kPointwiseBlockBytes) / (4 * kc_max) / NR * NR);
    for (int64_t p0 = 0; p0 < npix; p0 += block) {
      const int64_t p1 = std::min(npix, p0 + block);
      for (int64_t k0 = 0; k0 < K || k0 == 0; k0 += KC) {
        const int64_t kc = std::min(KC, K - k0);
        const bool first = k0 == 0, last = k0 + KC >= K;
        for (int64_t co = 0; co < s.out_channels; co += MR) {
          const int mr = static_cast<int>(std::min<int64_t>(MR, s.out_channels - co));
          const float* panel = s.w_ks ? packed + k0 * s.w_ks + co
                                      : packed + (co / MR) * K * MR + k0 * MR;
          const int64_t a_ks = s.w_ks ? s.w_ks : MR;
          const TileBias tb{bias ? bias + co : nullptr, nullptr};
          for (int64_t p = p0; p < p1; p += NR) {
            const int nr = static_cast<int>(std::min<int64_t>(NR, p1 - p));
            gemm_tile<V, MR, NV>(mr, kc, panel, 1, a_ks, x + k0 * s.x_cs + p, s.x_cs, nr,
                                 y + co * s.y_cs + p, s.y_cs, tb, !first,
                                 last ? s.activation : Activation::none);
          }
        }
        if (K == 0) break;
      }
    }
  }
};

}  // namespace dsconv::simd
