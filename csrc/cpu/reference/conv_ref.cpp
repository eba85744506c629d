// Scalar reference dense (groups = 1) convolution, any layout (strides), double
// accumulation: the oracle of the conv kernels and the fallback for other dtypes and ISAs.
#include "../kernel_decls.h"

namespace dsconv {
namespace {

template <typename T>
void conv_forward(const ConvShape& s, const T* x, const T* w, const T* bias, T* y,
                  int64_t oh_begin, int64_t oh_end) {
  const int64_t taps = s.kernel_h * s.kernel_w;
  for (int64_t oh = oh_begin; oh < oh_end; ++oh) {
    for (int64_t ow = 0; ow < s.out_w; ++ow) {
      for (int64_t co = 0; co < s.out_channels; ++co) {
        double acc = bias ? double(bias[co]) : 0.0;
        for (int64_t ci = 0; ci < s.in_channels; ++ci) {
          for (int64_t i = 0; i < s.kernel_h; ++i) {
            const int64_t ih = oh * s.stride_h - s.pad_top + i * s.dilation_h;
            if (ih < 0 || ih >= s.in_h) continue;
            for (int64_t j = 0; j < s.kernel_w; ++j) {
              const int64_t iw = ow * s.stride_w - s.pad_left + j * s.dilation_w;
              if (iw < 0 || iw >= s.in_w) continue;
              acc += double(x[ci * s.x_cs + ih * s.x_hs + iw * s.x_ws]) *
                     double(w[(co * s.in_channels + ci) * taps + i * s.kernel_w + j]);
            }
          }
        }
        y[(oh - oh_begin) * s.y_hs + ow * s.y_ws + co * s.y_cs] =
            apply_activation(s.activation, T(acc));
      }
    }
  }
}

}  // namespace

#define DSCONV_REFERENCE_CONV(T, suffix)                                                      \
  void conv_generic_any_##suffix##_scalar(const ConvShape& s, const T* x, const T* w,         \
                                          const T* b, T* y, int64_t r0, int64_t r1) {         \
    conv_forward<T>(s, x, w, b, y, r0, r1);                                                   \
  }

DSCONV_REFERENCE_CONV(float, f32)
DSCONV_REFERENCE_CONV(double, f64)

}  // namespace dsconv
