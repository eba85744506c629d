// The cases the native tests run, derived from a registry entry: each entry is tested on
// the geometries it claims (its fixed kernel size, stride, dilation, multiplier, layout;
// "any" fields vary), over a grid in the manner of XNNPACK's and ncnn's tests: every
// channel count 1..33 against every width 1..17, then every geometry with each padding
// mode, odd heights, each activation, batch 1 and 2, and a few large pointwise cases that
// cross the GEMM's K and pixel blocks.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "../../csrc/cpu/dispatch.h"
#include "harness.h"

namespace dsconv::native {

// One call of one op: its shape, the sizes of its operands, and how the output splits
// into the units (rows, pixels or channels) a kernel call covers.
//   operand a: x (forward) or grad-output (backward); operand b: the weight, or x for
//   the weight gradients; operand c: the bias (forward ops, optional).
struct Problem {
  Op op;
  DwShape dw{};
  PwShape pw{};
  ConvShape conv{};
  bool bias = false;
  int64_t a_size = 0, b_size = 0, c_size = 0, out_size = 0;
  int64_t images = 1;       // kernel calls are per image (1: the kernel sums the batch)
  int64_t units = 0;        // units per image
  int64_t unit_stride = 0;  // elements between consecutive units in the output
  int64_t image_stride = 0;
  std::string text;

  bool is_dw() const {
    return op == Op::dw_forward || op == Op::dw_backward_input || op == Op::dw_backward_weight;
  }
  KernelQuery query(DType dtype) const {
    KernelQuery q{op, dtype, is_dw() ? dw.layout : op == Op::conv_forward ? conv.layout : pw.layout};
    if (op == Op::conv_forward) {
      q.kernel_h = conv.kernel_h, q.kernel_w = conv.kernel_w, q.stride_h = conv.stride_h;
      q.stride_w = conv.stride_w, q.dilation_h = conv.dilation_h, q.dilation_w = conv.dilation_w;
    }
    if (is_dw()) {
      q.kernel_h = dw.kernel_h, q.kernel_w = dw.kernel_w, q.stride_h = dw.stride_h;
      q.stride_w = dw.stride_w, q.dilation_h = dw.dilation_h, q.dilation_w = dw.dilation_w;
      q.multiplier = dw.multiplier;
    }
    return q;
  }
  // The image and unit of output element i.
  int64_t image_of(int64_t i) const { return images == 1 ? 0 : i / image_stride; }
  int64_t unit_of(int64_t i) const { return i % (unit_stride * units) / unit_stride; }
};

std::vector<Problem> problems_for(const KernelEntry& entry);
const char* activation_label(Activation act);

}  // namespace dsconv::native
