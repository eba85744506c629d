// From tensors to the kernels' plain shape structs: layout choice, canonical strides,
// and the split of flat work ranges into per-image pieces.
#pragma once
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include "../cpu/dispatch.h"
#include "../cpu/shapes.h"
#include "checks.h"

namespace dsconv::ops {

// The one memory-format rule of every op: an input that is channels_last-contiguous and
// not NCHW-contiguous is computed and returned channels_last; everything else is NCHW
// (other strides are copied to NCHW once). dsconv_ext/_fake.py mirrors this rule.
inline Layout layout_of(const at::Tensor& x) {
  return (!x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast)) ? Layout::nhwc
                                                                                 : Layout::nchw;
}

inline at::MemoryFormat memory_format(Layout layout) {
  return layout == Layout::nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// Every output's element count fits int64 before its strides are computed from the sizes:
// a huge padding or an expanded (stride-0) input can ask for more, and the products in
// dense_strides would overflow (undefined behaviour), where the caller must get an error.
inline void check_output_size(int64_t batch, int64_t channels, int64_t height, int64_t width) {
  int64_t n = 0;
  const bool overflow = c10::mul_overflows(batch, channels, &n) ||
                        c10::mul_overflows(n, height, &n) || c10::mul_overflows(n, width, &n);
  TORCH_CHECK(!overflow, "the output of shape [", batch, ", ", channels, ", ", height, ", ", width,
              "] has more elements than 64-bit integers hold (overflow); expected an output of "
              "at most 2^63 - 1 elements");
}

inline DwShape make_dw_shape(int64_t batch, int64_t channels, int64_t multiplier, int64_t in_h,
                             int64_t in_w, const Geometry& g, Activation act, Layout layout) {
  check_output_size(batch, channels * multiplier, g.out_h, g.out_w);
  const Strides xs = dense_strides(channels, in_h, in_w, layout);
  const Strides ys = dense_strides(channels * multiplier, g.out_h, g.out_w, layout);
  return DwShape{batch,      channels,   multiplier, in_h,       in_w,       g.out_h,
                 g.out_w,    g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, g.pad_top,
                 g.pad_left, g.dilation_h, g.dilation_w, xs.n, xs.c, xs.h,
                 xs.w,       ys.n,       ys.c,       ys.h,       ys.w,       act,
                 layout};
}

inline PwShape make_pw_shape(int64_t batch, int64_t in_channels, int64_t out_channels,
                             int64_t height, int64_t width, Activation act, Layout layout) {
  check_output_size(batch, out_channels, height, width);
  const Strides xs = dense_strides(in_channels, height, width, layout);
  const Strides ys = dense_strides(out_channels, height, width, layout);
  return PwShape{batch, in_channels, out_channels, height * width, xs.n, xs.c, xs.w,
                 ys.n,  ys.c,        ys.w,         act,            layout};
}

inline ConvShape make_conv_shape(int64_t batch, int64_t in_channels, int64_t out_channels,
                                 int64_t in_h, int64_t in_w, const Geometry& g, Activation act,
                                 Layout layout) {
  check_output_size(batch, out_channels, g.out_h, g.out_w);
  const Strides xs = dense_strides(in_channels, in_h, in_w, layout);
  const Strides ys = dense_strides(out_channels, g.out_h, g.out_w, layout);
  return ConvShape{batch,      in_channels, out_channels, in_h,         in_w,
                   g.out_h,    g.out_w,     g.kernel_h,   g.kernel_w,   g.stride_h,
                   g.stride_w, g.pad_top,   g.pad_left,   g.dilation_h, g.dilation_w,
                   xs.n,       xs.c,        xs.h,         xs.w,         ys.n,
                   ys.c,       ys.h,        ys.w,         act,          layout};
}

inline KernelQuery dw_query(Op op, DType dtype, const DwShape& s) {
  KernelQuery q{op, dtype, s.layout};
  q.kernel_h = s.kernel_h, q.kernel_w = s.kernel_w, q.stride_h = s.stride_h, q.stride_w = s.stride_w;
  q.dilation_h = s.dilation_h, q.dilation_w = s.dilation_w, q.multiplier = s.multiplier;
  return q;
}

inline KernelQuery pw_query(Op op, DType dtype, const PwShape& s) {
  return KernelQuery{op, dtype, s.layout};
}

// Smallest chunk worth a thread: about `target` multiply-adds.
inline int64_t grain_for(int64_t work_per_unit, int64_t target = 1 << 15) {
  return std::max<int64_t>(1, target / std::max<int64_t>(1, work_per_unit));
}

// Calls fn(image, begin, end) for each per-image piece of the flat range [begin, end)
// over images of `per_image` units each.
template <typename Fn>
void for_each_image_piece(int64_t begin, int64_t end, int64_t per_image, const Fn& fn) {
  while (begin < end) {
    const int64_t n = begin / per_image;
    const int64_t local = begin - n * per_image;
    const int64_t count = std::min(end - begin, per_image - local);
    fn(n, local, local + count);
    begin += count;
  }
}

// at::parallel_for over `batch` images of `units` work units each (rows or pixels, of
// about `unit_work` multiply-adds apiece); fn(image, begin, end) gets per-image pieces.
template <typename Fn>
void parallel_per_image(int64_t batch, int64_t units, int64_t unit_work, const Fn& fn) {
  at::parallel_for(0, batch * units, grain_for(unit_work), [&](int64_t begin, int64_t end) {
    for_each_image_piece(begin, end, units, fn);
  });
}

}  // namespace dsconv::ops
