// dsconv_ext._C.OpChain: a list of dsconv op calls run back to back from C++
// (op_chain.cpp), the eager forward of dsconv_ext.nn.FusedSequential.
#pragma once
#include <pybind11/pybind11.h>

namespace dsconv::ops {

void bind_op_chain(pybind11::module_& m);

}  // namespace dsconv::ops
