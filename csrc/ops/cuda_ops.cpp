// CUDA implementations of every dsconv op: the CPU ops' checks and layout rules
// (checks.h, tensor_shapes.h), the kernels of csrc/cuda, launched on the current stream of
// the input's device with that device current. Built only when setup.py builds CUDA; it
// includes no CUDA header, so it also compiles (-fsyntax-only) against a CPU-only torch.
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/library.h>

#include "../cuda/launch.h"
#include "checks.h"
#include "conv2d.h"
#include "depthwise.h"
#include "inverted_residual.h"
#include "op_handles.h"
#include "global_avg_pool.h"
#include "squeeze_excite.h"
#include "tensor_shapes.h"

namespace dsconv::ops {
namespace {

cuda::DType cuda_dtype(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return cuda::DType::f32;
    case at::kDouble: return cuda::DType::f64;
    case at::kHalf: return cuda::DType::f16;
    case at::kBFloat16: return cuda::DType::bf16;
    default: break;
  }
  TORCH_CHECK(false, "dsconv CUDA kernels do not support dtype ", t.scalar_type());
}

// The current stream of t's device: the one ATen ops on t use (and CUDA graphs capture).
void* current_stream(const at::Tensor& t) {
  return c10::impl::getDeviceGuardImpl(t.device().type())->getStream(t.device()).native_handle();
}

// Device scratch of `bytes` for a launcher's split reduction, or none (null) when it needs
// none. Freed on return while the kernels may still run: the caching allocator hands the
// block out again only in stream order.
struct Workspace {
  at::Tensor bytes;
  Workspace(int64_t size, const at::Tensor& like)
      : bytes(size > 0 ? at::empty({size}, like.options().dtype(at::kByte)) : at::Tensor()) {}
  void* get() { return bytes.defined() ? bytes.mutable_data_ptr() : nullptr; }
};

void check_launch(const char* error, const char* op) {
  TORCH_CHECK(error == nullptr, "dsconv::", op, ": CUDA kernel launch failed: ", error);
}

const void* data_or_null(const at::Tensor& t) { return t.defined() ? t.const_data_ptr() : nullptr; }

at::Tensor depthwise_cuda(const at::Tensor& x, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                          at::IntArrayRef padding, at::IntArrayRef dilation,
                          std::optional<c10::string_view> activation) {
  const c10::DeviceGuard guard(x.device());
  const Activation act = check_activation(activation, "activation");
  const DepthwiseCall call =
      prepare_depthwise(x, weight, bias, "weight", "bias", stride, padding, dilation, act);
  const DwShape& s = call.shape;
  at::Tensor y = at::empty({s.batch, s.out_channels(), s.out_h, s.out_w},
                           call.x.options().memory_format(memory_format(s.layout)));
  check_launch(cuda::depthwise_forward(cuda_dtype(y), s, call.x.const_data_ptr(),
                                       call.weight.const_data_ptr(), data_or_null(call.bias),
                                       y.mutable_data_ptr(), current_stream(y)),
               "depthwise");
  return y;
}

at::Tensor depthwise_backward_input_cuda(const at::Tensor& grad_out, const at::Tensor& weight,
                                         at::IntArrayRef input_size, at::IntArrayRef stride,
                                         at::IntArrayRef padding, at::IntArrayRef dilation) {
  const c10::DeviceGuard guard(grad_out.device());
  const Geometry g =
      check_dw_backward_input(grad_out, weight, input_size, stride, padding, dilation);
  const Layout layout = layout_of(grad_out);
  const DwShape s = make_dw_shape(input_size[0], input_size[1],
                                  dw_multiplier(input_size[1], weight.size(0)), input_size[2],
                                  input_size[3], g, Activation::none, layout);
  at::Tensor gx = at::empty(input_size, grad_out.options().memory_format(memory_format(layout)));
  if (gx.numel() == 0) return gx;
  const at::Tensor gy = grad_out.contiguous(memory_format(layout));
  const at::Tensor w = weight.contiguous();
  check_launch(cuda::depthwise_backward_input(cuda_dtype(gx), s, gy.const_data_ptr(),
                                              w.const_data_ptr(), gx.mutable_data_ptr(),
                                              current_stream(gx)),
               "depthwise_backward_input");
  return gx;
}

at::Tensor depthwise_backward_weight_cuda(const at::Tensor& grad_out, const at::Tensor& x,
                                          at::IntArrayRef weight_size, at::IntArrayRef stride,
                                          at::IntArrayRef padding, at::IntArrayRef dilation) {
  const c10::DeviceGuard guard(x.device());
  const Geometry g = check_dw_backward_weight(grad_out, x, weight_size, stride, padding, dilation);
  if (grad_out.numel() == 0 || x.numel() == 0) return at::zeros(weight_size, x.options());
  const Layout layout = layout_of(x);
  const DwShape s = make_dw_shape(x.size(0), x.size(1), dw_multiplier(x.size(1), weight_size[0]),
                                  x.size(2), x.size(3), g, Activation::none, layout);
  const at::Tensor xc = x.contiguous(memory_format(layout));
  const at::Tensor gy = grad_out.contiguous(memory_format(layout));
  at::Tensor gw = at::empty(weight_size, x.options());  // contiguous [C*M, 1, kh, kw]
  const cuda::DType dtype = cuda_dtype(gw);
  Workspace workspace(cuda::depthwise_backward_weight_workspace(dtype, s), x);
  check_launch(cuda::depthwise_backward_weight(dtype, s, gy.const_data_ptr(), xc.const_data_ptr(),
                                               gw.mutable_data_ptr(), workspace.get(),
                                               current_stream(gw)),
               "depthwise_backward_weight");
  return gw;
}

// y = act(W . x + b); `transposed`: weight is [C_in, C_out, 1, 1] of the forward op whose
// input gradient this computes (y = W^T . x).
at::Tensor pointwise_forward_cuda(const at::Tensor& x, const at::Tensor& weight,
                                  const at::Tensor& bias, Activation act, bool transposed) {
  const Layout layout = layout_of(x);
  const int64_t out_channels = transposed ? weight.size(1) : weight.size(0);
  const PwShape s = make_pw_shape(x.size(0), x.size(1), out_channels, x.size(2), x.size(3), act,
                                  layout);
  at::Tensor y = at::empty({s.batch, out_channels, x.size(2), x.size(3)},
                           x.options().memory_format(memory_format(layout)));
  if (y.numel() == 0) return y;
  const at::Tensor xc = x.contiguous(memory_format(layout));
  const at::Tensor w = weight.contiguous();
  const at::Tensor b = bias.defined() ? bias.contiguous() : at::Tensor();
  check_launch(cuda::pointwise_forward(cuda_dtype(y), s, xc.const_data_ptr(), w.const_data_ptr(),
                                       transposed, data_or_null(b), y.mutable_data_ptr(),
                                       current_stream(y)),
               "pointwise");
  return y;
}

// The residual is added by ATen after the kernel: a second pass, not fused on CUDA.
at::Tensor pointwise_cuda(const at::Tensor& x, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias,
                          std::optional<c10::string_view> activation,
                          const std::optional<at::Tensor>& residual) {
  const c10::DeviceGuard guard(x.device());
  const Activation act = check_activation(activation, "activation");
  check_pw_forward(x, weight, bias, residual);
  at::Tensor y = pointwise_forward_cuda(x, weight, contiguous_or_undefined(bias), act, false);
  if (residual.has_value() && residual->defined() && y.numel() > 0) y.add_(*residual);
  return y;
}

at::Tensor pointwise_backward_input_cuda(const at::Tensor& grad_out, const at::Tensor& weight) {
  const c10::DeviceGuard guard(grad_out.device());
  check_pw_backward_input(grad_out, weight);
  return pointwise_forward_cuda(grad_out, weight, at::Tensor(), Activation::none, true);
}

at::Tensor pointwise_backward_weight_cuda(const at::Tensor& grad_out, const at::Tensor& x) {
  const c10::DeviceGuard guard(x.device());
  check_pw_backward_weight(grad_out, x);
  const int64_t out_channels = grad_out.size(1), in_channels = x.size(1);
  if (grad_out.numel() == 0 || x.numel() == 0) {
    return at::zeros({out_channels, in_channels, 1, 1}, x.options());
  }
  // Either layout runs coalesced; both operands take x's.
  const Layout layout = layout_of(x);
  const PwShape s = make_pw_shape(x.size(0), in_channels, out_channels, x.size(2), x.size(3),
                                  Activation::none, layout);
  const at::Tensor xc = x.contiguous(memory_format(layout));
  const at::Tensor gy = grad_out.contiguous(memory_format(layout));
  at::Tensor gw = at::empty({out_channels, in_channels, 1, 1}, x.options());
  const cuda::DType dtype = cuda_dtype(gw);
  Workspace workspace(cuda::pointwise_backward_weight_workspace(dtype, s), x);
  check_launch(cuda::pointwise_backward_weight(dtype, s, gy.const_data_ptr(), xc.const_data_ptr(),
                                               gw.mutable_data_ptr(), workspace.get(),
                                               current_stream(gw)),
               "pointwise_backward_weight");
  return gw;
}

// The depthwise op, then the pointwise op on its result. The fused kernel
// (cuda::separable_forward, which keeps the depthwise tile in shared memory) measured
// 2-14x slower than ATen's two convolutions on an H200, and 2.1x slower (geomean over the
// MobileNet layers, 183 of 188 rows) than this pair of our kernels; it is not routed until
// it is tuned. The checks run first so that errors name separable's arguments.
at::Tensor separable_cuda(const at::Tensor& x, const at::Tensor& dw_weight,
                          const at::Tensor& pw_weight, const std::optional<at::Tensor>& dw_bias,
                          const std::optional<at::Tensor>& pw_bias, at::IntArrayRef stride,
                          at::IntArrayRef padding, at::IntArrayRef dilation,
                          std::optional<c10::string_view> dw_activation,
                          std::optional<c10::string_view> pw_activation) {
  const c10::DeviceGuard guard(x.device());
  const SeparableCall c = prepare_separable(x, dw_weight, pw_weight, dw_bias, pw_bias, stride,
                                            padding, dilation, dw_activation, pw_activation);
  const DwShape& dw = c.dw.shape;
  if (dw.batch * c.pw.out_channels * dw.out_h * dw.out_w == 0) return empty_separable_output(c);
  const auto& ops = Ops::get();
  const at::Tensor mid = ops.depthwise.call(c.dw.x, c.dw.weight, dw_bias, stride, padding,
                                            dilation, dw_activation);
  return ops.pointwise.call(mid, c.pw_weight, pw_bias, pw_activation, OptTensor());
}

}  // namespace

TORCH_LIBRARY_IMPL(dsconv, CUDA, m) {
  m.impl("depthwise", &depthwise_cuda);
  m.impl("depthwise_backward_input", &depthwise_backward_input_cuda);
  m.impl("depthwise_backward_weight", &depthwise_backward_weight_cuda);
  m.impl("pointwise", &pointwise_cuda);
  m.impl("pointwise_backward_input", &pointwise_backward_input_cuda);
  m.impl("pointwise_backward_weight", &pointwise_backward_weight_cuda);
  m.impl("separable", &separable_cuda);
  // No fused CUDA kernel yet: the chain of the CUDA ops above.
  m.impl("inverted_residual", &inverted_residual_composite);
  m.impl("squeeze_excite", &squeeze_excite_composite);
  m.impl("global_avg_pool", &global_avg_pool_composite);  // ATen's mean
  m.impl("conv2d", &conv2d_composite);
}

}  // namespace dsconv::ops
