// A chain of dsconv op calls run from C++: the eager forward of
// dsconv_ext.nn.FusedSequential. Python lists the calls once (op name, the arguments its
// module's forward passes, and which of them are earlier results); a forward is then one
// call that runs them back to back without returning to the interpreter between ops. On a
// batch-1 network that round trip costs far more than its hot time: the interpreter's
// objects are cold after each op's weights have swept the caches (MobileNet V1/V2/V3-Large
// on one thread: 0.4-0.8 ms, 5-7% of the forward, outside the op calls). Each call is the
// dispatcher call torch.ops makes (boxed, its arguments checked against the schema when
// the chain is built), so autograd and the device and Python-dispatch keys apply as op by
// op. A result is released after its last use, as eager frees it.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/jit/python/pybind_utils.h>
#include <torch/python.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "op_chain.h"

namespace dsconv::ops {
namespace {

namespace py = pybind11;

class OpChain {
 public:
  // calls: (op name, arguments, {argument index: result index}); result 0 is the chain's
  // input, result i + 1 call i's output. Arguments at those indices are placeholders.
  explicit OpChain(const py::list& calls) {
    for (const py::handle item : calls) {
      const auto [name, args, refs] = item.cast<std::tuple<std::string, py::tuple, py::dict>>();
      const c10::OperatorHandle op =
          c10::Dispatcher::singleton().findSchemaOrThrow(("dsconv::" + name).c_str(), "");
      const auto& params = op.schema().arguments();
      if (args.size() != params.size()) {
        throw py::value_error("OpChain: dsconv::" + name + " takes " +
                              std::to_string(params.size()) + " arguments, got " +
                              std::to_string(args.size()));
      }
      Call call{op, {}, {}, {}};
      for (size_t i = 0; i < params.size(); ++i) {
        const py::object index = py::int_(i);
        if (refs.contains(index)) {
          const int64_t r = refs[index].cast<int64_t>();
          if (r < 0 || r > static_cast<int64_t>(calls_.size())) {
            throw py::value_error("OpChain: call " + std::to_string(calls_.size()) +
                                  " uses result " + std::to_string(r) + ", not yet computed");
          }
          call.results.emplace_back(i, r);
          call.args.emplace_back();
        } else {
          call.args.push_back(torch::jit::toIValue(args[i], params[i].type()));
        }
      }
      calls_.push_back(std::move(call));
    }
    if (calls_.empty()) throw py::value_error("OpChain: no calls");
    // Each result is released by the call that uses it last (the last result is returned).
    // (A result no call uses goes right after the call that made it.)
    std::vector<size_t> last_use(calls_.size() + 1, 0);
    for (size_t r = 1; r <= calls_.size(); ++r) last_use[r] = r - 1;
    for (size_t c = 0; c < calls_.size(); ++c) {
      for (const auto& [arg, r] : calls_[c].results) last_use[r] = std::max(last_use[r], c);
    }
    for (size_t r = 0; r < calls_.size(); ++r) {
      calls_[last_use[r]].release.push_back(static_cast<int64_t>(r));
    }
  }

  at::Tensor run(const at::Tensor& x) const {
    std::vector<at::Tensor> results(calls_.size() + 1);
    results[0] = x;
    for (size_t c = 0; c < calls_.size(); ++c) {
      const Call& call = calls_[c];
      torch::jit::Stack stack(call.args);
      for (const auto& [arg, r] : call.results) stack[arg] = results[r];
      call.op.callBoxed(stack);
      results[c + 1] = std::move(stack[0]).toTensor();
      for (const int64_t r : call.release) results[r].reset();
    }
    return std::move(results.back());
  }

  size_t size() const { return calls_.size(); }

 private:
  struct Call {
    c10::OperatorHandle op;
    std::vector<c10::IValue> args;                       // placeholders where results go
    std::vector<std::pair<size_t, int64_t>> results;     // (argument index, result index)
    std::vector<int64_t> release;                        // results last used by this call
  };
  std::vector<Call> calls_;
};

}  // namespace

void bind_op_chain(py::module_& m) {
  py::class_<OpChain>(m, "OpChain",
                      "dsconv op calls run back to back from C++ (dsconv_ext.nn.FusedSequential).")
      .def(py::init<const py::list&>(), py::arg("calls"))
      .def("run", [](const OpChain& chain, const at::Tensor& x) {
        py::gil_scoped_release no_gil;
        return chain.run(x);
      }, py::arg("x"))
      .def("__len__", &OpChain::size);
}

}  // namespace dsconv::ops
