// Typed handles of the dsconv ops, called through the dispatcher (so autograd records them
// where a caller runs with gradients, e.g. inside a differentiated backward pass).
#pragma once
#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>

namespace dsconv::ops {

using OptTensor = std::optional<at::Tensor>;
using OptString = std::optional<c10::string_view>;

using DepthwiseSig = at::Tensor(const at::Tensor&, const at::Tensor&, const OptTensor&,
                                at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, OptString);
using DwGradSig = at::Tensor(const at::Tensor&, const at::Tensor&, at::IntArrayRef,
                             at::IntArrayRef, at::IntArrayRef, at::IntArrayRef);
using PointwiseSig = at::Tensor(const at::Tensor&, const at::Tensor&, const OptTensor&, OptString,
                                const OptTensor&);
using PwGradSig = at::Tensor(const at::Tensor&, const at::Tensor&);
using SeparableSig = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                const OptTensor&, const OptTensor&, at::IntArrayRef,
                                at::IntArrayRef, at::IntArrayRef, OptString, OptString);
using InvertedResidualSig = at::Tensor(const at::Tensor&, const OptTensor&, const at::Tensor&,
                                       const OptTensor&, const OptTensor&, const OptTensor&,
                                       const OptTensor&, at::IntArrayRef, at::IntArrayRef,
                                       at::IntArrayRef, OptString, OptString, OptString, bool);
using SqueezeExciteSig = at::Tensor(const at::Tensor&, const at::Tensor&, const OptTensor&,
                                    const at::Tensor&, const OptTensor&, OptString,
                                    c10::string_view);

using GlobalAvgPoolSig = at::Tensor(const at::Tensor&);

using Conv2dSig = DepthwiseSig;  // the same argument list

template <typename Sig>
c10::TypedOperatorHandle<Sig> op_handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

struct Ops {
  c10::TypedOperatorHandle<DepthwiseSig> depthwise = op_handle<DepthwiseSig>("dsconv::depthwise");
  c10::TypedOperatorHandle<DwGradSig> dw_grad_input = op_handle<DwGradSig>("dsconv::depthwise_backward_input");
  c10::TypedOperatorHandle<DwGradSig> dw_grad_weight = op_handle<DwGradSig>("dsconv::depthwise_backward_weight");
  c10::TypedOperatorHandle<PointwiseSig> pointwise = op_handle<PointwiseSig>("dsconv::pointwise");
  c10::TypedOperatorHandle<PwGradSig> pw_grad_input = op_handle<PwGradSig>("dsconv::pointwise_backward_input");
  c10::TypedOperatorHandle<PwGradSig> pw_grad_weight = op_handle<PwGradSig>("dsconv::pointwise_backward_weight");
  c10::TypedOperatorHandle<SeparableSig> separable = op_handle<SeparableSig>("dsconv::separable");
  c10::TypedOperatorHandle<InvertedResidualSig> inverted_residual =
      op_handle<InvertedResidualSig>("dsconv::inverted_residual");
  c10::TypedOperatorHandle<SqueezeExciteSig> squeeze_excite =
      op_handle<SqueezeExciteSig>("dsconv::squeeze_excite");

  c10::TypedOperatorHandle<GlobalAvgPoolSig> global_avg_pool =
      op_handle<GlobalAvgPoolSig>("dsconv::global_avg_pool");

  c10::TypedOperatorHandle<Conv2dSig> conv2d = op_handle<Conv2dSig>("dsconv::conv2d");

  static const Ops& get() {  // after load: the schemas are registered by then
    static const Ops ops;
    return ops;
  }
};

}  // namespace dsconv::ops
