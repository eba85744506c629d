// CPU implementation of dsconv::squeeze_excite: y = x * gate(expand(act(reduce(mean_hw(x))))).
// Three passes: the channel means of every image (csrc/cpu/squeeze_excite.h), the two
// FCs for the whole batch at once on the registered pointwise kernels (the N mean vectors
// are the N pixels of one 1x1 NHWC image; bias and activation fused; gemv.h for a few images),
// the gate, then y = x * gate per channel in x's layout. Threads split the means
// (channel_means.h) and the scaling by (image, pixel range) in NHWC and by (image, channel
// range) in NCHW, so batch 1 is split too where an image is large enough to pay.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/add.h>
#include <ATen/ops/clamp.h>
#include <ATen/ops/div.h>
#include <ATen/ops/mean.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/sigmoid.h>
#include <torch/library.h>

#include "../cpu/dispatch.h"
#include "../cpu/squeeze_excite.h"
#include "channel_means.h"
#include "checks.h"
#include "depthwise.h"
#include "gemv.h"
#include "packing.h"
#include "squeeze_excite.h"
#include "tensor_shapes.h"
#include "tile_buffer.h"

namespace dsconv::ops {

at::Tensor squeeze_excite_composite(const at::Tensor& x, const at::Tensor& reduce_weight,
                                    const OptTensor& reduce_bias, const at::Tensor& expand_weight,
                                    const OptTensor& expand_bias, OptString activation,
                                    c10::string_view gate) {
  check_activation(activation, "activation");
  const Gate g = check_gate(gate);
  check_squeeze_excite(x, reduce_weight, reduce_bias, expand_weight, expand_bias);
  const Ops& ops = Ops::get();
  const at::Tensor mean = at::mean(x, {2, 3}, /*keepdim=*/true);
  const at::Tensor hidden = ops.pointwise.call(mean, reduce_weight, reduce_bias, activation, OptTensor());
  const at::Tensor score = ops.pointwise.call(hidden, expand_weight, expand_bias, OptString(), OptTensor());
  // hardsigmoid as clamp(v + 3, 0, 6) / 6, its formula: ATen's hardsigmoid has no double
  // backward.
  const at::Tensor scale =
      g == Gate::hardsigmoid ? at::clamp(at::add(score, 3), 0, 6).div(6) : at::sigmoid(score);
  // The op's memory-format rule (tensor_shapes.h), whatever strides the product picked.
  return at::mul(x, scale).contiguous(memory_format(layout_of(x)));
}

namespace {

at::Tensor squeeze_excite_cpu(const at::Tensor& x, const at::Tensor& reduce_weight,
                              const OptTensor& reduce_bias, const at::Tensor& expand_weight,
                              const OptTensor& expand_bias, OptString activation,
                              c10::string_view gate) {
  clear_kernel_record();
  const Activation act = check_activation(activation, "activation");
  const Gate g = check_gate(gate);
  const int64_t squeezed =
      check_squeeze_excite(x, reduce_weight, reduce_bias, expand_weight, expand_bias);
  const Layout layout = layout_of(x);
  at::Tensor y = at::empty(x.sizes(), x.options().memory_format(memory_format(layout)));
  if (y.numel() == 0) return y;
  const int64_t batch = x.size(0), channels = x.size(1), pixels = x.size(2) * x.size(3);
  const SeShape s{channels, squeezed, pixels, layout};
  // The batch's vectors as the pixels of one 1x1 NHWC image.
  const PwShape reduce = make_pw_shape(1, channels, squeezed, 1, batch, act, Layout::nhwc);
  const PwShape expand = make_pw_shape(1, squeezed, channels, 1, batch, Activation::none,
                                       Layout::nhwc);
  const at::Tensor xc = x.contiguous(memory_format(layout));
  const at::Tensor rw = reduce_weight.contiguous(), ew = expand_weight.contiguous();
  const at::Tensor rb = contiguous_or_undefined(reduce_bias);
  const at::Tensor eb = contiguous_or_undefined(expand_bias);
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "dsconv::squeeze_excite", [&] {
    auto ptr = [](const at::Tensor& t) { return t.defined() ? t.const_data_ptr<scalar_t>() : nullptr; };
    // One FC for the whole batch: matrix-vector products for a few images (the weight as
    // it is, threads splitting its rows), else the packed GEMM on this thread.
    auto fc = [&](const PwShape& shape, const at::Tensor& weight, const at::Tensor& bias,
                  const scalar_t* in, scalar_t* out) {
      if (gemv_serves(shape)) return pointwise_gemv(shape, in, ptr(weight), ptr(bias), out);
      const KernelEntry* entry = select_kernel(pw_query(Op::pw_forward, dtype_of<scalar_t>(), shape));
      at::Tensor packed;
      const scalar_t* w = kernel_weight<scalar_t>(entry, shape, weight, packed);
      kernel_fn<typename KernelTypes<scalar_t>::PwForward>(entry)(shape, in, w, ptr(bias), out, batch);
    };
    const scalar_t* xp = xc.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    // Per image: C means, S hidden values, C scores (gated in place), and in NHWC the
    // channel sums of each block of pixels; this thread's kept buffer.
    TileBuffer<scalar_t> buffer;
    scalar_t* mean = buffer.get(batch * (2 * channels + squeezed) + channel_means_scratch(s, batch));
    scalar_t* hidden = mean + batch * channels;
    scalar_t* score = hidden + batch * squeezed;
    channel_means(s, batch, xp, mean, score + batch * channels);
    fc(reduce, rw, rb, mean, hidden);
    fc(expand, ew, eb, hidden, score);
    squeeze_excite_gates(g, score, batch * channels);
    const bool nhwc = layout == Layout::nhwc;
    const int64_t image = channels * pixels;
    const int64_t units = nhwc ? pixels : channels, unit_elements = nhwc ? channels : pixels;
    at::parallel_for(0, batch * units, grain_for(unit_elements, kPassGrainElements),
                     [&](int64_t begin, int64_t end) {
      for_each_image_piece(begin, end, units, [&](int64_t n, int64_t u0, int64_t u1) {
        squeeze_excite_scale(s, xp + n * image, score + n * channels, yp + n * image, u0, u1);
      });
    });
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(dsconv, CPU, m) { m.impl("squeeze_excite", &squeeze_excite_cpu); }

}  // namespace dsconv::ops
