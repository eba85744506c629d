// Dense (groups = 1) NHWC convolution for the networks' first layer (3 input channels,
// 3x3, stride 2), bias and activation fused. An indirect GEMM in the manner of XNNPACK's
// igemm: for a tile of MR output pixels, each tap's input pixel address is computed once
// (taps outside the input point at a zero row), and the K = taps x C_in loop broadcasts
// one input value per pixel against NR packed output channels. No im2col copy: with
// C_in = 3 the gather would move as many floats as the FMAs read.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "../aligned_vector.h"
#include "../shapes.h"
#include "activation_vec.h"

namespace dsconv::simd {

// MR x NV vectors is the tile. MR_NARROW > 0: C_out <= one vector uses an MR_NARROW x 1 tile
// on one-vector panels instead, whose FMAs are not half idle (MobileNetV3's 16-channel first
// layer on AVX-512, where the 8x32 tile computes 16 zero channels).
template <class V, int MR, int NV, int MR_NARROW = 0>
struct Conv {
  using reg = typename V::reg;
  static constexpr int N = V::N;

  // Whether a call with C_out = n runs the narrow tile (and packs one-vector panels).
  static bool narrow_tile(int64_t n) { return MR_NARROW > 0 && NV > 1 && n <= N; }

  // Output channels in panels of NR (N for the narrow tile): out[panel][tap * C_in + ci][NR],
  // zero padded.
  static int64_t pack(const ConvShape& s, const float* w, float* out) {
    const int64_t NR = narrow_tile(s.out_channels) ? N : NV * N;
    const int64_t taps = s.kernel_h * s.kernel_w, K = taps * s.in_channels;
    const int64_t panels = (s.out_channels + NR - 1) / NR;
    if (out != nullptr) {
      for (int64_t p = 0; p < panels; ++p) {
        for (int64_t k = 0; k < K; ++k) {
          const int64_t t = k / s.in_channels, ci = k % s.in_channels;
          for (int64_t r = 0; r < NR; ++r) {
            const int64_t co = p * NR + r;
            out[(p * K + k) * NR + r] =
                co < s.out_channels ? w[(co * s.in_channels + ci) * taps + t] : 0.f;
          }
        }
      }
    }
    return panels * K * NR;
  }

  // KernelTypes::ConvForward, NHWC (x_cs == y_cs == 1).
  //
  // The K loop walks segments of contiguous input. For pixels whose window is inside the
  // input horizontally (dilation_w 1), a segment is a kernel row: KW x C_in values of KW
  // adjacent pixels, at a fixed step from one output pixel to the next, so a tile needs
  // KH row addresses. Elsewhere a segment is one tap's C_in values, at an address per
  // pixel and tap. Both orders match the packed weight: k = (i * KW + j) * C_in + ci.
  static void forward(const ConvShape& s, const float* x, const float* w, const float* bias,
                      float* y, int64_t oh_begin, int64_t oh_end) {
    if constexpr (MR_NARROW > 0) {
      if (narrow_tile(s.out_channels)) {
        forward_tiles<MR_NARROW, 1>(s, x, w, bias, y, oh_begin, oh_end);
        return;
      }
    }
    forward_tiles<MR, NV>(s, x, w, bias, y, oh_begin, oh_end);
  }

  template <int TMR, int TNV>
  static void forward_tiles(const ConvShape& s, const float* x, const float* w, const float* bias,
                            float* y, int64_t oh_begin, int64_t oh_end) {
    constexpr int NR = TNV * N;
    const int64_t taps = s.kernel_h * s.kernel_w, K = taps * s.in_channels;
    const int64_t run = s.kernel_w * s.in_channels;  // a kernel row's values, adjacent
    thread_local AlignedVector<float> zeros_buf;
    thread_local std::vector<const float*> in_buf;
    thread_local std::vector<int64_t> step_buf;
    if (static_cast<int64_t>(zeros_buf.size()) < run) zeros_buf.assign(static_cast<size_t>(run), 0.f);
    in_buf.resize(static_cast<size_t>(TMR * taps));
    step_buf.resize(static_cast<size_t>(s.kernel_h));
    const float* const zeros = zeros_buf.data();
    const float** const in = in_buf.data();  // [pixel of the tile][tap], or [kernel row]
    int64_t* const step = step_buf.data();   // [kernel row]: from one pixel to the next
    // Output columns whose window is inside the input horizontally: [inner_lo, inner_hi).
    int64_t inner_lo = 0, inner_hi = 0;
    if (s.dilation_w == 1) {
      inner_lo = std::min(s.out_w, (s.pad_left + s.stride_w - 1) / s.stride_w);
      const int64_t last = s.in_w + s.pad_left - s.kernel_w;  // the last inside window start
      inner_hi = last < 0 ? 0 : std::max(inner_lo, std::min(s.out_w, last / s.stride_w + 1));
    }
    for (int64_t oh = oh_begin; oh < oh_end; ++oh) {
      float* y_row = y + (oh - oh_begin) * s.y_hs;
      for (int64_t ow0 = 0; ow0 < s.out_w; ow0 += TMR) {
        const int mr = static_cast<int>(std::min<int64_t>(TMR, s.out_w - ow0));
        // Full interior tiles read kernel rows; a partial tile repeats its last pixel, so it
        // takes the per-tap addresses (a row step would reach past the input's end).
        const bool rows = mr == TMR && ow0 >= inner_lo && ow0 + TMR <= inner_hi;
        if (rows) {
          for (int64_t i = 0; i < s.kernel_h; ++i) {
            const int64_t ih = oh * s.stride_h - s.pad_top + i * s.dilation_h;
            const bool inside = ih >= 0 && ih < s.in_h;
            in[i] = inside ? x + ih * s.x_hs + (ow0 * s.stride_w - s.pad_left) * s.x_ws : zeros;
            step[i] = inside ? s.stride_w * s.x_ws : 0;
          }
        } else {
          for (int p = 0; p < TMR; ++p) {  // a partial tile repeats its last pixel
            const int64_t ow = ow0 + std::min(p, mr - 1);
            for (int64_t i = 0; i < s.kernel_h; ++i) {
              const int64_t ih = oh * s.stride_h - s.pad_top + i * s.dilation_h;
              for (int64_t j = 0; j < s.kernel_w; ++j) {
                const int64_t iw = ow * s.stride_w - s.pad_left + j * s.dilation_w;
                const bool inside = ih >= 0 && ih < s.in_h && iw >= 0 && iw < s.in_w;
                in[p * taps + i * s.kernel_w + j] = inside ? x + ih * s.x_hs + iw * s.x_ws : zeros;
              }
            }
          }
        }
        auto row_segment = [&](int p, int64_t g) { return in[g] + p * step[g]; };
        auto tap_segment = [&](int p, int64_t g) { return in[p * taps + g]; };
        for (int64_t co = 0; co < s.out_channels; co += NR) {
          const int nr = static_cast<int>(std::min<int64_t>(NR, s.out_channels - co));
          const float* panel = w + (co / NR) * K * NR;
          const float* b = bias ? bias + co : nullptr;
          float* out = y_row + ow0 * s.y_ws + co;
          if (rows && run == 9) {  // 3x3 kernel rows of 3 channels: the RGB first layer
            tile<9, TMR, TNV>(s, row_segment, s.kernel_h, run, panel, b, out, mr, nr);
          } else if (rows) {
            tile<0, TMR, TNV>(s, row_segment, s.kernel_h, run, panel, b, out, mr, nr);
          } else if (s.in_channels == 3) {
            tile<3, TMR, TNV>(s, tap_segment, taps, 3, panel, b, out, mr, nr);
          } else {
            tile<0, TMR, TNV>(s, tap_segment, taps, s.in_channels, panel, b, out, mr, nr);
          }
        }
      }
    }
  }

  // TMR pixels x TNV vectors of channels over `segments` segments of `len` values per pixel
  // (LEN > 0 fixes it at compile time); segment(p, g) is pixel p's segment g.
  template <int LEN, int TMR, int TNV, class Segment>
  static void tile(const ConvShape& s, const Segment& segment, int64_t segments, int64_t len,
                   const float* panel, const float* bias, float* out, int mr, int nr) {
    constexpr int NR = TNV * N;
    const int64_t n = LEN > 0 ? LEN : len;
    typename V::Mask lanes[TNV];
    for (int v = 0; v < TNV; ++v) lanes[v] = V::mask(std::max(0, std::min(N, nr - v * N)));
    reg acc[TMR][TNV];
#pragma GCC unroll 4
    for (int v = 0; v < TNV; ++v) {
      const reg b = bias ? V::load(bias + v * N, lanes[v]) : V::zero();
#pragma GCC unroll 16
      for (int p = 0; p < TMR; ++p) acc[p][v] = b;
    }
    const float* wk = panel;
    for (int64_t g = 0; g < segments; ++g) {
      const float* px[TMR];
#pragma GCC unroll 16
      for (int p = 0; p < TMR; ++p) px[p] = segment(p, g);
      for (int64_t k = 0; k < n; ++k, wk += NR) {
        reg wv[TNV];
#pragma GCC unroll 4
        for (int v = 0; v < TNV; ++v) wv[v] = V::load(wk + v * N);
#pragma GCC unroll 16
        for (int p = 0; p < TMR; ++p) {
          const reg xb = V::set1(px[p][k]);
#pragma GCC unroll 4
          for (int v = 0; v < TNV; ++v) acc[p][v] = V::fma(xb, wv[v], acc[p][v]);
        }
      }
    }
    switch (s.activation) {  // one branch per tile, not per vector
      case Activation::none:
        return store<Activation::none, TMR, TNV>(acc, out, s.y_ws, mr, nr, lanes);
      case Activation::relu:
        return store<Activation::relu, TMR, TNV>(acc, out, s.y_ws, mr, nr, lanes);
      case Activation::relu6:
        return store<Activation::relu6, TMR, TNV>(acc, out, s.y_ws, mr, nr, lanes);
      case Activation::hardswish:
        return store<Activation::hardswish, TMR, TNV>(acc, out, s.y_ws, mr, nr, lanes);
    }
  }

  template <Activation A, int TMR, int TNV>
  static void store(reg (&acc)[TMR][TNV], float* out, int64_t y_ws, int mr, int nr,
                    const typename V::Mask (&lanes)[TNV]) {
    if (nr == TNV * N) {
      for (int p = 0; p < mr; ++p) {
#pragma GCC unroll 4
        for (int v = 0; v < TNV; ++v) V::store(out + p * y_ws + v * N, activate<V>(A, acc[p][v]));
      }
      return;
    }
    for (int p = 0; p < mr; ++p) {
      for (int v = 0; v * N < nr; ++v) {
        V::store(out + p * y_ws + v * N, activate<V>(A, acc[p][v]), lanes[v]);
      }
    }
  }
};

}  // namespace dsconv::simd
