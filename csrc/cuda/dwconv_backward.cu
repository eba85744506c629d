// Depthwise backward, NCHW and NHWC.
// - dwconv_grad_input: a gather, one input element per thread: it sums the outputs its
//   value fed (every multiplier channel and tap whose output position is on the stride
//   grid and inside the output). No atomics, so the result is deterministic.
// - dwconv_grad_weight: one block per output channel (NCHW) or per 32 output channels
//   (NHWC, channel fastest across threads) and per chunk of the batch x output pixels
//   (blockIdx.z); each thread sums its share of the chunk for every tap in registers, then
//   the block adds the shares in a fixed tree order. With several chunks each writes its
//   partial sums to a workspace that sum_entries adds in chunk order: deterministic, no
//   atomics. 3x3 and 5x5 keep all taps per thread; other kernel sizes take one tap per
//   block (blockIdx.y).
#include <algorithm>

#include "dwconv_index.cuh"

namespace dsconv::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T, typename I, bool ChannelsFastest, bool UnitStride>
__global__ void __launch_bounds__(kThreads, 2)
    dwconv_grad_input(const DwShape s, const T* __restrict__ gy, const T* __restrict__ w,
                      T* __restrict__ gx) {
  using AccT = Acc<T>;
  const I channels = static_cast<I>(s.channels), mult = static_cast<I>(s.multiplier);
  const I in_h = static_cast<I>(s.in_h), in_w = static_cast<I>(s.in_w);
  const I out_h = static_cast<I>(s.out_h), out_w = static_cast<I>(s.out_w);
  const I kh_n = static_cast<I>(s.kernel_h), kw_n = static_cast<I>(s.kernel_w);
  const I sh = static_cast<I>(s.stride_h), sw = static_cast<I>(s.stride_w);
  const I dh = static_cast<I>(s.dilation_h), dw = static_cast<I>(s.dilation_w);
  const I items = static_cast<I>(s.batch) * channels * in_h * in_w;
  for (I item = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); item < items;
       item += I(gridDim.x) * I(blockDim.x)) {
    const TileItem<I> t = tile_item<I, ChannelsFastest>(item, channels, in_h, in_w);
    // Output (oh, ow) reads this input at tap (kh, kw) when
    // oh * sh = ih + pad_top - kh * dh (and the same along w).
    const I h_at0 = t.th + static_cast<I>(s.pad_top);
    const I w_at0 = t.tw + static_cast<I>(s.pad_left);
    AccT acc = AccT(0);
    for (I m = 0; m < mult; ++m) {
      const I oc = t.c * mult + m;
      const T* gyc = gy + t.n * static_cast<I>(s.y_ns) + oc * static_cast<I>(s.y_cs);
      const T* wc = w + oc * kh_n * kw_n;
      for (I kh = 0; kh < kh_n; ++kh) {
        const I hs = h_at0 - kh * dh;
        if (hs < 0) break;  // decreasing in kh: no later tap reaches an output row
        if (!UnitStride && hs % sh != 0) continue;
        const I oh = UnitStride ? hs : hs / sh;
        if (oh >= out_h) continue;
        for (I kw = 0; kw < kw_n; ++kw) {
          const I ws = w_at0 - kw * dw;
          if (ws < 0) break;
          if (!UnitStride && ws % sw != 0) continue;
          const I ow = UnitStride ? ws : ws / sw;
          if (ow >= out_w) continue;
          acc += load_as<AccT>(gyc + oh * static_cast<I>(s.y_hs) + ow * static_cast<I>(s.y_ws)) *
                 load_as<AccT>(wc + kh * kw_n + kw);
        }
      }
    }
    gx[t.n * static_cast<I>(s.x_ns) + t.c * static_cast<I>(s.x_cs) +
       t.th * static_cast<I>(s.x_hs) + t.tw * static_cast<I>(s.x_ws)] = store_as<T>(acc);
  }
}

// KH == 0: run-time kernel size, tap blockIdx.y (grid-stride over the taps). Chunk
// blockIdx.z sums positions [z * chunk, (z + 1) * chunk) into out[z * C*M * taps + ...]
// (TOut = T: the weight gradient itself, one chunk; TOut = Acc<T>: a workspace entry).
template <typename T, typename TOut, typename I, bool ChannelsFastest, int KH, int KW>
__global__ void __launch_bounds__(kThreads, 1)
    dwconv_grad_weight(const DwShape s, const T* __restrict__ gy, const T* __restrict__ x,
                       int64_t chunk, TOut* __restrict__ out) {
  using AccT = Acc<T>;
  constexpr int kLanes = ChannelsFastest ? 32 : 1;   // channels per block
  constexpr int kShares = kThreads / kLanes;         // threads per channel
  constexpr int kTaps = KH > 0 ? KH * KW : 1;        // taps per thread
  __shared__ AccT partial[kThreads];
  const int lane = threadIdx.x % kLanes, share = threadIdx.x / kLanes;
  const I out_channels = static_cast<I>(s.out_channels());
  const I out_h = static_cast<I>(s.out_h), out_w = static_cast<I>(s.out_w);
  const I in_h = static_cast<I>(s.in_h), in_w = static_cast<I>(s.in_w);
  const I kw_n = static_cast<I>(s.kernel_w), taps = static_cast<I>(s.kernel_h) * kw_n;
  const I positions = static_cast<I>(s.batch) * out_h * out_w;
  const I p_begin = I(blockIdx.z) * static_cast<I>(chunk);
  const I chunk_end = p_begin + static_cast<I>(chunk);
  const I p_end = chunk_end < positions ? chunk_end : positions;
  TOut* const gw = out + I(blockIdx.z) * out_channels * taps;
  // The loops below are uniform over the block (they depend on block indices only), so
  // every thread reaches every __syncthreads.
  for (I oc0 = I(blockIdx.x) * kLanes; oc0 < out_channels; oc0 += I(gridDim.x) * kLanes) {
    const I oc = oc0 + lane;
    const bool active = oc < out_channels;
    const I c = active ? oc / static_cast<I>(s.multiplier) : I(0);
    for (I tap0 = KH > 0 ? I(0) : I(blockIdx.y); tap0 < taps; tap0 += KH > 0 ? taps : I(gridDim.y)) {
      AccT acc[kTaps];
#pragma unroll
      for (int k = 0; k < kTaps; ++k) acc[k] = AccT(0);
      for (I p = p_begin + share; active && p < p_end; p += kShares) {
        const I ow = p % out_w, q = p / out_w;
        const I oh = q % out_h, n = q / out_h;
        const AccT g = load_as<AccT>(gy + n * static_cast<I>(s.y_ns) + oc * static_cast<I>(s.y_cs) +
                                     oh * static_cast<I>(s.y_hs) + ow * static_cast<I>(s.y_ws));
        const T* xc = x + n * static_cast<I>(s.x_ns) + c * static_cast<I>(s.x_cs);
        const I ih0 = oh * static_cast<I>(s.stride_h) - static_cast<I>(s.pad_top);
        const I iw0 = ow * static_cast<I>(s.stride_w) - static_cast<I>(s.pad_left);
#pragma unroll
        for (int k = 0; k < kTaps; ++k) {
          const I tap = tap0 + k;
          const I kh = KH > 0 ? I(k / KW) : tap / kw_n, kw = KH > 0 ? I(k % KW) : tap % kw_n;
          const I ih = ih0 + kh * static_cast<I>(s.dilation_h);
          const I iw = iw0 + kw * static_cast<I>(s.dilation_w);
          if (ih >= 0 && ih < in_h && iw >= 0 && iw < in_w) {
            acc[k] += g * load_as<AccT>(xc + ih * static_cast<I>(s.x_hs) + iw * static_cast<I>(s.x_ws));
          }
        }
      }
      // Fixed-order tree sum over the shares of each lane (kShares is a power of two).
#pragma unroll
      for (int k = 0; k < kTaps; ++k) {
        partial[threadIdx.x] = acc[k];
        __syncthreads();
        for (int half = kShares / 2; half > 0; half /= 2) {
          if (share < half) partial[threadIdx.x] += partial[threadIdx.x + half * kLanes];
          __syncthreads();
        }
        if (share == 0 && active) gw[oc * taps + tap0 + k] = store_as<TOut>(partial[lane]);
        __syncthreads();  // partial is rewritten by the next tap
      }
    }
  }
}

// Chunks of the batch x output pixels for the weight gradient: enough blocks to fill the
// GPU (~1024), each thread still summing >= 32 positions. Depends on the shape alone, so
// the summation order, and the result, are the same on every run and every GPU.
int64_t grad_weight_chunks(const DwShape& s) {
  const bool nhwc = s.layout == Layout::nhwc;
  const int64_t lanes = nhwc ? 32 : 1, shares = kThreads / lanes;
  const int64_t kh = s.kernel_h, kw = s.kernel_w;
  const bool fixed_taps = (kh == 3 && kw == 3) || (kh == 5 && kw == 5);  // taps in registers
  const int64_t blocks = (s.out_channels() + lanes - 1) / lanes * (fixed_taps ? 1 : kh * kw);
  const int64_t positions = s.batch * s.out_h * s.out_w;
  const int64_t most = (positions + shares * 32 - 1) / (shares * 32);
  return std::max<int64_t>(1, std::min<int64_t>({(1024 + blocks - 1) / blocks, most, 4096}));
}

template <typename T, typename TOut, bool ChannelsFastest>
void launch_grad_weight(const DwShape& s, const T* gy, const T* x, int64_t chunks, TOut* out,
                        cudaStream_t st) {
  constexpr int lanes = ChannelsFastest ? 32 : 1;
  const int64_t positions = s.batch * s.out_h * s.out_w;
  const int64_t chunk = (positions + chunks - 1) / chunks;
  const unsigned blocks = grid_for(s.out_channels(), lanes);
  const dim3 grid(blocks, 1, static_cast<unsigned>(chunks));
  const bool small = dw_fits_int32(s) && fits_int32({chunks * dw_weight_elems(s)});
  if (small && s.kernel_h == 3 && s.kernel_w == 3) {
    dwconv_grad_weight<T, TOut, int, ChannelsFastest, 3, 3><<<grid, kThreads, 0, st>>>(s, gy, x,
                                                                                   chunk, out);
  } else if (small && s.kernel_h == 5 && s.kernel_w == 5) {
    dwconv_grad_weight<T, TOut, int, ChannelsFastest, 5, 5><<<grid, kThreads, 0, st>>>(s, gy, x,
                                                                                   chunk, out);
  } else {
    const dim3 tap_grid(blocks, grid_for(s.kernel_h * s.kernel_w, 1), grid.z);
    if (small) {
      dwconv_grad_weight<T, TOut, int, ChannelsFastest, 0, 0><<<tap_grid, kThreads, 0, st>>>(
          s, gy, x, chunk, out);
    } else {
      dwconv_grad_weight<T, TOut, int64_t, ChannelsFastest, 0, 0><<<tap_grid, kThreads, 0, st>>>(
          s, gy, x, chunk, out);
    }
  }
}

// The weight gradient in one pass (one chunk) or as chunk partials + sum_entries.
template <typename T, bool ChannelsFastest>
void launch_grad_weight(const DwShape& s, const T* gy, const T* x, T* gw, void* workspace,
                        cudaStream_t st) {
  using AccT = Acc<T>;
  const int64_t chunks = grad_weight_chunks(s);
  if (chunks == 1) {
    launch_grad_weight<T, T, ChannelsFastest>(s, gy, x, 1, gw, st);
    return;
  }
  auto* ws = static_cast<AccT*>(workspace);
  launch_grad_weight<T, AccT, ChannelsFastest>(s, gy, x, chunks, ws, st);
  const int64_t count = dw_weight_elems(s);
  sum_entries<AccT, T><<<grid_for(count, 256), 256, 0, st>>>(ws, chunks, count, gw);
}

template <typename T, bool ChannelsFastest, bool UnitStride>
void launch_grad_input_stride(const DwShape& s, const T* gy, const T* w, T* gx, cudaStream_t st) {
  const unsigned blocks = grid_for(dw_input_elems(s), kThreads);
  if (dw_fits_int32(s)) {
    dwconv_grad_input<T, int, ChannelsFastest, UnitStride><<<blocks, kThreads, 0, st>>>(s, gy, w, gx);
  } else {
    dwconv_grad_input<T, int64_t, ChannelsFastest, UnitStride><<<blocks, kThreads, 0, st>>>(s, gy, w, gx);
  }
}

template <typename T, bool ChannelsFastest>
void launch_grad_input(const DwShape& s, const T* gy, const T* w, T* gx, cudaStream_t st) {
  if (s.stride_h == 1 && s.stride_w == 1) {
    launch_grad_input_stride<T, ChannelsFastest, true>(s, gy, w, gx, st);
  } else {
    launch_grad_input_stride<T, ChannelsFastest, false>(s, gy, w, gx, st);
  }
}

}  // namespace

const char* depthwise_backward_input(DType dtype, const DwShape& s, const void* gy,
                                     const void* weight, void* gx, void* stream) {
  if (dw_input_elems(s) == 0) return nullptr;
  const auto st = static_cast<cudaStream_t>(stream);
  with_element_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto* gyp = static_cast<const T*>(gy);
    const auto* wp = static_cast<const T*>(weight);
    auto* gxp = static_cast<T*>(gx);
    if (s.layout == Layout::nhwc) {
      launch_grad_input<T, true>(s, gyp, wp, gxp, st);
    } else {
      launch_grad_input<T, false>(s, gyp, wp, gxp, st);
    }
  });
  return last_error();
}

int64_t depthwise_backward_weight_workspace(DType dtype, const DwShape& s) {
  const int64_t chunks = grad_weight_chunks(s);
  return chunks > 1 ? chunks * dw_weight_elems(s) * acc_size(dtype) : 0;
}

const char* depthwise_backward_weight(DType dtype, const DwShape& s, const void* gy,
                                      const void* x, void* gw, void* workspace, void* stream) {
  if (dw_weight_elems(s) == 0) return nullptr;
  const auto st = static_cast<cudaStream_t>(stream);
  with_element_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto* gyp = static_cast<const T*>(gy);
    const auto* xp = static_cast<const T*>(x);
    auto* gwp = static_cast<T*>(gw);
    if (s.layout == Layout::nhwc) {
      launch_grad_weight<T, true>(s, gyp, xp, gwp, workspace, st);
    } else {
      launch_grad_weight<T, false>(s, gyp, xp, gwp, workspace, st);
    }
  });
  return last_error();
}

}  // namespace dsconv::cuda
