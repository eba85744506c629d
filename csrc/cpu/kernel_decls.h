// Declarations of every registered kernel, generated from kernels.def. The signature
// follows from the op column (see KernelTypes in shapes.h).
#pragma once
#include "shapes.h"

namespace dsconv {
namespace kernel_sig {
template <typename T> using dw_forward = typename KernelTypes<T>::DwForward;
template <typename T> using dw_backward_input = typename KernelTypes<T>::DwBackwardInput;
template <typename T> using dw_backward_weight = typename KernelTypes<T>::DwBackwardWeight;
template <typename T> using pw_forward = typename KernelTypes<T>::PwForward;
template <typename T> using conv_forward = typename KernelTypes<T>::ConvForward;
template <typename T> using pw_gemv = typename KernelTypes<T>::PwGemv;
template <typename T> using pw_backward_weight = typename KernelTypes<T>::PwBackwardWeight;
template <typename T> using dw = typename KernelTypes<T>::DwPack;
template <typename T> using pw = typename KernelTypes<T>::PwPack;
template <typename T> using conv = typename KernelTypes<T>::ConvPack;
using f32 = float;
using f64 = double;
// The function type of a kernel pointer type.
template <typename P> struct pointee;
template <typename R, typename... A> struct pointee<R (*)(A...)> { using type = R(A...); };
}  // namespace kernel_sig

#define DSCONV_KERNEL(name, pack, op, isa, dtype, layout, kh, kw, sh, sw, dil, mult) \
  extern kernel_sig::pointee<kernel_sig::op<kernel_sig::dtype>>::type name;
#define DSCONV_PACK(name, shape, dtype) \
  extern kernel_sig::pointee<kernel_sig::shape<kernel_sig::dtype>>::type name;
#include "kernels.def"
#undef DSCONV_KERNEL
#undef DSCONV_PACK

}  // namespace dsconv
