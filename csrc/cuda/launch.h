// Host entry points of the CUDA kernels. Plain pointers, the CPU kernels' shape structs
// (csrc/cpu/shapes.h) and an opaque stream, so this header needs neither torch nor the
// CUDA headers: the torch glue (csrc/ops/cuda_ops.cpp) includes it from host C++.
//
// Conventions of every launcher:
// - tensors are dense in the shape's layout, with the shape's element strides; weights
//   are contiguous in ATen's layout ([C*M, kh, kw] depthwise, [C_out, C_in] pointwise);
//   bias may be null.
// - the work is enqueued on `stream` (a cudaStream_t) of the current device; nothing
//   synchronizes. The return value is null on success, else CUDA's error string.
// - f16/bf16 accumulate in f32, f32 in f32, f64 in f64.
#pragma once
#include <cstdint>

#include "../cpu/shapes.h"

namespace dsconv::cuda {

enum class DType : int { f32, f64, f16, bf16 };

// y = act(depthwise(x) + bias).
const char* depthwise_forward(DType dtype, const DwShape& s, const void* x, const void* weight,
                              const void* bias, void* y, void* stream);

// gx = dL/dx from gy = dL/d(pre-activation output).
const char* depthwise_backward_input(DType dtype, const DwShape& s, const void* gy,
                                     const void* weight, void* gx, void* stream);

// Bytes of scratch depthwise_backward_weight needs for this shape (its deterministic
// split reduction over chunks of pixels); the caller allocates them on the device.
int64_t depthwise_backward_weight_workspace(DType dtype, const DwShape& s);
// gw [C*M, kh, kw] = sum over the batch and output pixels; deterministic (no atomics).
const char* depthwise_backward_weight(DType dtype, const DwShape& s, const void* gy,
                                      const void* x, void* gw, void* workspace, void* stream);

// y = act(W . x + bias) per pixel. `transposed_weight`: the weight is given as
// [C_in, C_out] (so W^T . gy, the input gradient, needs no transposed copy).
const char* pointwise_forward(DType dtype, const PwShape& s, const void* x, const void* weight,
                              bool transposed_weight, const void* bias, void* y, void* stream);

// Bytes of scratch pointwise_backward_weight needs for this shape (its deterministic
// split reduction); the caller allocates them on the device.
int64_t pointwise_backward_weight_workspace(DType dtype, const PwShape& s);

// gw [C_out, C_in] = sum over images and pixels of gy . x^T; deterministic.
const char* pointwise_backward_weight(DType dtype, const PwShape& s, const void* gy,
                                      const void* x, void* gw, void* workspace, void* stream);

// y = pw_act(W_pw . dw_act(depthwise(x) + dw_bias) + pw_bias): the depthwise result is
// computed tile by tile in shared memory and never written to global memory. Tested, but not
// what the separable op runs: on an H200 it was slower than depthwise_forward followed by
// pointwise_forward (csrc/ops/cuda_ops.cpp).
// dw.activation and pw.activation are the two stages' activations; pw describes the
// output (pixels = out_h * out_w, in_channels = C*M).
const char* separable_forward(DType dtype, const DwShape& dw, const PwShape& pw, const void* x,
                              const void* dw_weight, const void* dw_bias, const void* pw_weight,
                              const void* pw_bias, void* y, void* stream);

}  // namespace dsconv::cuda
