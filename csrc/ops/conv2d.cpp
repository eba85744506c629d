// CPU implementation of dsconv::conv2d, a dense convolution with fused bias and activation,
// computed in NHWC by the registered conv kernel (csrc/cpu/simd/conv.h: an indirect GEMM
// over the weight packed once per weight tensor). Threads split (image, output row). An
// NCHW caller's x and y are transposed once. Meant for the networks' first convolution
// (3 input channels), where it replaces ATen's convolution and the separate activation.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/constant_pad_nd.h>
#include <ATen/ops/convolution.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/hardswish.h>
#include <ATen/ops/hardtanh.h>
#include <ATen/ops/relu.h>
#include <torch/library.h>

#include "../cpu/dispatch.h"
#include "checks.h"
#include "conv2d.h"
#include "depthwise.h"
#include "packing.h"
#include "tensor_shapes.h"

namespace dsconv::ops {

at::Tensor conv2d_composite(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                            at::IntArrayRef stride, at::IntArrayRef padding,
                            at::IntArrayRef dilation, OptString activation) {
  const Activation act = check_activation(activation, "activation");
  check_conv2d(x, weight, bias, stride, padding, dilation);
  // ATen pads symmetrically; an asymmetric padding is applied to x first.
  const bool symmetric = padding[0] == padding[1] && padding[2] == padding[3];
  const at::Tensor xp =
      symmetric ? x : at::constant_pad_nd(x, {padding[2], padding[3], padding[0], padding[1]}, 0);
  const std::vector<int64_t> pad = symmetric ? std::vector<int64_t>{padding[0], padding[2]}
                                             : std::vector<int64_t>{0, 0};
  at::Tensor y = at::convolution(xp, weight, bias, stride, pad, dilation, false, {0, 0}, 1);
  switch (act) {
    case Activation::relu: y = at::relu(y); break;
    case Activation::relu6: y = at::hardtanh(y, 0, 6); break;
    case Activation::hardswish: y = at::hardswish(y); break;
    case Activation::none: break;
  }
  return y.contiguous(memory_format(layout_of(x)));
}

namespace {

at::Tensor conv2d_cpu(const at::Tensor& x, const at::Tensor& weight, const OptTensor& bias,
                      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                      OptString activation) {
  clear_kernel_record();
  const Activation act = check_activation(activation, "activation");
  const Geometry g = check_conv2d(x, weight, bias, stride, padding, dilation);
  const int64_t batch = x.size(0), cin = x.size(1), cout = weight.size(0);
  if (x.numel() == 0 || cout == 0) {  // possibly a non-empty (all-padding) output
    return conv2d_composite(x, weight, bias, stride, padding, dilation, activation);
  }
  const Layout layout = Layout::nhwc;
  const bool nchw_caller = layout_of(x) == Layout::nchw;
  at::Tensor y = at::empty({batch, cout, g.out_h, g.out_w},
                           x.options().memory_format(memory_format(layout)));
  if (y.numel() == 0) return nchw_caller ? y.contiguous() : y;
  const ConvShape s = make_conv_shape(batch, cin, cout, x.size(2), x.size(3), g, act, layout);
  const at::Tensor xc = x.contiguous(memory_format(layout));
  const at::Tensor b = contiguous_or_undefined(bias);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dsconv::conv2d", [&] {
    KernelQuery q{Op::conv_forward, dtype_of<scalar_t>(), layout};
    q.kernel_h = g.kernel_h, q.kernel_w = g.kernel_w, q.stride_h = g.stride_h;
    q.stride_w = g.stride_w, q.dilation_h = g.dilation_h, q.dilation_w = g.dilation_w;
    const KernelEntry* entry = select_kernel(q);
    const auto kernel = kernel_fn<typename KernelTypes<scalar_t>::ConvForward>(entry);
    at::Tensor packed;
    const scalar_t* wp = kernel_weight<scalar_t>(entry, s, weight, packed);
    const scalar_t* bp = b.defined() ? b.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* xp = xc.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const int64_t row_work = g.out_w * cout * cin * g.kernel_h * g.kernel_w;
    parallel_per_image(batch, g.out_h, row_work, [&](int64_t n, int64_t r0, int64_t r1) {
      kernel(s, xp + n * s.x_ns, wp, bp, yp + n * s.y_ns + r0 * s.y_hs, r0, r1);
    });
  });
  return nchw_caller ? y.contiguous() : y;
}

}  // namespace

TORCH_LIBRARY_IMPL(dsconv, CPU, m) { m.impl("conv2d", &conv2d_cpu); }

}  // namespace dsconv::ops
