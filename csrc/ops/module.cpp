// The dsconv_ext._C Python module: kernel-set control and introspection. The ops
// themselves are reached through torch.ops.dsconv (registered when this library loads).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "../cpu/activation.h"
#include "../cpu/dispatch.h"
#include "checks.h"
#include "fast_calls.h"
#include "gemv.h"
#include "op_chain.h"
#include "packed_weight_cache.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "dsconv_ext native module";
  m.def("cpu_capability", [] { return std::string(dsconv::isa_name(dsconv::active_isa())); },
        "The kernel set in use: 'avx512', 'avx2', 'neon' or 'scalar'.");
  m.def("best_cpu_capability", [] { return std::string(dsconv::isa_name(dsconv::best_isa())); });
  m.def("supported_cpu_capabilities", [] { return dsconv::supported_isas(); });
  m.def("set_cpu_capability", [](const std::string& name) {
    dsconv::Isa isa;
    if (!dsconv::isa_from_name(name, &isa)) throw py::value_error(dsconv::set_active_isa(name));
    const std::string error = dsconv::set_active_isa(name);
    if (!error.empty()) throw std::runtime_error(error);
  });
  m.def("last_kernels", &dsconv::last_kernels,
        "Kernels the last dsconv op called on this thread ran, joined with '+'.");
  m.def("activation_names", [] {
    int count = 0;
    const char* const* names = dsconv::activation_names(&count);
    return std::vector<std::string>(names, names + count);
  });
  m.def("gate_names", [] {
    int count = 0;
    const char* const* names = dsconv::gate_names(&count);
    return std::vector<std::string>(names, names + count);
  });
  m.def("supported_dtypes", [](const std::string& device) {
    // Python names of the dtypes the ops accept on a device type ("cpu", "cuda"): the rule
    // of checks.h, asked by the converter.
    const c10::DeviceType type = c10::Device(device).type();
    std::vector<std::string> names;
    for (const auto& [dtype, name] : {std::pair{at::kFloat, "float32"}, {at::kDouble, "float64"},
                                      {at::kHalf, "float16"}, {at::kBFloat16, "bfloat16"}}) {
      if (dsconv::ops::dtype_supported(dtype, type)) names.emplace_back(name);
    }
    return names;
  }, "Names of the dtypes the ops accept for tensors of a device type ('cpu', 'cuda').");
  m.attr("gemv_max_pixels") = dsconv::ops::kGemvMaxPixels;  // dsconv_ext.linear's limit
  m.def("packed_cache_size", &dsconv::ops::packed_cache_size,
        "Entries in the packed-weight cache.");
  m.def("packed_cache_misses", &dsconv::ops::packed_cache_misses,
        "Weight packings done through the cache since load (each a cache miss).");
  m.def("packed_cache_clear", &dsconv::ops::packed_cache_clear);
  dsconv::ops::bind_fast_calls(m);
  dsconv::ops::bind_op_chain(m);
  m.def("kernel_registry", [] {
    int count = 0;
    const dsconv::KernelEntry* entries = dsconv::kernel_registry(&count);
    std::vector<py::dict> out;
    for (int i = 0; i < count; ++i) {
      const auto& e = entries[i];
      py::dict d;
      d["name"] = e.name;
      d["op"] = dsconv::op_name(e.op);
      d["isa"] = dsconv::isa_name(e.isa);
      d["dtype"] = e.dtype == dsconv::DType::f32 ? "float32" : "float64";
      d["layout"] = e.layout < 0 ? "any" : e.layout == static_cast<int>(dsconv::Layout::nhwc) ? "nhwc" : "nchw";
      d["kernel"] = py::make_tuple(e.kernel_h, e.kernel_w);  // 0: any
      d["stride"] = py::make_tuple(e.stride_h, e.stride_w);
      d["dilation"] = e.dilation;
      d["multiplier"] = e.multiplier;
      d["packed"] = e.pack != nullptr;
      out.push_back(d);
    }
    return out;
  });
}
