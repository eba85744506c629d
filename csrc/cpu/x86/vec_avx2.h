// 8-lane float vector for AVX2+FMA. Include only from a file compiled for that target
// (kernels_avx2.cpp); the kernel templates in csrc/cpu/simd are written against this API.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace dsconv::x86 {

struct Avx2 {
  using reg = __m256;
  static constexpr int N = 8;
  static constexpr const char* name = "avx2";

  // Lane mask with the first n lanes set (n <= 0: none, n >= 8: all).
  struct Mask {
    __m256i m;
  };
  static Mask mask(int n) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return {_mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes)};
  }

  // Lanes lo <= i < hi.
  static Mask mask_range(int lo, int hi) { return {_mm256_andnot_si256(mask(lo).m, mask(hi).m)}; }

  static reg zero() { return _mm256_setzero_ps(); }
  static reg set1(float v) { return _mm256_set1_ps(v); }
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static reg load(const float* p, Mask k) { return _mm256_maskload_ps(p, k.m); }
  static void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static void store(float* p, reg v, Mask k) { _mm256_maskstore_ps(p, k.m, v); }
  // Lanes i*stride, i < 8 (or the first `k` of them).
  static reg gather(const float* p, int64_t stride) {
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                           _mm256_set1_epi32(static_cast<int>(stride)));
    return _mm256_i32gather_ps(p, idx, 4);
  }
  static reg gather(const float* p, int64_t stride, Mask k) {
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                           _mm256_set1_epi32(static_cast<int>(stride)));
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), p, idx, _mm256_castsi256_ps(k.m), 4);
  }
  // Lanes a[0], a[2], ..., a[6], b[0], b[2], ..., b[6].
  static reg even_lanes(reg a, reg b) {
    const __m256 pairs = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));  // a0 a2 b0 b2 a4 a6 b4 b6
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(pairs), _MM_SHUFFLE(3, 1, 2, 0)));
  }
  // Lanes a[1], a[3], ..., a[7], b[1], b[3], ..., b[7].
  static reg odd_lanes(reg a, reg b) {
    const __m256 pairs = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(pairs), _MM_SHUFFLE(3, 1, 2, 0)));
  }
  // Lanes p[0], p[2], ..., p[2N-2]; reads p[0 .. 2N).
  static reg load_even(const float* p) { return even_lanes(load(p), load(p + N)); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }  // a*b + c
  // out[i] = the sum of the lanes of the i-th argument, four at once.
  static void sum4(reg a, reg b, reg c, reg d, float* out) {
    const __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1)));
  }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg div(reg a, reg b) { return _mm256_div_ps(a, b); }
  static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static reg min(reg a, reg b) { return _mm256_min_ps(a, b); }
  static reg bit_and(reg a, reg b) { return _mm256_and_ps(a, b); }
};

}  // namespace dsconv::x86
