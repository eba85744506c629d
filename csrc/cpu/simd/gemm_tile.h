// The register-blocked GEMM microkernel shared by every pointwise path:
//   C[r][j] = act(init + sum_k A[r*a_rs + k*a_ks] * B[k*b_ks + j]),  r < mr <= MR, j < nr
// where init is the bias (or 0), or C itself when `accumulate` (a later block of K). A
// nonzero b_prefetch also prefetches B[k*b_ks + b_prefetch] at each k step (the next
// column panel's row: it streams in while this one computes); a non-null prefetch_lines
// instead prefetches one cache line every second k step (a share of the next panel, spread
// thin: see Pointwise::forward_nhwc_tile): consecutive lines from prefetch_lines on where
// prefetch_stride is 0 (a packed panel), else two lines per row of prefetch_stride floats
// (an in-place panel's rows).
// A is broadcast (one element per row and k), B is loaded as NV vectors per k, C is kept
// in MR x NV registers for the whole K loop. NHWC pointwise maps pixels to rows and
// packed weights to B; NCHW maps packed weights to rows and pixels to B.
#pragma once
#include <cstdint>

#include "activation_vec.h"

namespace dsconv::simd {

constexpr int64_t kCacheLineFloats = 16;  // floats in a 64-byte cache line

struct TileBias {
  const float* per_row = nullptr;     // one value per row of C
  const float* per_column = nullptr;  // nr values, one per column of C
};

// Always inlined into the driver's tile loop: as a call (with its argument setup and the
// activation switch) it cost 5-10% of a tile at K <= 96 (measured: K=16, 70 -> 79 GFLOP/s
// on Zen 3), and inlined the out-of-order core overlaps one tile's stores with the next
// tile's loads.
template <class V, int MR, int NV, bool FULL>
__attribute__((always_inline)) inline void gemm_tile_fixed(int64_t K, const float* A, int64_t a_rs, int64_t a_ks, const float* B,
                            int64_t b_ks, int nr, float* C, int64_t c_rs, TileBias bias,
                            bool accumulate, Activation act, int64_t b_prefetch = 0,
                            const float* prefetch_lines = nullptr,
                            int64_t prefetch_stride = 0) {
  using reg = typename V::reg;
  typename V::Mask mask[NV];
  if (!FULL) {
    for (int v = 0; v < NV; ++v) mask[v] = V::mask(nr - v * V::N);
  }
  auto load_b = [&](const float* p, int v) {
    return FULL ? V::load(p + v * V::N) : V::load(p + v * V::N, mask[v]);
  };
  reg acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      acc[r][v] = accumulate        ? load_b(C + r * c_rs, v)
                  : bias.per_row    ? V::set1(bias.per_row[r])
                  : bias.per_column ? load_b(bias.per_column, v)
                                    : V::zero();
    }
  }
  auto step = [&](int64_t k) __attribute__((always_inline)) {
    reg b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = load_b(B + k * b_ks, v);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const reg a = V::set1(A[r * a_rs + k * a_ks]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = V::fma(a, b[v], acc[r][v]);
    }
  };
  if (prefetch_lines != nullptr && prefetch_stride == 0) {
    int64_t k = 0;
    for (const float* line = prefetch_lines; k + 2 <= K; k += 2, line += kCacheLineFloats) {
      __builtin_prefetch(line, 0, 1);
      step(k);
      step(k + 1);
    }
    if (k < K) step(k);
  } else if (prefetch_lines != nullptr) {
    int64_t k = 0;
    for (const float* row = prefetch_lines; k + 4 <= K; k += 4, row += prefetch_stride) {
      __builtin_prefetch(row, 0, 1);
      step(k);
      step(k + 1);
      __builtin_prefetch(row + kCacheLineFloats, 0, 1);
      step(k + 2);
      step(k + 3);
    }
    for (; k < K; ++k) step(k);
  } else {
    for (int64_t k = 0; k < K; ++k) {
      if (b_prefetch != 0) {
        __builtin_prefetch(B + k * b_ks + b_prefetch, 0, 1);
        if constexpr (NV * V::N > 16) __builtin_prefetch(B + k * b_ks + b_prefetch + NV * V::N - 1, 0, 1);
      }
      step(k);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const reg out = activate<V>(act, acc[r][v]);
      if (FULL) {
        V::store(C + r * c_rs + v * V::N, out);
      } else if (nr > v * V::N) {
        V::store(C + r * c_rs + v * V::N, out, mask[v]);
      }
    }
  }
}

// Any mr in [1, MR] and nr in [1, NV*N]: picks the fixed-size instance, with as few
// vectors per row as nr needs (a narrow edge tile does not pay for masked-off FMAs).
template <class V, int MR, int NV>
inline void gemm_tile(int mr, int64_t K, const float* A, int64_t a_rs, int64_t a_ks, const float* B,
                      int64_t b_ks, int nr, float* C, int64_t c_rs, TileBias bias, bool accumulate,
                      Activation act, int64_t b_prefetch = 0,
                      const float* prefetch_lines = nullptr, int64_t prefetch_stride = 0) {
  if constexpr (MR > 1) {
    if (mr < MR) {
      gemm_tile<V, MR - 1, NV>(mr, K, A, a_rs, a_ks, B, b_ks, nr, C, c_rs, bias, accumulate, act,
                               b_prefetch, prefetch_lines, prefetch_stride);
      return;
    }
  }
  if constexpr (NV > 1) {
    if (nr <= (NV - 1) * V::N) {
      gemm_tile<V, MR, NV - 1>(mr, K, A, a_rs, a_ks, B, b_ks, nr, C, c_rs, bias, accumulate, act,
                               b_prefetch, prefetch_lines, prefetch_stride);
      return;
    }
  }
  if (nr == NV * V::N) {
    gemm_tile_fixed<V, MR, NV, true>(K, A, a_rs, a_ks, B, b_ks, nr, C, c_rs, bias, accumulate, act,
                                     b_prefetch, prefetch_lines, prefetch_stride);
  } else {
    gemm_tile_fixed<V, MR, NV, false>(K, A, a_rs, a_ks, B, b_ks, nr, C, c_rs, bias, accumulate,
                                      act, b_prefetch, prefetch_lines, prefetch_stride);
  }
}

}  // namespace dsconv::simd
