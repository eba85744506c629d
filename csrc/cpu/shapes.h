// Plain descriptions of one call, filled by the ops layer and read by every kernel.
// All strides are in elements. Kernels never see a torch type.
#pragma once
#include <cstdint>

#include "activation.h"

namespace dsconv {

// Which dimension of an image is unit-stride. Reference kernels honour any strides;
// vectorized kernels are registered for one layout.
enum class Layout : int { nchw, nhwc };

// Element strides (n, c, h, w) of a dense [n, c, h, w] tensor in `layout`. The ops layer
// computes them from the sizes, not from the tensor: a contiguous tensor may carry
// arbitrary strides on size-1 dimensions, which the pixel flattening of pointwise cannot use.
struct Strides {
  int64_t n, c, h, w;
};
inline Strides dense_strides(int64_t c, int64_t h, int64_t w, Layout layout) {
  if (layout == Layout::nhwc) return {h * w * c, 1, w * c, c};
  return {c * h * w, h * w, w, 1};
}

struct DwShape {
  int64_t batch, channels, multiplier;  // output channels = channels * multiplier
  int64_t in_h, in_w, out_h, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w;
  int64_t pad_top, pad_left, dilation_h, dilation_w;
  int64_t x_ns, x_cs, x_hs, x_ws;  // input (and grad-input) strides
  int64_t y_ns, y_cs, y_hs, y_ws;  // output (and grad-output) strides
  Activation activation;
  Layout layout;
  DSCONV_HOST_DEVICE int64_t out_channels() const { return channels * multiplier; }
};

struct PwShape {
  int64_t batch, in_channels, out_channels;
  int64_t pixels;                  // H*W of one image
  int64_t x_ns, x_cs, x_ps;        // input strides: image, channel, pixel
  int64_t y_ns, y_cs, y_ps;        // output strides
  Activation activation;
  Layout layout;
  // How kernels with a packing function (kernels.def) read the weight: 0, packed; > 0, in
  // place, input-major (W^T, as dsconv_ext.convert stores 1x1 weights): input k's row of
  // C_out weights starts at weight + k * w_ks. Kernels without a packing read ATen's layout.
  int64_t w_ks = 0;
};

// A dense (groups = 1) convolution: the networks' first layer.
struct ConvShape {
  int64_t batch, in_channels, out_channels;
  int64_t in_h, in_w, out_h, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w;
  int64_t pad_top, pad_left, dilation_h, dilation_w;
  int64_t x_ns, x_cs, x_hs, x_ws;
  int64_t y_ns, y_cs, y_hs, y_ws;
  Activation activation;
  Layout layout;
};

// Kernel signatures. `weight` is the packed weight where the kernel registers a packing
// function (kernels.def), else ATen's layout. Convention: input pointers are image (or tensor) bases; the output
// pointer points at the first element of the range the call writes.
template <typename T>
struct KernelTypes {
  // Weight packing for a kernel: writes the packed weight to out and returns its length in
  // elements; with out == nullptr only returns the length.
  using DwPack = int64_t (*)(const DwShape&, const T* weight, T* out);
  using PwPack = int64_t (*)(const PwShape&, const T* weight, T* out);
  using ConvPack = int64_t (*)(const ConvShape&, const T* weight, T* out);
  // Output rows [oh_begin, oh_end) of one image, all channels. y points at row oh_begin
  // and is addressed with the shape's y strides.
  using DwForward = void (*)(const DwShape&, const T* x_image, const T* weight, const T* bias,
                             T* y_row, int64_t oh_begin, int64_t oh_end);
  // Output rows [oh_begin, oh_end) of one image of a dense convolution, as DwForward;
  // weight is ATen's [out, in, kh, kw] unless the kernel registers a packing.
  using ConvForward = void (*)(const ConvShape&, const T* x_image, const T* weight,
                               const T* bias, T* y_row, int64_t oh_begin, int64_t oh_end);
  // Grad-input rows [ih_begin, ih_end) of one image. gx points at row ih_begin (x strides).
  using DwBackwardInput = void (*)(const DwShape&, const T* gy_image, const T* weight,
                                   T* gx_row, int64_t ih_begin, int64_t ih_end);
  // Weight gradient of output channels [oc_begin, oc_end), summed over the whole batch.
  // gw points at channel oc_begin of a contiguous [C*M, kh, kw] buffer.
  using DwBackwardWeight = void (*)(const DwShape&, const T* gy, const T* x, T* gw,
                                    int64_t oc_begin, int64_t oc_end);
  // npix consecutive pixels of one image; x and y point at the first of them.
  // weight is contiguous [out_channels, in_channels].
  using PwForward = void (*)(const PwShape&, const T* x, const T* weight, const T* bias, T* y,
                             int64_t npix);
  // Output channels [oc_begin, oc_end) of npix pixels whose channels are contiguous
  // (x_cs == y_cs == 1): a matrix-vector product per pixel, for calls with too few pixels
  // to pay for packing. weight is ATen's [out_channels, in_channels], read in place; y points
  // at channel oc_begin of the first pixel.
  using PwGemv = void (*)(const PwShape&, const T* x, const T* weight, const T* bias, T* y,
                          int64_t npix, int64_t oc_begin, int64_t oc_end);
  // Rows [oc_begin, oc_end) of gw = sum over batch and pixels of gy . x^T; gw points at row
  // oc_begin of a contiguous [out_channels, in_channels] buffer.
  using PwBackwardWeight = void (*)(const PwShape&, const T* gy, const T* x, T* gw,
                                    int64_t oc_begin, int64_t oc_end);
};

}  // namespace dsconv
