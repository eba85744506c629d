// The one tiled GEMM of the CUDA kernels (pointwise forward, both pointwise gradients and
// the fused separable op):
//   C[z](m, n) = act(sum over r in R(z), k in K(z) of A(r; m, k) * B(r; k, n) + bias)
// A 64x64 block tile of C per 256 threads, each thread a 4x4 register tile; A and B go
// through shared memory in 16-deep slices (stored in the accumulator type, so f16/bf16
// are converted once on load). The B slice comes from a Loader: strided global memory for
// the GEMMs, a depthwise convolution computed on the fly for the fused op.
//
// R(z), K(z): output entry z sums reduction images r in [zi*r_per, min(r_count, (zi+1)*r_per))
// and k in [zk*k_chunk, min(K, (zk+1)*k_chunk)), with zi = z / k_splits and zk = z % k_splits.
// The forward ops use r_per = 1, r_count = batch, k_splits = 1 (entry z is image z); the
// weight gradient splits its long reduction over entries written to a workspace, summed
// afterwards in a fixed order (deterministic, no atomics).
#pragma once
#include "common.cuh"

namespace dsconv::cuda {

constexpr int kGemmBM = 64, kGemmBN = 64, kGemmBK = 16, kGemmThreads = 256;

struct GemmArgs {
  int64_t M, N, K;
  int64_t entries;                       // z in [0, entries)
  int64_t r_count, r_per, k_splits, k_chunk;
  int64_t a_m, a_k, a_r;                 // A(r; m, k) = a[r*a_r + m*a_m + k*a_k]
  int64_t c_m, c_n, c_z;                 // C[z](m, n) = c[z*c_z + m*c_m + n*c_n]
  bool bias_on_n;                        // bias indexed by n (else by m)
  Activation activation;
};

// B(r; k, n) = b[r*b_r + k*b_k + n*b_n]. fill() writes the slice tile[kk][nn] =
// B(r; k0 + kk, n0 + nn), zero where k0 + kk >= k_end or n0 + nn >= N.
template <typename T> struct StridedLoader {
  const T* b;
  int64_t b_k, b_n, b_r;

  template <typename I, typename AccT>
  __device__ __forceinline__ void fill(AccT (*tile)[kGemmBN + 4], I r, I k0, I k_end, I n0,
                                       I N) const {
    // Walk the tile along B's unit-stride axis so a warp's loads are coalesced.
    const bool n_fast = b_n == 1;
#pragma unroll 1  // fewer live addresses: register use stays low
    for (int e = 0; e < kGemmBK * kGemmBN / kGemmThreads; ++e) {
      const int idx = threadIdx.x + e * kGemmThreads;
      const int kk = n_fast ? idx / kGemmBN : idx % kGemmBK;
      const int nn = n_fast ? idx % kGemmBN : idx / kGemmBK;
      const I k = k0 + kk, n = n0 + nn;
      tile[kk][nn] = k < k_end && n < N
                         ? load_as<AccT>(b + r * I(b_r) + k * I(b_k) + n * I(b_n))
                         : AccT(0);
    }
  }
};

template <typename T, typename TC, typename I, typename Loader>
__global__ void __launch_bounds__(kGemmThreads, 2)
    gemm_tile(const GemmArgs g, const T* __restrict__ a, const Loader loader,
              const T* __restrict__ bias, TC* __restrict__ c) {
  using AccT = Acc<T>;
  constexpr int BM = kGemmBM, BN = kGemmBN, BK = kGemmBK;
  // +4: rows of the slices start on different banks.
  __shared__ AccT as[BK][BM + 4];
  __shared__ AccT bs[BK][BN + 4];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;  // C rows ty+16i, columns tx+16j
  const I M = static_cast<I>(g.M), N = static_cast<I>(g.N), K = static_cast<I>(g.K);
  const bool a_k_fast = g.a_k == 1;
  const Loader ld = loader;  // a local copy: calling fill() on the parameter forces it to the stack
  // Every loop bound below depends on block indices only: all threads reach each barrier.
  for (I z = I(blockIdx.z); z < static_cast<I>(g.entries); z += I(gridDim.z)) {
    const I zi = z / static_cast<I>(g.k_splits), zk = z % static_cast<I>(g.k_splits);
    const I r_begin = zi * static_cast<I>(g.r_per);
    const I r_end = min(static_cast<I>(g.r_count), r_begin + static_cast<I>(g.r_per));
    const I k_begin = zk * static_cast<I>(g.k_chunk);
    const I k_end = min(K, k_begin + static_cast<I>(g.k_chunk));
    for (I m0 = I(blockIdx.y) * BM; m0 < M; m0 += I(gridDim.y) * BM) {
      for (I n0 = I(blockIdx.x) * BN; n0 < N; n0 += I(gridDim.x) * BN) {
        AccT acc[4][4];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[i][j] = AccT(0);
        for (I r = r_begin; r < r_end; ++r) {
          for (I k0 = k_begin; k0 < k_end; k0 += BK) {
#pragma unroll 1
            for (int e = 0; e < BK * BM / kGemmThreads; ++e) {
              const int idx = threadIdx.x + e * kGemmThreads;
              const int kk = a_k_fast ? idx % BK : idx / BM;
              const int mm = a_k_fast ? idx / BK : idx % BM;
              const I k = k0 + kk, m = m0 + mm;
              as[kk][mm] = k < k_end && m < M
                               ? load_as<AccT>(a + r * I(g.a_r) + m * I(g.a_m) + k * I(g.a_k))
                               : AccT(0);
            }
            ld.template fill<I, AccT>(bs, r, k0, k_end, n0, N);
            __syncthreads();
#pragma unroll
            for (int kk = 0; kk < BK; ++kk) {
              AccT av[4], bv[4];
#pragma unroll
              for (int i = 0; i < 4; ++i) av[i] = as[kk][ty + 16 * i];
#pragma unroll
              for (int j = 0; j < 4; ++j) bv[j] = bs[kk][tx + 16 * j];
#pragma unroll
              for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
            }
            __syncthreads();  // the slices are overwritten next step
          }
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const I m = m0 + ty + 16 * i;
          if (m >= M) continue;
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const I n = n0 + tx + 16 * j;
            if (n >= N) continue;
            AccT v = acc[i][j];
            if (bias != nullptr) v += load_as<AccT>(bias + (g.bias_on_n ? n : m));
            c[z * I(g.c_z) + m * I(g.c_m) + n * I(g.c_n)] =
                store_as<TC>(apply_activation(g.activation, v));
          }
        }
      }
    }
  }
}

inline dim3 gemm_grid(const GemmArgs& g) {
  return dim3(grid_for(g.N, kGemmBN), grid_for(g.M, kGemmBM), grid_for(g.entries, 1));
}

}  // namespace dsconv::cuda
