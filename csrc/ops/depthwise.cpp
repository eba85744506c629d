// CPU implementations of dsconv::depthwise and its backward ops: checks, allocation,
// layout, threading over rows; the arithmetic is in the kernel dispatch selects.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/flip.h>
#include <torch/library.h>

#include <algorithm>

#include "../cpu/dispatch.h"
#include "checks.h"
#include "depthwise.h"
#include "packing.h"
#include "tensor_shapes.h"

namespace dsconv::ops {

DepthwiseCall prepare_depthwise(const at::Tensor& x, const at::Tensor& weight,
                                const std::optional<at::Tensor>& bias, const char* weight_name,
                                const char* bias_name, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation,
                                Activation act) {
  check_input(x, "x");
  check_dw_weight(weight, weight_name, x.size(1), x, "x");
  check_bias(bias, bias_name, weight.size(0), x, "x");
  const Geometry g = check_geometry(x.size(2), x.size(3), weight.size(2), weight.size(3),
                                    weight_name, stride, padding, dilation);
  const int64_t channels = x.size(1);
  const int64_t multiplier = dw_multiplier(channels, weight.size(0));
  const Layout layout = layout_of(x);
  return DepthwiseCall{make_dw_shape(x.size(0), channels, multiplier, x.size(2), x.size(3), g, act,
                                     layout),
                       x.contiguous(memory_format(layout)), weight.contiguous(),
                       contiguous_or_undefined(bias)};
}

at::Tensor contiguous_or_undefined(const std::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? t->contiguous() : at::Tensor();
}

namespace {

// The forward computation of a prepared call: the kernel dispatch selects, over rows.
at::Tensor depthwise_forward(const DepthwiseCall& call) {
  const DwShape& s = call.shape;
  at::Tensor y = at::empty({s.batch, s.out_channels(), s.out_h, s.out_w},
                           call.x.options().memory_format(memory_format(s.layout)));
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "dsconv::depthwise", [&] {
    const KernelEntry* entry = select_kernel(dw_query(Op::dw_forward, dtype_of<scalar_t>(), s));
    const auto kernel = kernel_fn<typename KernelTypes<scalar_t>::DwForward>(entry);
    at::Tensor packed;
    const scalar_t* wp = kernel_weight<scalar_t>(entry, s, call.weight, packed);
    const scalar_t* xp = call.x.const_data_ptr<scalar_t>();
    const scalar_t* bp = call.bias.defined() ? call.bias.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const int64_t row_work = s.out_channels() * s.out_w * s.kernel_h * s.kernel_w;
    parallel_per_image(s.batch, s.out_h, row_work, [&](int64_t n, int64_t r0, int64_t r1) {
      kernel(s, xp + n * s.x_ns, wp, bp, yp + n * s.y_ns + r0 * s.y_hs, r0, r1);
    });
  });
  return y;
}

at::Tensor depthwise_cpu(const at::Tensor& x, const at::Tensor& weight,
                         const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                         at::IntArrayRef padding, at::IntArrayRef dilation,
                         std::optional<c10::string_view> activation) {
  clear_kernel_record();
  const Activation act = check_activation(activation, "activation");
  return depthwise_forward(
      prepare_depthwise(x, weight, bias, "weight", "bias", stride, padding, dilation, act));
}

// input_size is [N, C, H, W] of the forward input; grad_out is dL/dy (pre-activation).
at::Tensor depthwise_backward_input_cpu(const at::Tensor& grad_out, const at::Tensor& weight,
                                        at::IntArrayRef input_size, at::IntArrayRef stride,
                                        at::IntArrayRef padding, at::IntArrayRef dilation) {
  clear_kernel_record();
  const Geometry g =
      check_dw_backward_input(grad_out, weight, input_size, stride, padding, dilation);
  const int64_t channels = input_size[1];
  const int64_t multiplier = dw_multiplier(channels, weight.size(0));
  // Stride 1, multiplier 1: the input gradient is a depthwise convolution of grad_out with
  // the flipped kernel and the complementary padding, so it runs the forward kernels. In
  // NHWC that pays off only for large images: the flip and its weight packing (~20 us per
  // call) outweigh the specialized forward kernels' gain below about 40x40 pixels.
  constexpr int64_t kNhwcFlippedForwardMinPixels = 40 * 40;
  const int64_t span_h = g.dilation_h * (g.kernel_h - 1), span_w = g.dilation_w * (g.kernel_w - 1);
  const std::vector<int64_t> flipped_padding{span_h - g.pad_top, span_h - g.pad_bottom,
                                             span_w - g.pad_left, span_w - g.pad_right};
  const Layout layout = layout_of(grad_out);
  const bool as_forward = g.stride_h == 1 && g.stride_w == 1 && multiplier == 1 && channels > 0 &&
                          *std::min_element(flipped_padding.begin(), flipped_padding.end()) >= 0 &&
                          (layout == Layout::nchw ||
                           input_size[2] * input_size[3] >= kNhwcFlippedForwardMinPixels);
  if (as_forward) {
    return depthwise_forward(prepare_depthwise(grad_out, weight.flip({2, 3}), std::nullopt, "weight",
                                               "bias", {1, 1}, flipped_padding, dilation,
                                               Activation::none));
  }
  const DwShape s = make_dw_shape(input_size[0], channels, multiplier, input_size[2],
                                  input_size[3], g, Activation::none, layout);
  at::Tensor gx = at::empty(input_size, grad_out.options().memory_format(memory_format(layout)));
  if (gx.numel() == 0) return gx;
  const at::Tensor gy = grad_out.contiguous(memory_format(layout));
  const at::Tensor w = weight.contiguous();
  AT_DISPATCH_FLOATING_TYPES(gx.scalar_type(), "dsconv::depthwise_backward_input", [&] {
    const KernelEntry* entry = select_kernel(dw_query(Op::dw_backward_input, dtype_of<scalar_t>(), s));
    const auto kernel = kernel_fn<typename KernelTypes<scalar_t>::DwBackwardInput>(entry);
    at::Tensor packed;
    const scalar_t* wp = kernel_weight<scalar_t>(entry, s, w, packed);
    const scalar_t* gyp = gy.const_data_ptr<scalar_t>();
    scalar_t* gxp = gx.mutable_data_ptr<scalar_t>();
    const int64_t row_work = s.out_channels() * s.in_w * s.kernel_h * s.kernel_w;
    parallel_per_image(s.batch, s.in_h, row_work, [&](int64_t n, int64_t r0, int64_t r1) {
      kernel(s, gyp + n * s.y_ns, wp, gxp + n * s.x_ns + r0 * s.x_hs, r0, r1);
    });
  });
  return gx;
}

// weight_size is [C*M, 1, kh, kw]; grad_out is dL/dy (pre-activation).
at::Tensor depthwise_backward_weight_cpu(const at::Tensor& grad_out, const at::Tensor& x,
                                         at::IntArrayRef weight_size, at::IntArrayRef stride,
                                         at::IntArrayRef padding, at::IntArrayRef dilation) {
  clear_kernel_record();
  const Geometry g = check_dw_backward_weight(grad_out, x, weight_size, stride, padding, dilation);
  const int64_t channels = x.size(1);
  const int64_t out_channels = weight_size[0];
  if (grad_out.numel() == 0 || x.numel() == 0) return at::zeros(weight_size, x.options());
  const Layout layout = layout_of(x);
  const DwShape s = make_dw_shape(x.size(0), channels, out_channels / channels, x.size(2),
                                  x.size(3), g, Activation::none, layout);
  const at::Tensor xc = x.contiguous(memory_format(layout));
  const at::Tensor gy = grad_out.contiguous(memory_format(layout));
  at::Tensor gw = at::empty(weight_size, x.options());
  AT_DISPATCH_FLOATING_TYPES(gw.scalar_type(), "dsconv::depthwise_backward_weight", [&] {
    const auto kernel = kernel_fn<typename KernelTypes<scalar_t>::DwBackwardWeight>(
        select_kernel(dw_query(Op::dw_backward_weight, dtype_of<scalar_t>(), s)));
    const scalar_t* gyp = gy.const_data_ptr<scalar_t>();
    const scalar_t* xp = xc.const_data_ptr<scalar_t>();
    scalar_t* gwp = gw.mutable_data_ptr<scalar_t>();
    const int64_t taps = s.kernel_h * s.kernel_w;
    // Threads own blocks of whole vectors of channels (16 floats: one AVX-512 vector, two
    // AVX2 ones); each channel's sum runs in a fixed order, so any thread count gives the
    // same bits.
    constexpr int64_t kBlock = 16;
    const int64_t blocks = (out_channels + kBlock - 1) / kBlock;
    const int64_t block_work = kBlock * s.batch * s.out_h * s.out_w * taps;
    at::parallel_for(0, blocks, grain_for(block_work), [&](int64_t begin, int64_t end) {
      const int64_t c0 = begin * kBlock, c1 = std::min(out_channels, end * kBlock);
      kernel(s, gyp, xp, gwp + c0 * taps, c0, c1);
    });
  });
  return gw;
}

}  // namespace

TORCH_LIBRARY_IMPL(dsconv, CPU, m) {
  m.impl("depthwise", &depthwise_cpu);
  m.impl("depthwise_backward_input", &depthwise_backward_input_cpu);
  m.impl("depthwise_backward_weight", &depthwise_backward_weight_cpu);
}

}  // namespace dsconv::ops
