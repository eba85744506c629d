// Scalar reference depthwise convolution: every feature (any kernel size, stride,
// padding, dilation, multiplier, strided layout, activation) and its backward passes.
// This is the oracle the vectorized kernels are tested against, so it stays obvious:
// plain loops, double accumulation, a bounds check per tap.
#include "../kernel_decls.h"

namespace dsconv {
namespace {

template <typename T>
void dw_forward(const DwShape& s, const T* x, const T* w, const T* bias, T* y, int64_t oh_begin,
                int64_t oh_end) {
  const int64_t taps = s.kernel_h * s.kernel_w;
  for (int64_t oh = oh_begin; oh < oh_end; ++oh) {
    T* y_row = y + (oh - oh_begin) * s.y_hs;
    for (int64_t oc = 0; oc < s.out_channels(); ++oc) {
      const T* x_chan = x + (oc / s.multiplier) * s.x_cs;
      const T* w_chan = w + oc * taps;
      for (int64_t ow = 0; ow < s.out_w; ++ow) {
        double acc = bias ? double(bias[oc]) : 0.0;
        for (int64_t ki = 0; ki < s.kernel_h; ++ki) {
          const int64_t ih = oh * s.stride_h - s.pad_top + ki * s.dilation_h;
          if (ih < 0 || ih >= s.in_h) continue;
          for (int64_t kj = 0; kj < s.kernel_w; ++kj) {
            const int64_t iw = ow * s.stride_w - s.pad_left + kj * s.dilation_w;
            if (iw < 0 || iw >= s.in_w) continue;
            acc += double(x_chan[ih * s.x_hs + iw * s.x_ws]) * double(w_chan[ki * s.kernel_w + kj]);
          }
        }
        y_row[oc * s.y_cs + ow * s.y_ws] = apply_activation(s.activation, T(acc));
      }
    }
  }
}

// Output position o along one axis that reads input position i through tap k, or -1.
inline int64_t source_output(int64_t i, int64_t k, int64_t pad, int64_t stride, int64_t dilation,
                             int64_t out_size) {
  const int64_t t = i + pad - k * dilation;
  if (t < 0 || t % stride != 0) return -1;
  const int64_t o = t / stride;
  return o < out_size ? o : -1;
}

// Gathers, for every input pixel, the output pixels whose windows cover it, so each
// grad-input element is written by exactly one thread.
template <typename T>
void dw_backward_input(const DwShape& s, const T* gy, const T* w, T* gx, int64_t ih_begin,
                       int64_t ih_end) {
  const int64_t taps = s.kernel_h * s.kernel_w;
  for (int64_t ih = ih_begin; ih < ih_end; ++ih) {
    T* gx_row = gx + (ih - ih_begin) * s.x_hs;
    for (int64_t c = 0; c < s.channels; ++c) {
      for (int64_t iw = 0; iw < s.in_w; ++iw) {
        double acc = 0.0;
        for (int64_t m = 0; m < s.multiplier; ++m) {
          const int64_t oc = c * s.multiplier + m;
          for (int64_t ki = 0; ki < s.kernel_h; ++ki) {
            const int64_t oh = source_output(ih, ki, s.pad_top, s.stride_h, s.dilation_h, s.out_h);
            if (oh < 0) continue;
            for (int64_t kj = 0; kj < s.kernel_w; ++kj) {
              const int64_t ow =
                  source_output(iw, kj, s.pad_left, s.stride_w, s.dilation_w, s.out_w);
              if (ow < 0) continue;
              acc += double(gy[oc * s.y_cs + oh * s.y_hs + ow * s.y_ws]) *
                     double(w[oc * taps + ki * s.kernel_w + kj]);
            }
          }
        }
        gx_row[c * s.x_cs + iw * s.x_ws] = T(acc);
      }
    }
  }
}

template <typename T>
void dw_backward_weight(const DwShape& s, const T* gy, const T* x, T* gw, int64_t oc_begin,
                        int64_t oc_end) {
  for (int64_t oc = oc_begin; oc < oc_end; ++oc) {
    const int64_t c = oc / s.multiplier;
    for (int64_t ki = 0; ki < s.kernel_h; ++ki) {
      for (int64_t kj = 0; kj < s.kernel_w; ++kj) {
        double acc = 0.0;
        for (int64_t n = 0; n < s.batch; ++n) {
          const T* gy_chan = gy + n * s.y_ns + oc * s.y_cs;
          const T* x_chan = x + n * s.x_ns + c * s.x_cs;
          for (int64_t oh = 0; oh < s.out_h; ++oh) {
            const int64_t ih = oh * s.stride_h - s.pad_top + ki * s.dilation_h;
            if (ih < 0 || ih >= s.in_h) continue;
            for (int64_t ow = 0; ow < s.out_w; ++ow) {
              const int64_t iw = ow * s.stride_w - s.pad_left + kj * s.dilation_w;
              if (iw < 0 || iw >= s.in_w) continue;
              acc += double(gy_chan[oh * s.y_hs + ow * s.y_ws]) * double(x_chan[ih * s.x_hs + iw * s.x_ws]);
            }
          }
        }
        gw[(oc - oc_begin) * s.kernel_h * s.kernel_w + ki * s.kernel_w + kj] = T(acc);
      }
    }
  }
}

}  // namespace

#define DSCONV_REFERENCE_DW(T, suffix)                                                       \
  void dwconv_generic_any_##suffix##_scalar(const DwShape& s, const T* x, const T* w,        \
                                            const T* b, T* y, int64_t o0, int64_t o1) {      \
    dw_forward<T>(s, x, w, b, y, o0, o1);                                                    \
  }                                                                                          \
  void dwconv_bwd_input_generic_any_##suffix##_scalar(const DwShape& s, const T* gy,         \
                                                      const T* w, T* gx, int64_t i0,         \
                                                      int64_t i1) {                          \
    dw_backward_input<T>(s, gy, w, gx, i0, i1);                                              \
  }                                                                                          \
  void dwconv_bwd_weight_generic_any_##suffix##_scalar(const DwShape& s, const T* gy,        \
                                                       const T* x, T* gw, int64_t c0,        \
                                                       int64_t c1) {                         \
    dw_backward_weight<T>(s, gy, x, gw, c0, c1);                                             \
  }

DSCONV_REFERENCE_DW(float, f32)
DSCONV_REFERENCE_DW(double, f64)

}  // namespace dsconv
