/* The machine's own limits, measured once by the bench (bench/machine.py builds this file
 * with the system C compiler and loads it with ctypes):
 *   fma_gflops: independent FMA chains in registers on every thread, the vector width of the
 *               kernel set dsconv_ext runs (isa: 0 scalar, 1 avx2, 2 avx512, 3 neon);
 *   read_gbps:  every thread sums its own buffer of `bytes` again and again (cache levels by
 *               the buffer size, DRAM beyond the last level).
 * Each thread's rate is taken over its own CPU time (CLOCK_THREAD_CPUTIME_ID) and the rates
 * are summed: time slices lost to other processes on a shared machine do not lower the peak. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

#define CHAINS 12 /* more independent accumulators than FMA latency x FMA ports */

/* scalar: a*b+c, contracted to an FMA where the baseline ISA has one */
static float fma_scalar(long iters) {
  float acc[CHAINS];
  for (int i = 0; i < CHAINS; ++i) acc[i] = 1.0f + i * 1e-3f;
  const float a = 0.999999f, b = 1e-7f;
  for (long n = 0; n < iters; ++n)
#pragma GCC unroll 16
    for (int i = 0; i < CHAINS; ++i) acc[i] = acc[i] * a + b;
  float s = 0;
  for (int i = 0; i < CHAINS; ++i) s += acc[i];
  return s;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static float fma_avx2(long iters) {
  __m256 acc[CHAINS];
  for (int i = 0; i < CHAINS; ++i) acc[i] = _mm256_set1_ps(1.0f + i * 1e-3f);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (long n = 0; n < iters; ++n)
#pragma GCC unroll 16
    for (int i = 0; i < CHAINS; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  __m256 s = acc[0];
  for (int i = 1; i < CHAINS; ++i) s = _mm256_add_ps(s, acc[i]);
  return _mm256_cvtss_f32(s);
}

__attribute__((target("avx512f"))) static float fma_avx512(long iters) {
  __m512 acc[CHAINS];
  for (int i = 0; i < CHAINS; ++i) acc[i] = _mm512_set1_ps(1.0f + i * 1e-3f);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (long n = 0; n < iters; ++n)
#pragma GCC unroll 16
    for (int i = 0; i < CHAINS; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  __m512 s = acc[0];
  for (int i = 1; i < CHAINS; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2"))) static float read_avx2(const float* p, long n, int passes) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (int r = 0; r < passes; ++r)
    for (long i = 0; i + 32 <= n; i += 32) {
      s0 = _mm256_add_ps(s0, _mm256_loadu_ps(p + i));
      s1 = _mm256_add_ps(s1, _mm256_loadu_ps(p + i + 8));
      s2 = _mm256_add_ps(s2, _mm256_loadu_ps(p + i + 16));
      s3 = _mm256_add_ps(s3, _mm256_loadu_ps(p + i + 24));
    }
  return _mm256_cvtss_f32(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}
#endif

#if defined(__aarch64__)
static float fma_neon(long iters) {
  float32x4_t acc[CHAINS];
  for (int i = 0; i < CHAINS; ++i) acc[i] = vdupq_n_f32(1.0f + i * 1e-3f);
  const float32x4_t a = vdupq_n_f32(0.999999f), b = vdupq_n_f32(1e-7f);
  for (long n = 0; n < iters; ++n)
#pragma GCC unroll 16
    for (int i = 0; i < CHAINS; ++i) acc[i] = vfmaq_f32(b, acc[i], a);
  float32x4_t s = acc[0];
  for (int i = 1; i < CHAINS; ++i) s = vaddq_f32(s, acc[i]);
  return vaddvq_f32(s);
}
#endif

static float read_generic(const float* p, long n, int passes) {
  float s[8] = {0};
  for (int r = 0; r < passes; ++r)
    for (long i = 0; i + 8 <= n; i += 8)
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) s[j] += p[i + j];
  return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

static int lanes(int isa) { return isa == 1 ? 8 : isa == 2 ? 16 : isa == 3 ? 4 : 1; }

static float fma_run(int isa, long iters) {
#if defined(__x86_64__)
  if (isa == 1) return fma_avx2(iters);
  if (isa == 2) return fma_avx512(iters);
#endif
#if defined(__aarch64__)
  if (isa == 3) return fma_neon(iters);
#endif
  return fma_scalar(iters);
}

volatile float sink;

/* GFLOP/s of `threads` threads each running `iters` iterations of CHAINS vector FMAs. */
double fma_gflops(int isa, int threads, long iters) {
  double rate = 0;
#pragma omp parallel num_threads(threads) reduction(+ : rate)
  {
    double t0 = cpu_now();
    float s = fma_run(isa, iters);
    rate = 2.0 * CHAINS * lanes(isa) * (double)iters / (cpu_now() - t0) / 1e9;
#pragma omp atomic
    sink += s;
  }
  return rate;
}

/* GB/s of `threads` threads each reading its own `bytes` buffer `passes` times (after one
 * untimed pass that brings it into cache). */
double read_gbps(int isa, int threads, long bytes, int passes) {
  long n = bytes / sizeof(float);
  double rate = 0;
#pragma omp parallel num_threads(threads) reduction(+ : rate)
  {
    float* p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    for (long i = 0; i < n; ++i) p[i] = 1e-6f * (float)(i & 1023);
#if defined(__x86_64__)
#define READ(k) (isa >= 1 ? read_avx2(p, n, k) : read_generic(p, n, k))
#else
#define READ(k) read_generic(p, n, k)
#endif
    float s = READ(1);
#pragma omp barrier
    double t0 = cpu_now();
    s += READ(passes);
    rate = (double)bytes * passes / (cpu_now() - t0) / 1e9;
#pragma omp atomic
    sink += s;
    free(p);
  }
  return rate;
}
