// Fused separable forward: the tiled GEMM of gemm.cuh with a B loader that computes the
// depthwise stage (bias and activation included) for the 16 channels x 64 pixels slice it
// needs, straight into shared memory. The depthwise result never reaches global memory;
// the price is that each 64-wide tile of output channels recomputes its slices.
//
// GEMM view per image r: C(m = out channel, n = output pixel) = W_pw(m, k = mid channel)
// . D(r; k, n), D = dw_act(depthwise(x) + dw_bias).
#include "dwconv_index.cuh"
#include "gemm.cuh"

namespace dsconv::cuda {
namespace {

template <typename T, bool ChannelsFastest> struct DepthwiseLoader {
  DwShape s;
  const T* x;
  const T* w;     // [C*M, kh, kw]
  const T* bias;  // [C*M] or null

  // Thread -> (kk, nn) of the slice: NHWC walks channels fastest (x's unit-stride axis),
  // NCHW pixels fastest. Either way the 256 threads x 4 cover the 16 x 64 slice once.
  template <typename I, typename AccT>
  __device__ __forceinline__ void fill(AccT (*tile)[kGemmBN + 4], I r, I k0, I k_end, I n0,
                                       I N) const {
    const I out_w = static_cast<I>(s.out_w);
#pragma unroll 1
    for (int e = 0; e < kGemmBK * kGemmBN / kGemmThreads; ++e) {
      const int kk = ChannelsFastest ? threadIdx.x % kGemmBK : threadIdx.x / kGemmBN + 4 * e;
      const int nn = ChannelsFastest ? threadIdx.x / kGemmBK + 16 * e : threadIdx.x % kGemmBN;
      const I k = k0 + kk, n = n0 + nn;
      AccT v = AccT(0);
      if (k < k_end && n < N) {
        v = dw_pixel_sum<AccT>(s, x, w, r, k, n / out_w, n % out_w);
        if (bias != nullptr) v += load_as<AccT>(bias + k);
        v = apply_activation(s.activation, v);
      }
      tile[kk][nn] = v;
    }
  }
};

template <typename T, bool ChannelsFastest>
void launch(const GemmArgs& g, const DwShape& dw, const T* x, const T* wdw, const T* bdw,
            const T* wpw, const T* bpw, T* y, bool small, cudaStream_t st) {
  using Loader = DepthwiseLoader<T, ChannelsFastest>;
  const Loader loader{dw, x, wdw, bdw};
  if (small) {
    gemm_tile<T, T, int, Loader><<<gemm_grid(g), kGemmThreads, 0, st>>>(g, wpw, loader, bpw, y);
  } else {
    gemm_tile<T, T, int64_t, Loader><<<gemm_grid(g), kGemmThreads, 0, st>>>(g, wpw, loader, bpw, y);
  }
}

}  // namespace

const char* separable_forward(DType dtype, const DwShape& dw, const PwShape& pw, const void* x,
                              const void* dw_weight, const void* dw_bias, const void* pw_weight,
                              const void* pw_bias, void* y, void* stream) {
  if (pw.batch * pw.out_channels * pw.pixels == 0) return nullptr;
  GemmArgs g{};
  g.M = pw.out_channels, g.N = pw.pixels, g.K = pw.in_channels;
  g.entries = g.r_count = pw.batch;
  g.r_per = g.k_splits = 1;
  g.k_chunk = pw.in_channels;
  g.a_m = pw.in_channels, g.a_k = 1, g.a_r = 0;
  g.c_m = pw.y_cs, g.c_n = pw.y_ps, g.c_z = pw.y_ns;
  g.bias_on_n = false;
  g.activation = pw.activation;
  const bool small = dw_fits_int32(dw) &&
                     fits_int32({pw.batch * pw.out_channels * pw.pixels,
                                 pw.out_channels * pw.in_channels});
  const auto st = static_cast<cudaStream_t>(stream);
  with_element_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto* xp = static_cast<const T*>(x);
    const auto* wdw = static_cast<const T*>(dw_weight);
    const auto* bdw = static_cast<const T*>(dw_bias);
    const auto* wpw = static_cast<const T*>(pw_weight);
    const auto* bpw = static_cast<const T*>(pw_bias);
    auto* yp = static_cast<T*>(y);
    if (dw.layout == Layout::nhwc) {
      launch<T, true>(g, dw, xp, wdw, bdw, wpw, bpw, yp, small, st);
    } else {
      launch<T, false>(g, dw, xp, wdw, bdw, wpw, bpw, yp, small, st);
    }
  });
  return last_error();
}

}  // namespace dsconv::cuda
