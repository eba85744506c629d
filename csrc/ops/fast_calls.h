// Direct Python bindings of the ops' dispatcher calls (fast_calls.cpp), added to the
// dsconv_ext._C module.
#pragma once
#include <pybind11/pybind11.h>

namespace dsconv::ops {

void bind_fast_calls(pybind11::module_& m);

}  // namespace dsconv::ops
