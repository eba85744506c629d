// The AVX-512 kernel set: instances of the templates in csrc/cpu/simd, compiled for
// AVX-512 only here (the rest of the library stays baseline x86-64). Registered in
// csrc/cpu/kernels.def; dispatch runs them only on CPUs that have AVX-512 F, BW, VL and DQ.
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
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")

#include "vec_avx512.h"
#include "../simd/kernel_set.h"

namespace dsconv {

// NHWC 3x3 and 5x5 in row groups of 8 pixels (simd/depthwise.h: 32 registers). The
// depthwise op, Xeon, 1 thread, against the pixel-by-pixel loop: 5x5 1.5-2.3x, 3x3 at
// 7x7-14x14 1.05-1.45x, 3x3 at 28x28-112x112 (memory-bound) 0.96-1.05x, 32 channels at
// 112x112 1.30x; whole networks 1.015x (V2), 1.02x (V3-Large).
using DwAvx512 = simd::Depthwise<x86::Avx512, 8, 2>;
// 8x32, 14x32 from K = 384 on (28 of the 32 vector registers accumulate), 12x16 for
// C_out <= 16 (simd/pointwise.h).
using Gemm8x32Avx512 = simd::Pointwise<x86::Avx512, 8, 2, 8, 2, 14, 12>;

// 8x32; 16x16 for C_out <= 16 (MobileNetV3's first layer, 224x224: 1.36x the 8x32 tile,
// half of whose FMAs computed zero channels there).
using ConvAvx512 = simd::Conv<x86::Avx512, 8, 2, 16>;

DSCONV_SIMD_KERNELS(avx512, DwAvx512, Gemm8x32Avx512, 8x32, x86::Avx512, ConvAvx512, 8x32)
DSCONV_SIMD_BACKWARD_KERNELS(avx512, simd::DepthwiseBackward<x86::Avx512>)

}  // namespace dsconv

#pragma GCC pop_options
#endif  // __x86_64__
