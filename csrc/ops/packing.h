// Weight packing for kernels that register a packing function (csrc/cpu/kernels.def):
// the ops layer packs before the parallel region, through the packed-weight cache.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>

#include "../cpu/dispatch.h"
#include "packed_weight_cache.h"

namespace dsconv::ops {

template <typename T> struct PackFor;
template <> struct PackFor<DwShape> { template <typename S> using fn = typename KernelTypes<S>::DwPack; };
template <> struct PackFor<PwShape> { template <typename S> using fn = typename KernelTypes<S>::PwPack; };
template <> struct PackFor<ConvShape> { template <typename S> using fn = typename KernelTypes<S>::ConvPack; };

// What a packing reads from the shape beyond the weight's sizes: a depthwise weight's
// C*M rows can split as C channels of multiplier M in several ways (the same weight serves
// a 6-channel input with M=1 and a 3-channel one with M=2); pointwise and conv2d weights' sizes fix
// everything.
inline int64_t packing_variant(const DwShape& s) { return s.channels; }
inline int64_t packing_variant(const PwShape&) { return 0; }
inline int64_t packing_variant(const ConvShape&) { return 0; }

// The weight as `entry`'s kernel reads it: `weight` (made contiguous), or its packed form,
// cached per weight tensor and version, so `weight` should be the caller's own tensor (a
// channels_last model's dense conv weight is not contiguous: a contiguous copy made per call
// would be packed per call), kept alive by `storage`.
template <typename T, typename Shape>
const T* kernel_weight(const KernelEntry* entry, const Shape& shape, const at::Tensor& weight,
                       at::Tensor& storage) {
  if (entry->pack == nullptr) {
    storage = weight.contiguous();
    return storage.const_data_ptr<T>();
  }
  const auto pack_fn = reinterpret_cast<typename PackFor<Shape>::template fn<T>>(entry->pack);
  storage = cached_packed_weight(weight, reinterpret_cast<const void*>(entry->pack),
                                 packing_variant(shape), [&] {
    const at::Tensor w = weight.contiguous();
    at::Tensor packed = at::empty({pack_fn(shape, w.const_data_ptr<T>(), nullptr)}, w.options());
    pack_fn(shape, w.const_data_ptr<T>(), packed.mutable_data_ptr<T>());
    return packed;
  });
  return storage.const_data_ptr<T>();
}

// Whether a [C_out, C_in, 1, 1] weight is stored input-major: each input's C_out weights
// contiguous (stride 1), inputs at least C_out apart (strides checked where sizes exceed 1).
// dsconv_ext.nn.input_major stores 1x1 weights so, with a padded input stride: the GEMM
// kernels read them in place, with no packed copy.
inline bool is_input_major(const at::Tensor& w) {
  return (w.size(0) == 1 || w.stride(0) == 1) && (w.size(1) == 1 || w.stride(1) >= w.size(0));
}

// The distance between consecutive inputs' rows of an input-major weight.
inline int64_t input_major_stride(const at::Tensor& w) {
  return w.size(1) > 1 ? w.stride(1) : std::max<int64_t>(1, w.size(0));
}

// A pointwise weight as the ops keep it until the kernel is chosen: input-major as it is,
// else contiguous.
inline at::Tensor dense_pw_weight(const at::Tensor& w) {
  return is_input_major(w) ? w : w.contiguous();
}

// The pointwise weight as `entry`'s kernel reads it: an input-major weight in place where
// the kernel packs (setting s.w_ks), else as kernel_weight gives it.
template <typename T>
const T* pw_kernel_weight(const KernelEntry* entry, PwShape& s, const at::Tensor& weight,
                          at::Tensor& storage) {
  if (entry->pack != nullptr && is_input_major(weight)) {
    s.w_ks = input_major_stride(weight);
    storage = weight;
    return weight.const_data_ptr<T>();
  }
  s.w_ks = 0;
  return kernel_weight<T>(entry, s, weight, storage);
}

}  // namespace dsconv::ops
