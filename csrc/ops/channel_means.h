// The channel means of a batch of dense images, split over the threads: the squeeze of
// dsconv::squeeze_excite and all of dsconv::global_avg_pool (csrc/cpu/squeeze_excite.h's
// loops). NHWC: sums over fixed blocks of pixels, threads splitting the blocks, then added in
// block order (the same result on any thread count); NCHW: threads split (image, channel
// range).
#pragma once
#include <ATen/Parallel.h>

#include "../cpu/dispatch.h"
#include "../cpu/squeeze_excite.h"
#include "tensor_shapes.h"

namespace dsconv::ops {

// Elements of x a thread takes at least in a pass over x. In NHWC the passes split by
// pixels, so each thread streams its own rows once (the means used to split channels,
// every thread touching every row: a second thread was no faster). MobileNetV3-Large's SE
// at batch 1 on 2 threads against 1 << 17 (one thread): 72 and 120 channels at 28x28
// 1.2-1.3x faster, the 14x14 and 7x7 ones within noise.
constexpr int64_t kPassGrainElements = 1 << 13;

// Elements of scratch channel_means needs for `batch` images of shape s.
inline int64_t channel_means_scratch(const SeShape& s, int64_t batch) {
  return s.layout == Layout::nhwc ? batch * se_pixel_blocks(s) * s.channels : 0;
}

// mean[n * C + c] = the mean of channel c of image n over its pixels; x: `batch` dense
// images in s.layout.
template <typename T>
void channel_means(const SeShape& s, int64_t batch, const T* x, T* mean, T* scratch) {
  const int64_t image = s.channels * s.pixels;
  if (s.layout == Layout::nhwc) {
    const int64_t blocks = se_pixel_blocks(s);
    at::parallel_for(0, batch * blocks, grain_for(s.channels * kSeBlockPixels, kPassGrainElements),
                     [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        squeeze_excite_block_sums(s, x + (i / blocks) * image, i % blocks, scratch + i * s.channels);
      }
    });
    for (int64_t n = 0; n < batch; ++n) {
      squeeze_excite_means_from_blocks(s, scratch + n * blocks * s.channels, mean + n * s.channels);
    }
    return;
  }
  at::parallel_for(0, batch * s.channels, grain_for(s.pixels, kPassGrainElements),
                   [&](int64_t begin, int64_t end) {
    for_each_image_piece(begin, end, s.channels, [&](int64_t n, int64_t c0, int64_t c1) {
      squeeze_excite_means_nchw(s, x + n * image, mean + n * s.channels + c0, c0, c1);
    });
  });
}

}  // namespace dsconv::ops
