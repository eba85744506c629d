// The NEON kernel set: instances of the templates in csrc/cpu/simd for AArch64, where NEON
// is the baseline (compiled with the default flags; no run-time check). Registered in
// csrc/cpu/kernels.def. Tiles are sized for 32 128-bit registers:
//  - pointwise GEMM 8x8: 8 rows x 2 vectors = 16 accumulators, 2 B vectors, 1 broadcast;
//  - depthwise NHWC/NCHW 3x3 and 5x5 keep every tap in a register (25 + accumulators fit,
//    where AVX2's 16 registers spill the 5x5 taps).
#if defined(__aarch64__)
#include "vec_neon.h"
#include "../simd/kernel_set.h"

namespace dsconv {

using DwNeon = simd::Depthwise<arm::Neon>;
using Gemm8x8Neon = simd::Pointwise<arm::Neon, 8, 2>;

using ConvNeon = simd::Conv<arm::Neon, 8, 2>;

DSCONV_SIMD_KERNELS(neon, DwNeon, Gemm8x8Neon, 8x8, arm::Neon, ConvNeon, 8x8)
DSCONV_SIMD_BACKWARD_KERNELS(neon, simd::DepthwiseBackward<arm::Neon>)

}  // namespace dsconv

#endif  // __aarch64__
