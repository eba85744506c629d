// The AVX2+FMA kernel set: instances of the templates in csrc/cpu/simd, compiled for
// AVX2 only here (the rest of the library stays baseline x86-64). Registered in
// csrc/cpu/kernels.def; dispatch runs them only on CPUs that have AVX2 and FMA.
#if defined(__x86_64__)
// Library headers first, outside the target region: inline functions they define must not
// be compiled for this ISA (the linker keeps one copy of each for the whole library).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../aligned_vector.h"
#include "../kernel_decls.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

#include "vec_avx2.h"
#include "../simd/kernel_set.h"

namespace dsconv {

// Pixel by pixel: row groups that fit 16 registers (8 pixels x 1 vector) measured
// 0.74-1.33x the pixel loop on the Xeon (slower at stride 2 and on 28x28-112x112 rows).
using DwAvx2 = simd::Depthwise<x86::Avx2>;
// 6x16, and 4x24 in NHWC where C_out is a multiple of 24 (simd/pointwise.h).
using Gemm6x16Avx2 = simd::Pointwise<x86::Avx2, 6, 2, 4, 3>;

// 4x16, not the GEMM's 6x16: at 6x16 (12 accumulators, 2 weight vectors and the broadcast
// in 16 registers) GCC spilled accumulators inside the conv's K loop. The 224x224 RGB first
// layer, 32 channels, 1 thread on Zen 3: 301 us as 4x16 against 341 us; 5x16 spilled too,
// 3x16 was as fast as 4x16.
using ConvAvx2 = simd::Conv<x86::Avx2, 4, 2>;

DSCONV_SIMD_KERNELS(avx2, DwAvx2, Gemm6x16Avx2, 6x16, x86::Avx2, ConvAvx2, 4x16)
DSCONV_SIMD_BACKWARD_KERNELS(avx2, simd::DepthwiseBackward<x86::Avx2>)

}  // namespace dsconv

#pragma GCC pop_options
#endif  // __x86_64__
