// Scalar reference pointwise (1x1) convolution, a GEMM over pixels (also over a range of
// output channels: the matrix-vector kernels' reference), and its weight gradient (the input gradient is the forward GEMM with the transposed weight). Any
// pixel/channel strides; double accumulation.
#include "../kernel_decls.h"

namespace dsconv {
namespace {

// Output channels [oc_begin, oc_end) of npix pixels; y points at channel oc_begin of the first.
template <typename T>
void pw_forward(const PwShape& s, const T* x, const T* w, const T* bias, T* y, int64_t npix,
                int64_t oc_begin, int64_t oc_end) {
  for (int64_t p = 0; p < npix; ++p) {
    for (int64_t co = oc_begin; co < oc_end; ++co) {
      double acc = bias ? double(bias[co]) : 0.0;
      const T* w_row = w + co * s.in_channels;
      for (int64_t ci = 0; ci < s.in_channels; ++ci) {
        acc += double(x[ci * s.x_cs + p * s.x_ps]) * double(w_row[ci]);
      }
      y[(co - oc_begin) * s.y_cs + p * s.y_ps] = apply_activation(s.activation, T(acc));
    }
  }
}

template <typename T>
void pw_backward_weight(const PwShape& s, const T* gy, const T* x, T* gw, int64_t oc_begin,
                        int64_t oc_end) {
  for (int64_t co = oc_begin; co < oc_end; ++co) {
    for (int64_t ci = 0; ci < s.in_channels; ++ci) {
      double acc = 0.0;
      for (int64_t n = 0; n < s.batch; ++n) {
        const T* gy_chan = gy + n * s.y_ns + co * s.y_cs;
        const T* x_chan = x + n * s.x_ns + ci * s.x_cs;
        for (int64_t p = 0; p < s.pixels; ++p) {
          acc += double(gy_chan[p * s.y_ps]) * double(x_chan[p * s.x_ps]);
        }
      }
      gw[(co - oc_begin) * s.in_channels + ci] = T(acc);
    }
  }
}

}  // namespace

#define DSCONV_REFERENCE_PW(T, suffix)                                                        \
  void gemm_pw_any_##suffix##_scalar(const PwShape& s, const T* x, const T* w, const T* b,    \
                                     T* y, int64_t n) {                                       \
    pw_forward<T>(s, x, w, b, y, n, 0, s.out_channels);                                       \
  }                                                                                           \
  void gemv_pw_any_##suffix##_scalar(const PwShape& s, const T* x, const T* w, const T* b,    \
                                     T* y, int64_t n, int64_t c0, int64_t c1) {               \
    pw_forward<T>(s, x, w, b, y, n, c0, c1);                                                  \
  }                                                                                           \
  void gemm_pw_bwd_weight_any_##suffix##_scalar(const PwShape& s, const T* gy, const T* x,    \
                                                T* gw, int64_t c0, int64_t c1) {              \
    pw_backward_weight<T>(s, gy, x, gw, c0, c1);                                              \
  }

DSCONV_REFERENCE_PW(float, f32)
DSCONV_REFERENCE_PW(double, f64)

}  // namespace dsconv
