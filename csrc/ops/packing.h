// Weight packing for kernels that register a packing function (csrc/cpu/kernels.def):
// the ops layer packs before the parallel region, through the packed-weight cache.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

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

}  // namespace dsconv::ops
