// CPU implementation of dsconv::global_avg_pool: each image's channel means, [N, C, 1, 1]
// in x's memory format (F.adaptive_avg_pool2d(x, 1)), computed as squeeze_excite's squeeze
// (channel_means.h). It exists for the classifier head of a converted network: ATen's
// adaptive_avg_pool2d goes through mean -> sum + div and a copy, which at batch 1 on a cache
// the network's weights have just swept cost about 100 us in MobileNetV3-Large's forward
// (Zen 3), several times the pass over x.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mean.h>
#include <torch/library.h>

#include "channel_means.h"
#include "checks.h"
#include "global_avg_pool.h"
#include "tile_buffer.h"

namespace dsconv::ops {

at::Tensor global_avg_pool_composite(const at::Tensor& x) {
  check_input(x, "x");
  // The op's memory-format rule (tensor_shapes.h), whatever strides mean picked.
  return at::mean(x, {2, 3}, /*keepdim=*/true).contiguous(memory_format(layout_of(x)));
}

namespace {

at::Tensor global_avg_pool_cpu(const at::Tensor& x) {
  clear_kernel_record();
  check_input(x, "x");
  const int64_t batch = x.size(0), channels = x.size(1), pixels = x.size(2) * x.size(3);
  if (pixels == 0) return global_avg_pool_composite(x);  // ATen's mean of nothing (NaN)
  const Layout layout = layout_of(x);
  at::Tensor y = at::empty({batch, channels, 1, 1}, x.options().memory_format(memory_format(layout)));
  if (y.numel() == 0) return y;
  const at::Tensor xc = x.contiguous(memory_format(layout));
  const SeShape s{channels, 0, pixels, layout};
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "dsconv::global_avg_pool", [&] {
    TileBuffer<scalar_t> buffer;
    scalar_t* scratch = buffer.get(channel_means_scratch(s, batch));
    channel_means(s, batch, xc.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), scratch);
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(dsconv, CPU, m) { m.impl("global_avg_pool", &global_avg_pool_cpu); }

}  // namespace dsconv::ops
