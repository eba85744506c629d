// CPU implementations of dsconv::pointwise (a 1x1 convolution, i.e. a GEMM over pixels)
// and its backward ops.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "../cpu/dispatch.h"
#include "../cpu/residual.h"
#include "checks.h"
#include "gemv.h"
#include "packing.h"
#include "tensor_shapes.h"

namespace dsconv::ops {
namespace {

// y = act(W . x + b) (+ residual) for checked arguments: the GEMM kernel dispatch selects,
// weights packed (and cached) as it asks; the residual is added to each pixel range right
// after the kernel wrote it.
at::Tensor pointwise_forward(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                             Activation act, const at::Tensor& residual) {
  const Layout layout = layout_of(x);
  PwShape s = make_pw_shape(x.size(0), x.size(1), weight.size(0), x.size(2), x.size(3), act,
                            layout);
  at::Tensor y = at::empty({s.batch, s.out_channels, x.size(2), x.size(3)},
                           x.options().memory_format(memory_format(layout)));
  if (y.numel() == 0) return y;
  const at::Tensor xc = x.contiguous(memory_format(layout));
  const at::Tensor w = dense_pw_weight(weight);
  const at::Tensor b = bias.defined() ? bias.contiguous() : at::Tensor();
  const at::Tensor r = residual.defined() ? residual.contiguous(memory_format(layout)) : at::Tensor();
  // The matrix-vector kernels read ATen's layout. An input-major weight (that is not also
  // contiguous) goes to the GEMM kernels, which read it in place, also for few pixels; 1x1
  // images then run as NHWC, whose strides coincide with NCHW's.
  const bool gemv = gemv_serves(s) && w.is_contiguous();
  if (gemv_serves(s) && !gemv && s.pixels == 1) {
    s = make_pw_shape(s.batch, s.in_channels, s.out_channels, 1, 1, act, Layout::nhwc);
  }
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "dsconv::pointwise", [&] {
    const scalar_t* bp = b.defined() ? b.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* rp = r.defined() ? r.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    if (gemv) {
      pointwise_gemv(s, xc.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(), bp, yp);
      for (int64_t n = 0; rp != nullptr && n < s.batch; ++n) {
        add_residual_pixels(s.layout, s.out_channels, s.pixels, rp + n * s.y_ns, yp + n * s.y_ns,
                            0, s.pixels);
      }
      return;
    }
    const KernelEntry* entry = select_kernel(pw_query(Op::pw_forward, dtype_of<scalar_t>(), s));
    const auto kernel = kernel_fn<typename KernelTypes<scalar_t>::PwForward>(entry);
    at::Tensor packed;
    const scalar_t* wp = pw_kernel_weight<scalar_t>(entry, s, w, packed);
    const scalar_t* xp = xc.const_data_ptr<scalar_t>();
    parallel_per_image(s.batch, s.pixels, s.in_channels * s.out_channels,
                       [&](int64_t n, int64_t p0, int64_t p1) {
      kernel(s, xp + n * s.x_ns + p0 * s.x_ps, wp, bp, yp + n * s.y_ns + p0 * s.y_ps, p1 - p0);
      if (rp != nullptr) {
        add_residual_pixels(s.layout, s.out_channels, s.pixels, rp + n * s.y_ns, yp + n * s.y_ns,
                            p0, p1);
      }
    });
  });
  return y;
}

at::Tensor pointwise_cpu(const at::Tensor& x, const at::Tensor& weight,
                         const std::optional<at::Tensor>& bias,
                         std::optional<c10::string_view> activation,
                         const std::optional<at::Tensor>& residual) {
  clear_kernel_record();
  const Activation act = check_activation(activation, "activation");
  check_pw_forward(x, weight, bias, residual);
  return pointwise_forward(x, weight, bias.has_value() && bias->defined() ? *bias : at::Tensor(),
                           act, residual.has_value() && residual->defined() ? *residual : at::Tensor());
}

// gx = W^T . gy: the forward GEMM with the transposed weight (so it runs the same
// vectorized kernels). Made contiguous, so it is packed: the transpose view of a contiguous
// weight would be read in place, with the input stride C_in unpadded (slow where it is a
// power of two; not measured for the backward).
at::Tensor pointwise_backward_input_cpu(const at::Tensor& grad_out, const at::Tensor& weight) {
  clear_kernel_record();
  check_pw_backward_input(grad_out, weight);
  const at::Tensor transposed =
      weight.reshape({weight.size(0), weight.size(1)}).t().contiguous().view({weight.size(1), weight.size(0), 1, 1});
  return pointwise_forward(grad_out, transposed, at::Tensor(), Activation::none, at::Tensor());
}

at::Tensor pointwise_backward_weight_cpu(const at::Tensor& grad_out, const at::Tensor& x) {
  clear_kernel_record();
  check_pw_backward_weight(grad_out, x);
  const int64_t out_channels = grad_out.size(1);
  const int64_t in_channels = x.size(1);
  if (grad_out.numel() == 0 || x.numel() == 0) {
    return at::zeros({out_channels, in_channels, 1, 1}, x.options());
  }
  // Computed in NHWC whatever the inputs' layout: it is a GEMM over pixels that wants
  // each pixel's channels contiguous in both operands (the copy is linear in the inputs,
  // the GEMM is not).
  const Layout layout = Layout::nhwc;
  const PwShape s = make_pw_shape(x.size(0), in_channels, out_channels, x.size(2), x.size(3),
                                  Activation::none, layout);
  const at::Tensor xc = x.contiguous(memory_format(layout));
  const at::Tensor gy = grad_out.contiguous(memory_format(layout));
  at::Tensor gw = at::empty({out_channels, in_channels, 1, 1}, x.options());
  AT_DISPATCH_FLOATING_TYPES(gw.scalar_type(), "dsconv::pointwise_backward_weight", [&] {
    const auto kernel = kernel_fn<typename KernelTypes<scalar_t>::PwBackwardWeight>(
        select_kernel(pw_query(Op::pw_backward_weight, dtype_of<scalar_t>(), s)));
    const scalar_t* gyp = gy.const_data_ptr<scalar_t>();
    const scalar_t* xp = xc.const_data_ptr<scalar_t>();
    scalar_t* gwp = gw.mutable_data_ptr<scalar_t>();
    const int64_t row_work = s.batch * s.pixels * s.in_channels;
    at::parallel_for(0, out_channels, grain_for(row_work), [&](int64_t begin, int64_t end) {
      kernel(s, gyp, xp, gwp + begin * in_channels, begin, end);
    });
  });
  return gw;
}

}  // namespace

TORCH_LIBRARY_IMPL(dsconv, CPU, m) {
  m.impl("pointwise", &pointwise_cpu);
  m.impl("pointwise_backward_input", &pointwise_backward_input_cpu);
  m.impl("pointwise_backward_weight", &pointwise_backward_weight_cpu);
}

}  // namespace dsconv::ops
