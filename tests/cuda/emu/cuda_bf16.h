// Emulated bfloat16 (see cuda_fp16.h here).
#pragma once
#include "cuda_fp16.h"

struct __nv_bfloat16 {
  float v = 0;
};
inline float __bfloat162float(__nv_bfloat16 h) { return h.v; }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16{emu_round_mantissa(f, 16)}; }
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
