// Work-item indexing of the depthwise kernels: one item is a tile of RH x RW outputs (or
// inputs, for the input gradient) of one image and one channel. I is the index type:
// int when every element offset and item count fits (see fits_int32), else int64_t.
#pragma once
#include <cstdint>
#include <initializer_list>

#include "common.cuh"

namespace dsconv::cuda {

template <typename I> struct TileItem {
  I n, c, th, tw;  // image, channel, tile row, tile column
};

// Item order: NHWC (ChannelsFastest) puts the channel fastest so neighbouring threads
// read neighbouring addresses; NCHW puts the tile column fastest for the same reason.
// Invariant: 0 <= item < batch * channels * tiles_h * tiles_w gives each field in range.
template <typename I, bool ChannelsFastest>
__device__ __forceinline__ TileItem<I> tile_item(I item, I channels, I tiles_h, I tiles_w) {
  TileItem<I> t;
  if (ChannelsFastest) {
    t.c = item % channels;
    item /= channels;
    t.tw = item % tiles_w;
    item /= tiles_w;
    t.th = item % tiles_h;
    t.n = item / tiles_h;
  } else {
    t.tw = item % tiles_w;
    item /= tiles_w;
    t.th = item % tiles_h;
    item /= tiles_h;
    t.c = item % channels;
    t.n = item / channels;
  }
  return t;
}

// 32-bit indexing is used when every count and offset stays below 2^30: then a grid-stride
// step (at most 65535 * 1024 < 2^26) added to an index below the count cannot overflow.
inline bool fits_int32(std::initializer_list<int64_t> counts) {
  for (int64_t n : counts) {
    if (n >= (int64_t(1) << 30)) return false;
  }
  return true;
}

// The depthwise sum (no bias, no activation) of output pixel (oh, ow) of output channel oc
// in image n, taps outside the input skipped: the one-output-per-thread form shared by the
// generic forward kernel and the fused op's tile fill.
template <typename AccT, typename I, typename T>
__device__ __forceinline__ AccT dw_pixel_sum(const DwShape& s, const T* __restrict__ x,
                                             const T* __restrict__ w, I n, I oc, I oh, I ow) {
  const I in_h = static_cast<I>(s.in_h), in_w = static_cast<I>(s.in_w);
  const I kh_n = static_cast<I>(s.kernel_h), kw_n = static_cast<I>(s.kernel_w);
  const T* xc = x + n * static_cast<I>(s.x_ns) + (oc / static_cast<I>(s.multiplier)) *
                                                     static_cast<I>(s.x_cs);
  const T* wc = w + oc * kh_n * kw_n;
  const I ih0 = oh * static_cast<I>(s.stride_h) - static_cast<I>(s.pad_top);
  const I iw0 = ow * static_cast<I>(s.stride_w) - static_cast<I>(s.pad_left);
  AccT acc = AccT(0);
  for (I kh = 0; kh < kh_n; ++kh) {
    const I ih = ih0 + kh * static_cast<I>(s.dilation_h);
    if (ih < 0 || ih >= in_h) continue;
    for (I kw = 0; kw < kw_n; ++kw) {
      const I iw = iw0 + kw * static_cast<I>(s.dilation_w);
      if (iw < 0 || iw >= in_w) continue;
      acc += load_as<AccT>(xc + ih * static_cast<I>(s.x_hs) + iw * static_cast<I>(s.x_ws)) *
             load_as<AccT>(wc + kh * kw_n + kw);
    }
  }
  return acc;
}

inline int64_t dw_input_elems(const DwShape& s) { return s.batch * s.channels * s.in_h * s.in_w; }
inline int64_t dw_output_elems(const DwShape& s) {
  return s.batch * s.out_channels() * s.out_h * s.out_w;
}
inline int64_t dw_weight_elems(const DwShape& s) {
  return s.out_channels() * s.kernel_h * s.kernel_w;
}
inline bool dw_fits_int32(const DwShape& s) {
  return fits_int32({dw_input_elems(s), dw_output_elems(s), dw_weight_elems(s)});
}

}  // namespace dsconv::cuda
