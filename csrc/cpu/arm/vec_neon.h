// 4-lane float vector for AArch64 NEON (the architecture's baseline: no target pragma and
// no run-time check). Same API as the x86 vectors (csrc/cpu/x86/vec_avx2.h), so the kernel
// templates in csrc/cpu/simd serve ARM unchanged. NEON has no masked loads/stores or
// gathers: masked loads and stores go through a small stack buffer (never touching memory
// outside the masked lanes), gathers are four lane inserts.
#pragma once
#include <arm_neon.h>

#include <cstdint>

namespace dsconv::arm {

struct Neon {
  using reg = float32x4_t;
  static constexpr int N = 4;
  static constexpr const char* name = "neon";

  // Lanes lo <= i < hi.
  struct Mask {
    int lo, hi;
  };
  static Mask mask(int n) { return {0, n < 0 ? 0 : n > N ? N : n}; }  // the first n lanes
  static Mask mask_range(int lo, int hi) { return {lo < 0 ? 0 : lo, hi > N ? N : hi}; }

  static reg zero() { return vdupq_n_f32(0.f); }
  static reg set1(float v) { return vdupq_n_f32(v); }
  static reg load(const float* p) { return vld1q_f32(p); }
  static reg load(const float* p, Mask k) {  // lanes outside the mask are zero
    float lanes[N] = {0.f, 0.f, 0.f, 0.f};
    for (int i = k.lo; i < k.hi; ++i) lanes[i] = p[i];
    return vld1q_f32(lanes);
  }
  static void store(float* p, reg v) { vst1q_f32(p, v); }
  static void store(float* p, reg v, Mask k) {
    float lanes[N];
    vst1q_f32(lanes, v);
    for (int i = k.lo; i < k.hi; ++i) p[i] = lanes[i];
  }
  // Lanes i*stride, i < 4 (or those in `k`, the rest zero).
  static reg gather(const float* p, int64_t stride) {
    reg v = vdupq_n_f32(p[0]);
    v = vsetq_lane_f32(p[stride], v, 1);
    v = vsetq_lane_f32(p[2 * stride], v, 2);
    return vsetq_lane_f32(p[3 * stride], v, 3);
  }
  static reg gather(const float* p, int64_t stride, Mask k) {
    float lanes[N] = {0.f, 0.f, 0.f, 0.f};
    for (int i = k.lo; i < k.hi; ++i) lanes[i] = p[i * stride];
    return vld1q_f32(lanes);
  }
  // Lanes a[0], a[2], b[0], b[2] and a[1], a[3], b[1], b[3].
  static reg even_lanes(reg a, reg b) { return vuzp1q_f32(a, b); }
  static reg odd_lanes(reg a, reg b) { return vuzp2q_f32(a, b); }
  // Lanes p[0], p[2], p[4], p[6]; reads p[0 .. 8) (a de-interleaving load).
  static reg load_even(const float* p) { return vld2q_f32(p).val[0]; }
  static reg fma(reg a, reg b, reg c) { return vfmaq_f32(c, a, b); }  // a*b + c
  // out[i] = the sum of the lanes of the i-th argument, four at once.
  static void sum4(reg a, reg b, reg c, reg d, float* out) {
    vst1q_f32(out, vpaddq_f32(vpaddq_f32(a, b), vpaddq_f32(c, d)));
  }
  static reg add(reg a, reg b) { return vaddq_f32(a, b); }
  static reg mul(reg a, reg b) { return vmulq_f32(a, b); }
  static reg div(reg a, reg b) { return vdivq_f32(a, b); }
  static reg bit_and(reg a, reg b) {
    return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(a), vreinterpretq_u32_f32(b)));
  }
  static reg max(reg a, reg b) { return vmaxq_f32(a, b); }
  static reg min(reg a, reg b) { return vminq_f32(a, b); }
};

}  // namespace dsconv::arm
