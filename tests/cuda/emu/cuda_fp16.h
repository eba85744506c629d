// Emulated 16-bit float (see cuda_runtime.h here): float storage rounded to fp16 precision
// (round to nearest even on the mantissa; no subnormal/overflow handling: tests use
// values of moderate magnitude).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

inline float emu_round_mantissa(float v, int drop_bits) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  const uint32_t half = 1u << (drop_bits - 1), mask = (1u << drop_bits) - 1;
  const uint32_t lsb = (u >> drop_bits) & 1u;
  u = (u + half - 1 + lsb) & ~mask;
  std::memcpy(&v, &u, 4);
  return v;
}

struct __half {
  float v = 0;
};
inline float __half2float(__half h) { return h.v; }
inline __half __float2half_rn(float f) { return __half{emu_round_mantissa(f, 13)}; }
inline __half __float2half(float f) { return __float2half_rn(f); }
