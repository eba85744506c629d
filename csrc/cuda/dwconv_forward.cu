// Depthwise forward, NCHW and NHWC (the layout only changes the strides and the order of
// work items): y = act(sum_taps x * w + bias), accumulated in Acc<T>.
// - dwconv_KxKsS_tile: 3x3 / 5x5, stride 1 / 2, dilation 1. One thread computes an RH x RW
//   output tile; it streams the (RH-1)*S+K input rows of the tile's receptive field once
//   each through registers and applies every tap of every output that row feeds, so each
//   input value is read once per tile instead of once per tap.
// - dwconv_generic: any kernel size, stride, dilation; one output per thread.
// Both handle the channel multiplier: output channel oc reads input channel oc / M.
#include "dwconv_index.cuh"

namespace dsconv::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T, typename AccT>
__device__ __forceinline__ void store_output(const DwShape& s, T* y, int64_t offset, AccT acc,
                                             const T* bias, int64_t oc) {
  if (bias != nullptr) acc += load_as<AccT>(bias + oc);
  y[offset] = store_as<T>(apply_activation(s.activation, acc));
}

template <typename T, typename I, bool ChannelsFastest, int KH, int KW, int SH, int SW, int RH,
          int RW>
__global__ void __launch_bounds__(kThreads, 2)
    dwconv_tile(const DwShape s, const T* __restrict__ x, const T* __restrict__ w,
                const T* __restrict__ bias, T* __restrict__ y) {
  using AccT = Acc<T>;
  constexpr int PH = (RH - 1) * SH + KH;  // input rows feeding one tile
  constexpr int PW = (RW - 1) * SW + KW;  // input columns feeding one tile
  const I channels = static_cast<I>(s.out_channels());
  const I out_h = static_cast<I>(s.out_h), out_w = static_cast<I>(s.out_w);
  const I in_h = static_cast<I>(s.in_h), in_w = static_cast<I>(s.in_w);
  const I tiles_h = (out_h + RH - 1) / RH, tiles_w = (out_w + RW - 1) / RW;
  const I items = static_cast<I>(s.batch) * channels * tiles_h * tiles_w;
  const I x_hs = static_cast<I>(s.x_hs), x_ws = static_cast<I>(s.x_ws);
  const I y_hs = static_cast<I>(s.y_hs), y_ws = static_cast<I>(s.y_ws);
  for (I item = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); item < items;
       item += I(gridDim.x) * I(blockDim.x)) {
    const TileItem<I> t = tile_item<I, ChannelsFastest>(item, channels, tiles_h, tiles_w);
    const I oc = t.c;
    const I oh0 = t.th * RH, ow0 = t.tw * RW;
    // Top-left input of the receptive field; negative inside the padding (I is signed).
    const I ih0 = oh0 * SH - static_cast<I>(s.pad_top);
    const I iw0 = ow0 * SW - static_cast<I>(s.pad_left);
    const T* xc = x + t.n * static_cast<I>(s.x_ns) + (oc / static_cast<I>(s.multiplier)) *
                                                         static_cast<I>(s.x_cs);
    AccT wk[KH * KW];
#pragma unroll
    for (int k = 0; k < KH * KW; ++k) wk[k] = load_as<AccT>(w + oc * (KH * KW) + k);
    AccT acc[RH][RW];
#pragma unroll
    for (int i = 0; i < RH; ++i)
#pragma unroll
      for (int j = 0; j < RW; ++j) acc[i][j] = AccT(0);
#pragma unroll
    for (int r = 0; r < PH; ++r) {
      const I ih = ih0 + r;
      const bool row_in = ih >= 0 && ih < in_h;
      AccT row[PW];  // zero outside the input: the padding
#pragma unroll
      for (int j = 0; j < PW; ++j) {
        const I iw = iw0 + j;
        row[j] = row_in && iw >= 0 && iw < in_w ? load_as<AccT>(xc + ih * x_hs + iw * x_ws)
                                                : AccT(0);
      }
      // Input row r is tap row kh = r - i*SH of output row i (compile-time after unrolling).
#pragma unroll
      for (int i = 0; i < RH; ++i) {
        const int kh = r - i * SH;
        if (kh < 0 || kh >= KH) continue;
#pragma unroll
        for (int j = 0; j < RW; ++j)
#pragma unroll
          for (int kw = 0; kw < KW; ++kw) acc[i][j] += row[j * SW + kw] * wk[kh * KW + kw];
      }
    }
    const I y_base = t.n * static_cast<I>(s.y_ns) + oc * static_cast<I>(s.y_cs);
#pragma unroll
    for (int i = 0; i < RH; ++i)
#pragma unroll
      for (int j = 0; j < RW; ++j) {
        const I oh = oh0 + i, ow = ow0 + j;  // the last tiles overhang the output
        if (oh < out_h && ow < out_w) {
          store_output(s, y, y_base + oh * y_hs + ow * y_ws, acc[i][j], bias, oc);
        }
      }
  }
}

template <typename T, typename I, bool ChannelsFastest>
__global__ void __launch_bounds__(kThreads, 2)
    dwconv_generic(const DwShape s, const T* __restrict__ x, const T* __restrict__ w,
                   const T* __restrict__ bias, T* __restrict__ y) {
  using AccT = Acc<T>;
  const I channels = static_cast<I>(s.out_channels());
  const I out_h = static_cast<I>(s.out_h), out_w = static_cast<I>(s.out_w);
  const I items = static_cast<I>(s.batch) * channels * out_h * out_w;
  for (I item = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); item < items;
       item += I(gridDim.x) * I(blockDim.x)) {
    const TileItem<I> t = tile_item<I, ChannelsFastest>(item, channels, out_h, out_w);
    const I oc = t.c;
    const AccT acc = dw_pixel_sum<AccT>(s, x, w, t.n, oc, t.th, t.tw);
    store_output(s, y,
                 t.n * static_cast<I>(s.y_ns) + oc * static_cast<I>(s.y_cs) +
                     t.th * static_cast<I>(s.y_hs) + t.tw * static_cast<I>(s.y_ws),
                 acc, bias, oc);
  }
}

// Tile shape per layout: NCHW takes wider rows (neighbouring threads then share cache
// lines of the input rows); NHWC keeps tiles small so small images still fill the GPU.
template <typename T, bool ChannelsFastest, int K, int S>
void launch_tile(const DwShape& s, const T* x, const T* w, const T* b, T* y, cudaStream_t st) {
  constexpr int RH = 2, RW = ChannelsFastest ? 2 : (S == 1 ? 4 : 2);
  const int64_t items = s.batch * s.out_channels() * ((s.out_h + RH - 1) / RH) *
                        ((s.out_w + RW - 1) / RW);
  dwconv_tile<T, int, ChannelsFastest, K, K, S, S, RH, RW>
      <<<grid_for(items, kThreads), kThreads, 0, st>>>(s, x, w, b, y);
}

template <typename T, bool ChannelsFastest>
void launch_layout(const DwShape& s, const T* x, const T* w, const T* b, T* y, cudaStream_t st) {
  const bool square = s.kernel_h == s.kernel_w && s.stride_h == s.stride_w &&
                      s.dilation_h == 1 && s.dilation_w == 1;
  if (square && dw_fits_int32(s)) {
    const int64_t k = s.kernel_h, st_ = s.stride_h;
    if (k == 3 && st_ == 1) return launch_tile<T, ChannelsFastest, 3, 1>(s, x, w, b, y, st);
    if (k == 3 && st_ == 2) return launch_tile<T, ChannelsFastest, 3, 2>(s, x, w, b, y, st);
    if (k == 5 && st_ == 1) return launch_tile<T, ChannelsFastest, 5, 1>(s, x, w, b, y, st);
    if (k == 5 && st_ == 2) return launch_tile<T, ChannelsFastest, 5, 2>(s, x, w, b, y, st);
  }
  const int64_t items = dw_output_elems(s);
  if (dw_fits_int32(s)) {
    dwconv_generic<T, int, ChannelsFastest><<<grid_for(items, kThreads), kThreads, 0, st>>>(
        s, x, w, b, y);
  } else {
    dwconv_generic<T, int64_t, ChannelsFastest><<<grid_for(items, kThreads), kThreads, 0, st>>>(
        s, x, w, b, y);
  }
}

}  // namespace

const char* depthwise_forward(DType dtype, const DwShape& s, const void* x, const void* weight,
                              const void* bias, void* y, void* stream) {
  if (dw_output_elems(s) == 0) return nullptr;
  const auto st = static_cast<cudaStream_t>(stream);
  with_element_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto* xp = static_cast<const T*>(x);
    const auto* wp = static_cast<const T*>(weight);
    const auto* bp = static_cast<const T*>(bias);
    auto* yp = static_cast<T*>(y);
    if (s.layout == Layout::nhwc) {
      launch_layout<T, true>(s, xp, wp, bp, yp, st);
    } else {
      launch_layout<T, false>(s, xp, wp, bp, yp, st);
    }
  });
  return last_error();
}

}  // namespace dsconv::cuda
