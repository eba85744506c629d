// Pointwise (1x1) convolution forward and weight gradient on the tiled GEMM (gemm.cuh).
// The input gradient is the forward with the weight read transposed.
//
// Forward, NCHW: C(m = out channel, n = pixel) = W(m, k = in channel) . x(k, n) per image;
// n is unit-stride in x and y. NHWC: the transposed product C(m = pixel, n = out channel)
// = x(m, k) . W^T(k, n), so that n, the axis a warp's stores walk, is again unit-stride.
#include "dwconv_index.cuh"
#include "gemm.cuh"

namespace dsconv::cuda {
namespace {

// How the weight gradient's reduction (images x pixels) is split over GEMM entries.
struct SplitPlan {
  int64_t r_per, img_splits, k_chunk, k_splits;
  int64_t entries() const { return img_splits * k_splits; }
};

// Enough entries to give every SM a few tiles, each entry still summing >= ~4096 terms.
SplitPlan plan_weight_grad(int64_t M, int64_t N, int64_t K, int64_t R) {
  const int64_t tiles = ((M + kGemmBM - 1) / kGemmBM) * ((N + kGemmBN - 1) / kGemmBN);
  int64_t want = std::min((1024 + tiles - 1) / tiles, (R * K + 4095) / 4096);
  want = std::max<int64_t>(1, std::min<int64_t>(want, 256));
  SplitPlan p{};
  if (want <= R) {
    p.r_per = (R + want - 1) / want;
    p.img_splits = (R + p.r_per - 1) / p.r_per;
    p.k_chunk = K;
    p.k_splits = 1;
  } else {
    p.r_per = 1;
    p.img_splits = R;
    const int64_t per = (K + (want + R - 1) / R - 1) / ((want + R - 1) / R);
    p.k_chunk = std::max<int64_t>(kGemmBK, (per + kGemmBK - 1) / kGemmBK * kGemmBK);
    p.k_splits = (K + p.k_chunk - 1) / p.k_chunk;
  }
  return p;
}

template <typename T, typename TC>
void launch_gemm(const GemmArgs& g, const T* a, const StridedLoader<T>& b, const T* bias, TC* c,
                 bool small, cudaStream_t st) {
  if (small) {
    gemm_tile<T, TC, int, StridedLoader<T>><<<gemm_grid(g), kGemmThreads, 0, st>>>(g, a, b, bias, c);
  } else {
    gemm_tile<T, TC, int64_t, StridedLoader<T>><<<gemm_grid(g), kGemmThreads, 0, st>>>(g, a, b, bias, c);
  }
}

}  // namespace

const char* pointwise_forward(DType dtype, const PwShape& s, const void* x, const void* weight,
                              bool transposed_weight, const void* bias, void* y, void* stream) {
  if (s.batch * s.out_channels * s.pixels == 0) return nullptr;
  // Weight element (o, c) is at o * w_o + c * w_c.
  const int64_t w_o = transposed_weight ? 1 : s.in_channels;
  const int64_t w_c = transposed_weight ? s.out_channels : 1;
  GemmArgs g{};
  g.K = s.in_channels;
  g.entries = g.r_count = s.batch;
  g.r_per = g.k_splits = 1;
  g.k_chunk = s.in_channels;
  g.c_z = s.y_ns;
  g.activation = s.activation;
  const bool nhwc = s.layout == Layout::nhwc;
  int64_t b_k, b_n, b_r;
  if (nhwc) {
    g.M = s.pixels, g.N = s.out_channels;
    g.a_m = s.x_ps, g.a_k = s.x_cs, g.a_r = s.x_ns;
    b_k = w_c, b_n = w_o, b_r = 0;
    g.c_m = s.y_ps, g.c_n = s.y_cs;
  } else {
    g.M = s.out_channels, g.N = s.pixels;
    g.a_m = w_o, g.a_k = w_c, g.a_r = 0;
    b_k = s.x_cs, b_n = s.x_ps, b_r = s.x_ns;
    g.c_m = s.y_cs, g.c_n = s.y_ps;
  }
  g.bias_on_n = nhwc;
  const bool small = fits_int32({s.batch * s.in_channels * s.pixels,
                                 s.batch * s.out_channels * s.pixels,
                                 s.in_channels * s.out_channels});
  const auto st = static_cast<cudaStream_t>(stream);
  with_element_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x);
    const T* wp = static_cast<const T*>(weight);
    const StridedLoader<T> loader{nhwc ? wp : xp, b_k, b_n, b_r};
    launch_gemm<T, T>(g, nhwc ? xp : wp, loader, static_cast<const T*>(bias),
                      static_cast<T*>(y), small, st);
  });
  return last_error();
}

int64_t pointwise_backward_weight_workspace(DType dtype, const PwShape& s) {
  const SplitPlan p = plan_weight_grad(s.out_channels, s.in_channels, s.pixels, s.batch);
  return p.entries() > 1 ? p.entries() * s.out_channels * s.in_channels * acc_size(dtype) : 0;
}

// gw(m = out channel, n = in channel) = sum over images r and pixels k of
// gy(r; m, k) . x(r; k, n): shape s describes the forward (x: input, y: output strides).
const char* pointwise_backward_weight(DType dtype, const PwShape& s, const void* gy,
                                      const void* x, void* gw, void* workspace, void* stream) {
  const int64_t count = s.out_channels * s.in_channels;
  if (count == 0) return nullptr;
  const SplitPlan p = plan_weight_grad(s.out_channels, s.in_channels, s.pixels, s.batch);
  GemmArgs g{};
  g.M = s.out_channels, g.N = s.in_channels, g.K = s.pixels;
  g.entries = p.entries();
  g.r_count = s.batch, g.r_per = p.r_per, g.k_splits = p.k_splits, g.k_chunk = p.k_chunk;
  g.a_m = s.y_cs, g.a_k = s.y_ps, g.a_r = s.y_ns;
  g.c_m = s.in_channels, g.c_n = 1, g.c_z = count;  // c_z only matters with a workspace
  g.bias_on_n = false;
  g.activation = Activation::none;
  const bool small = fits_int32({s.batch * s.in_channels * s.pixels,
                                 s.batch * s.out_channels * s.pixels, g.entries * count});
  const auto st = static_cast<cudaStream_t>(stream);
  with_element_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    using AccT = Acc<T>;
    const StridedLoader<T> loader{static_cast<const T*>(x), s.x_ps, s.x_cs, s.x_ns};
    const T* a = static_cast<const T*>(gy);
    if (g.entries == 1) {
      launch_gemm<T, T>(g, a, loader, nullptr, static_cast<T*>(gw), small, st);
    } else {
      auto* ws = static_cast<AccT*>(workspace);
      launch_gemm<T, AccT>(g, a, loader, nullptr, ws, small, st);
      sum_entries<AccT, T><<<grid_for(count, 256), 256, 0, st>>>(ws, g.entries, count,
                                                                static_cast<T*>(gw));
    }
  });
  return last_error();
}

}  // namespace dsconv::cuda
