// 16-lane float vector for AVX-512 (F, BW, VL, DQ). Include only from a file compiled for
// that target (kernels_avx512.cpp). Same API as Avx2 in vec_avx2.h.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace dsconv::x86 {

struct Avx512 {
  using reg = __m512;
  static constexpr int N = 16;
  static constexpr const char* name = "avx512";

  struct Mask {
    __mmask16 m;
  };
  // First n lanes; n <= 0 gives none, n >= 16 all.
  static Mask mask(int n) {
    return {static_cast<__mmask16>(n >= 16 ? 0xFFFFu : n <= 0 ? 0u : (1u << n) - 1u)};
  }

  // Lanes lo <= i < hi.
  static Mask mask_range(int lo, int hi) { return {static_cast<__mmask16>(mask(hi).m & ~mask(lo).m)}; }

  static reg zero() { return _mm512_setzero_ps(); }
  static reg set1(float v) { return _mm512_set1_ps(v); }
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static reg load(const float* p, Mask k) { return _mm512_maskz_loadu_ps(k.m, p); }
  static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static void store(float* p, reg v, Mask k) { _mm512_mask_storeu_ps(p, k.m, v); }
  static reg gather(const float* p, int64_t stride) {
    const __m512i idx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(static_cast<int>(stride)));
    return _mm512_i32gather_ps(idx, p, 4);
  }
  static reg gather(const float* p, int64_t stride, Mask k) {
    const __m512i idx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(static_cast<int>(stride)));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), k.m, idx, p, 4);
  }
  // Lanes a[0], a[2], ..., a[14], b[0], b[2], ..., b[14].
  static reg even_lanes(reg a, reg b) {
    const __m512i evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(a, evens, b);
  }
  // Lanes a[1], a[3], ..., a[15], b[1], b[3], ..., b[15].
  static reg odd_lanes(reg a, reg b) {
    const __m512i odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    return _mm512_permutex2var_ps(a, odds, b);
  }
  // Lanes p[0], p[2], ..., p[2N-2]; reads p[0 .. 2N).
  static reg load_even(const float* p) { return even_lanes(load(p), load(p + N)); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  // out[i] = the sum of the lanes of the i-th argument, four at once.
  static __m256 half_sum(reg v) {  // 16 lanes to 8
    return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  }
  static void sum4(reg a, reg b, reg c, reg d, float* out) {
    auto half = half_sum;
    const __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(half(a), half(b)), _mm256_hadd_ps(half(c), half(d)));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1)));
  }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg div(reg a, reg b) { return _mm512_div_ps(a, b); }
  static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static reg min(reg a, reg b) { return _mm512_min_ps(a, b); }
  static reg bit_and(reg a, reg b) {
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
  }
};

}  // namespace dsconv::x86
