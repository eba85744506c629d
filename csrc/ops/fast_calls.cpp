// Direct calls of the dsconv ops for the nn modules' eager forward: the typed dispatcher
// handle, called with the arguments pybind11 converted, instead of torch.ops' boxed path
// (schema matching, an IValue stack). Everything past the Python boundary is the same
// dispatcher call: autograd, device and Python-dispatch keys apply as through torch.ops.
// dsconv_ext.functional._calling says when the modules and functions use them, and what
// they save.
#include <torch/python.h>

#include <optional>
#include <string>
#include <vector>

#include "fast_calls.h"
#include "gemv.h"
#include "op_handles.h"

namespace dsconv::ops {
namespace {

namespace py = pybind11;
using Ints = std::vector<int64_t>;
using OptStr = std::optional<std::string>;

OptString view(const OptStr& s) { return s ? OptString(*s) : std::nullopt; }

// dsconv_ext.functional.linear's batch-1 path: x [*, K] with at most kGemvMaxPixels rows in
// all, as pointwise on [rows, K, 1, 1] images (its matrix-vector kernels), the output back
// to [*, N]. nullopt for any other call (the caller runs its general path): done here
// rather than in Python, whose reshapes and checks cost more than the op on a cold cache.
std::optional<at::Tensor> linear_batch1(const at::Tensor& x, const at::Tensor& w,
                                        const OptTensor& b, const OptStr& act) {
  if (!x.device().is_cpu() || (x.scalar_type() != at::kFloat && x.scalar_type() != at::kDouble) ||
      x.dim() < 1 || w.dim() != 2) {
    return std::nullopt;
  }
  const int64_t k = x.size(-1);
  if (k == 0 || w.size(1) != k) return std::nullopt;
  const int64_t rows = x.numel() / k;
  if (rows == 0 || rows > kGemvMaxPixels) return std::nullopt;
  at::Tensor y = Ops::get().pointwise.call(x.reshape({rows, k, 1, 1}),
                                           w.reshape({w.size(0), k, 1, 1}), b, view(act),
                                           std::nullopt);
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end() - 1);
  shape.push_back(w.size(0));
  return y.reshape(shape);
}

}  // namespace

void bind_fast_calls(py::module_& m) {
  m.def("depthwise_call", [](const at::Tensor& x, const at::Tensor& w, const OptTensor& b,
                             const Ints& stride, const Ints& padding, const Ints& dilation,
                             const OptStr& act) {
    py::gil_scoped_release no_gil;
    return Ops::get().depthwise.call(x, w, b, stride, padding, dilation, view(act));
  });
  m.def("pointwise_call", [](const at::Tensor& x, const at::Tensor& w, const OptTensor& b,
                             const OptStr& act, const OptTensor& residual) {
    py::gil_scoped_release no_gil;
    return Ops::get().pointwise.call(x, w, b, view(act), residual);
  }, py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("activation"),
     py::arg("residual") = py::none());
  m.def("linear_call", [](const at::Tensor& x, const at::Tensor& w, const OptTensor& b,
                          const OptStr& act) {
    py::gil_scoped_release no_gil;
    return linear_batch1(x, w, b, act);
  });
  m.def("separable_call", [](const at::Tensor& x, const at::Tensor& dw, const at::Tensor& pw,
                             const OptTensor& db, const OptTensor& pb, const Ints& stride,
                             const Ints& padding, const Ints& dilation, const OptStr& dw_act,
                             const OptStr& pw_act) {
    py::gil_scoped_release no_gil;
    return Ops::get().separable.call(x, dw, pw, db, pb, stride, padding, dilation, view(dw_act),
                                     view(pw_act));
  });
  m.def("inverted_residual_call",
        [](const at::Tensor& x, const OptTensor& ew, const at::Tensor& dw, const OptTensor& pw,
           const OptTensor& eb, const OptTensor& db, const OptTensor& pb, const Ints& stride,
           const Ints& padding, const Ints& dilation, const OptStr& e_act, const OptStr& d_act,
           const OptStr& p_act, bool residual) {
          py::gil_scoped_release no_gil;
          return Ops::get().inverted_residual.call(x, ew, dw, pw, eb, db, pb, stride, padding,
                                                   dilation, view(e_act), view(d_act),
                                                   view(p_act), residual);
        });
  m.def("conv2d_call", [](const at::Tensor& x, const at::Tensor& w, const OptTensor& b,
                          const Ints& stride, const Ints& padding, const Ints& dilation,
                          const OptStr& act) {
    py::gil_scoped_release no_gil;
    return Ops::get().conv2d.call(x, w, b, stride, padding, dilation, view(act));
  });
  m.def("global_avg_pool_call", [](const at::Tensor& x) {
    py::gil_scoped_release no_gil;
    return Ops::get().global_avg_pool.call(x);
  });
  m.def("squeeze_excite_call",
        [](const at::Tensor& x, const at::Tensor& rw, const OptTensor& rb, const at::Tensor& ew,
           const OptTensor& eb, const OptStr& act, const std::string& gate) {
          py::gil_scoped_release no_gil;
          return Ops::get().squeeze_excite.call(x, rw, rb, ew, eb, view(act), gate);
        });
}

}  // namespace dsconv::ops
