// Standalone check of every CUDA launcher (csrc/cuda/launch.h) against the scalar CPU
// reference kernels (csrc/cpu/reference), in f32, f64, f16 and bf16, NCHW and NHWC, over a
// grid of geometries (3x3/5x5 s1/s2 fast paths, generic sizes, dilation, multiplier,
// asymmetric padding, odd sizes). No torch. Needs a GPU to run; scripts/check_cuda.sh builds
// it everywhere and runs it when `nvidia-smi -L` finds a GPU. Exit status 1 on any mismatch.
//
// Build by hand: nvcc -std=c++17 -O2 -arch=sm_80 -o check_kernels tests/cuda/check_kernels.cu \
//   csrc/cuda/*.cu csrc/cpu/reference/*.cpp
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../../csrc/cpu/kernel_decls.h"
#include "../../csrc/cuda/common.cuh"

using namespace dsconv;

namespace {

int g_failures = 0, g_checks = 0;

struct Geometry {
  int64_t n, c, m, h, w, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw, cout;
};

struct Strides4 {
  int64_t n, c, h, w;
};
Strides4 dense(int64_t c, int64_t h, int64_t w, Layout layout) {
  if (layout == Layout::nhwc) return {h * w * c, 1, w * c, c};
  return {c * h * w, h * w, w, 1};
}

DwShape dw_shape(const Geometry& g, Layout layout, Activation act) {
  DwShape s{};
  s.batch = g.n, s.channels = g.c, s.multiplier = g.m, s.in_h = g.h, s.in_w = g.w;
  s.out_h = (g.h + g.pt + g.pb - g.dh * (g.kh - 1) - 1) / g.sh + 1;
  s.out_w = (g.w + g.pl + g.pr - g.dw * (g.kw - 1) - 1) / g.sw + 1;
  s.kernel_h = g.kh, s.kernel_w = g.kw, s.stride_h = g.sh, s.stride_w = g.sw;
  s.pad_top = g.pt, s.pad_left = g.pl, s.dilation_h = g.dh, s.dilation_w = g.dw;
  const Strides4 xs = dense(g.c, g.h, g.w, layout);
  const Strides4 ys = dense(g.c * g.m, s.out_h, s.out_w, layout);
  s.x_ns = xs.n, s.x_cs = xs.c, s.x_hs = xs.h, s.x_ws = xs.w;
  s.y_ns = ys.n, s.y_cs = ys.c, s.y_hs = ys.h, s.y_ws = ys.w;
  s.activation = act, s.layout = layout;
  return s;
}

PwShape pw_shape(int64_t n, int64_t cin, int64_t cout, int64_t h, int64_t w, Layout layout,
                 Activation act) {
  const Strides4 xs = dense(cin, h, w, layout), ys = dense(cout, h, w, layout);
  return PwShape{n, cin, cout, h * w, xs.n, xs.c, xs.w, ys.n, ys.c, ys.w, act, layout};
}

// Host-side element conversions (the 16-bit types through their host intrinsics).
template <typename T> T from_double(double v) { return static_cast<T>(v); }
template <> __half from_double<__half>(double v) { return __float2half(static_cast<float>(v)); }
template <> __nv_bfloat16 from_double<__nv_bfloat16>(double v) {
  return __float2bfloat16(static_cast<float>(v));
}
template <typename T> double to_double(T v) { return static_cast<double>(v); }
template <> double to_double<__half>(__half v) { return __half2float(v); }
template <> double to_double<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> cuda::DType dtype_of();
template <> cuda::DType dtype_of<float>() { return cuda::DType::f32; }
template <> cuda::DType dtype_of<double>() { return cuda::DType::f64; }
template <> cuda::DType dtype_of<__half>() { return cuda::DType::f16; }
template <> cuda::DType dtype_of<__nv_bfloat16>() { return cuda::DType::bf16; }
template <typename T> double tolerance() { return 1e-5; }
template <> double tolerance<double>() { return 1e-12; }
template <> double tolerance<__half>() { return 4e-3; }
template <> double tolerance<__nv_bfloat16>() { return 3e-2; }

// Random values in T, and their exact double copies for the reference.
template <typename T> struct Data {
  std::vector<T> t;
  std::vector<double> d;
  Data(size_t n, std::mt19937& rng, double scale) : t(n), d(n) {
    std::normal_distribution<double> dist(0.0, scale);
    for (size_t i = 0; i < n; ++i) {
      t[i] = from_double<T>(dist(rng));
      d[i] = to_double(t[i]);
    }
  }
};

template <typename T> struct Device {
  T* p = nullptr;
  size_t n;
  explicit Device(size_t count) : n(count) { cudaMalloc(&p, (n ? n : 1) * sizeof(T)); }
  Device(const std::vector<T>& v) : Device(v.size()) {
    cudaMemcpy(p, v.data(), n * sizeof(T), cudaMemcpyHostToDevice);
  }
  ~Device() { cudaFree(p); }
  std::vector<double> read() const {
    std::vector<T> h(n);
    cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost);
    std::vector<double> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = to_double(h[i]);
    return out;
  }
};

// |got - want| <= tol * (1 + max |want|) elementwise.
void compare(const char* what, const char* error, const std::vector<double>& got,
             const std::vector<double>& want, double tol, const char* dtype, const Geometry& g,
             Layout layout) {
  ++g_checks;
  double scale = 1, worst = 0;
  size_t at = 0;
  for (double v : want) scale = std::max(scale, 1 + std::fabs(v));
  bool nan = false;
  for (size_t i = 0; i < want.size(); ++i) {
    const double e = std::fabs(got[i] - want[i]);
    if (std::isnan(got[i])) nan = true;
    if (e > worst) worst = e, at = i;
  }
  const cudaError_t sync = cudaDeviceSynchronize();
  if (error != nullptr || sync != cudaSuccess || nan || worst > tol * scale) {
    ++g_failures;
    std::printf("FAIL %s %s %s n%ld c%ld m%ld %ldx%ld k%ldx%ld s%ldx%ld p%ld,%ld,%ld,%ld d%ldx%ld: "
                "%s; max error %.3g at %zu (got %.6g want %.6g, bound %.3g)\n",
                what, dtype, layout == Layout::nhwc ? "nhwc" : "nchw", (long)g.n, (long)g.c,
                (long)g.m, (long)g.h, (long)g.w, (long)g.kh, (long)g.kw, (long)g.sh, (long)g.sw,
                (long)g.pt, (long)g.pb, (long)g.pl, (long)g.pr, (long)g.dh, (long)g.dw,
                error ? error : (sync != cudaSuccess ? cudaGetErrorString(sync) : "ok"), worst, at,
                got.empty() ? 0.0 : got[at], want.empty() ? 0.0 : want[at], tol * scale);
  }
}

template <typename T>
void check_case(const Geometry& g, Layout layout, Activation act, bool bias, std::mt19937& rng,
                const char* name) {
  const DwShape s = dw_shape(g, layout, act);
  const DwShape s_lin = dw_shape(g, layout, Activation::none);
  const int64_t mid = g.c * g.m, taps = g.kh * g.kw;
  const int64_t nx = g.n * g.c * g.h * g.w, ny = g.n * mid * s.out_h * s.out_w;
  Data<T> x(nx, rng, 1.0), w(mid * taps, rng, 2.0 / g.kh), b(mid, rng, 1.0), gy(ny, rng, 1.0);
  Device<T> dx(x.t), dwt(w.t), db(b.t), dgy(gy.t);
  const double tol = tolerance<T>();

  // depthwise forward
  std::vector<double> ref(ny);
  for (int64_t n = 0; n < g.n; ++n) {
    dwconv_generic_any_f64_scalar(s, x.d.data() + n * s.x_ns, w.d.data(),
                                  bias ? b.d.data() : nullptr, ref.data() + n * s.y_ns, 0, s.out_h);
  }
  Device<T> dy(ny);
  const char* err = cuda::depthwise_forward(dtype_of<T>(), s, dx.p, dwt.p, bias ? db.p : nullptr,
                                            dy.p, nullptr);
  compare("dw_forward", err, dy.read(), ref, tol, name, g, layout);

  // depthwise input gradient
  std::vector<double> ref_gx(nx);
  for (int64_t n = 0; n < g.n; ++n) {
    dwconv_bwd_input_generic_any_f64_scalar(s_lin, gy.d.data() + n * s.y_ns, w.d.data(),
                                            ref_gx.data() + n * s.x_ns, 0, g.h);
  }
  Device<T> dgx(nx);
  err = cuda::depthwise_backward_input(dtype_of<T>(), s_lin, dgy.p, dwt.p, dgx.p, nullptr);
  compare("dw_backward_input", err, dgx.read(), ref_gx, tol, name, g, layout);

  // depthwise weight gradient
  std::vector<double> ref_gw(mid * taps);
  dwconv_bwd_weight_generic_any_f64_scalar(s_lin, gy.d.data(), x.d.data(), ref_gw.data(), 0, mid);
  Device<T> dgw(mid * taps);
  Device<char> dw_ws(cuda::depthwise_backward_weight_workspace(dtype_of<T>(), s_lin));
  err = cuda::depthwise_backward_weight(dtype_of<T>(), s_lin, dgy.p, dx.p, dgw.p, dw_ws.p, nullptr);
  compare("dw_backward_weight", err, dgw.read(), ref_gw, tol, name, g, layout);

  // pointwise forward (on the depthwise output shape), transposed weight, weight gradient
  const PwShape p = pw_shape(g.n, mid, g.cout, s.out_h, s.out_w, layout, act);
  const int64_t nz = g.n * g.cout * p.pixels;
  Data<T> wp(g.cout * mid, rng, 2.0 / std::sqrt(double(mid))), bp(g.cout, rng, 1.0);
  Data<T> gz(nz, rng, 1.0);
  Device<T> dwp(wp.t), dbp(bp.t), dz(nz), dgz(gz.t);
  std::vector<double> ref_z(nz);
  for (int64_t n = 0; n < g.n; ++n) {
    gemm_pw_any_f64_scalar(p, gy.d.data() + n * p.x_ns, wp.d.data(), bias ? bp.d.data() : nullptr,
                           ref_z.data() + n * p.y_ns, p.pixels);
  }
  err = cuda::pointwise_forward(dtype_of<T>(), p, dgy.p, dwp.p, false, bias ? dbp.p : nullptr,
                                dz.p, nullptr);
  compare("pw_forward", err, dz.read(), ref_z, tol, name, g, layout);

  const PwShape pt = pw_shape(g.n, g.cout, mid, s.out_h, s.out_w, layout, Activation::none);
  std::vector<double> wt(mid * g.cout);  // [mid, cout]: the reference needs W^T explicitly
  for (int64_t o = 0; o < g.cout; ++o)
    for (int64_t c = 0; c < mid; ++c) wt[c * g.cout + o] = wp.d[o * mid + c];
  std::vector<double> ref_t(ny);
  for (int64_t n = 0; n < g.n; ++n) {
    gemm_pw_any_f64_scalar(pt, gz.d.data() + n * pt.x_ns, wt.data(), nullptr,
                           ref_t.data() + n * pt.y_ns, pt.pixels);
  }
  Device<T> dt(ny);
  err = cuda::pointwise_forward(dtype_of<T>(), pt, dgz.p, dwp.p, true, nullptr, dt.p, nullptr);
  compare("pw_backward_input", err, dt.read(), ref_t, tol, name, g, layout);

  const PwShape p_lin = pw_shape(g.n, mid, g.cout, s.out_h, s.out_w, layout, Activation::none);
  std::vector<double> ref_gwp(g.cout * mid);
  gemm_pw_bwd_weight_any_f64_scalar(p_lin, gz.d.data(), gy.d.data(), ref_gwp.data(), 0, g.cout);
  Device<char> ws(cuda::pointwise_backward_weight_workspace(dtype_of<T>(), p_lin));
  Device<T> dgwp(g.cout * mid);
  err = cuda::pointwise_backward_weight(dtype_of<T>(), p_lin, dgz.p, dgy.p, dgwp.p, ws.p, nullptr);
  compare("pw_backward_weight", err, dgwp.read(), ref_gwp, tol, name, g, layout);

  // fused separable: depthwise (act) -> pointwise (act) on the reference's f64 intermediate
  std::vector<double> ref_sep(nz);
  for (int64_t n = 0; n < g.n; ++n) {
    gemm_pw_any_f64_scalar(p, ref.data() + n * p.x_ns, wp.d.data(), bias ? bp.d.data() : nullptr,
                           ref_sep.data() + n * p.y_ns, p.pixels);
  }
  Device<T> dsep(nz);
  err = cuda::separable_forward(dtype_of<T>(), s, p, dx.p, dwt.p, bias ? db.p : nullptr, dwp.p,
                                bias ? dbp.p : nullptr, dsep.p, nullptr);
  compare("separable", err, dsep.read(), ref_sep, tol * 4, name, g, layout);
}

}  // namespace

int main() {
  std::mt19937 rng(1234);
  // n, c, m, h, w, kh, kw, sh, sw, pad t/b/l/r, dh, dw, c_out
  const Geometry grid[] = {
      {2, 17, 1, 13, 11, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 19},   // 3x3 s1 fast path
      {1, 33, 1, 14, 15, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 70},   // 3x3 s2, c_out > one GEMM tile
      {3, 8, 1, 9, 7, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 4},       // 5x5 s1
      {1, 5, 1, 12, 13, 5, 5, 2, 2, 2, 1, 2, 0, 1, 1, 65},    // 5x5 s2, asymmetric padding
      {2, 3, 2, 8, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 7},       // multiplier on the fast path
      {1, 6, 1, 10, 10, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 5},     // dilation: generic
      {2, 4, 3, 7, 9, 3, 2, 2, 1, 0, 1, 2, 0, 1, 2, 3},       // non-square everything
      {1, 7, 1, 1, 5, 1, 3, 1, 1, 0, 0, 1, 1, 1, 1, 16},      // 1-row image
      {1, 2, 1, 6, 6, 7, 7, 1, 1, 3, 3, 3, 3, 1, 1, 1},       // 7x7 (generic), c_out 1
      {4, 96, 1, 28, 28, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 130},  // several GEMM tiles in M and N
      {1, 1, 1, 5, 1, 2, 1, 1, 1, 0, 1, 0, 0, 1, 1, 2},       // width 1, even kernel
      {2, 5, 2, 11, 10, 5, 5, 2, 2, 2, 2, 2, 2, 1, 1, 9},     // multiplier on 5x5 s2
      {1, 40, 1, 7, 7, 3, 3, 2, 2, 0, 1, 0, 1, 1, 1, 66},     // 3x3 s2 'same'-style padding
      {2, 3, 1, 9, 8, 4, 2, 1, 1, 1, 2, 0, 1, 3, 1, 2},       // even kernel, dilation 3
      {3, 4, 1, 48, 48, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 5},     // pw weight grad split by images
      {1, 3, 1, 97, 95, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 6},     // ... split along pixels
      {2, 3, 1, 20, 20, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 4},     // dw weight grad chunks, generic
  };
  const Activation acts[] = {Activation::none, Activation::relu, Activation::relu6,
                             Activation::hardswish};
  int i = 0;
  for (const Geometry& g : grid) {
    for (Layout layout : {Layout::nchw, Layout::nhwc}) {
      const Activation act = acts[i % 4];
      const bool bias = i % 3 != 2;
      ++i;
      check_case<float>(g, layout, act, bias, rng, "f32");
      check_case<double>(g, layout, act, bias, rng, "f64");
      check_case<__half>(g, layout, act, bias, rng, "f16");
      check_case<__nv_bfloat16>(g, layout, act, bias, rng, "bf16");
    }
  }
  std::printf("%d of %d checks failed\n", g_failures, g_checks);
  return g_failures == 0 ? 0 : 1;
}
