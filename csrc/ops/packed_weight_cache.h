// Packed weights kept across calls, so repeated inference with the same weight tensor does
// not repack it. An entry is valid while its weight tensor is alive, unmodified (same
// version counter, data pointer, sizes and strides) and packed for the same kernel and
// shape. Weights without a version counter (inference tensors) are packed per call.
// Bounded: at most kMaxEntries entries and kMaxBytes bytes, least recently used evicted.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>

namespace dsconv::ops {

constexpr size_t kPackedCacheMaxEntries = 256;
constexpr int64_t kPackedCacheMaxBytes = int64_t(256) << 20;

// `pack_fn` identifies the packing (a packing reads only the weight's sizes besides its
// data, so the pair identifies the result). `pack` makes a new packed tensor; it runs
// without the cache lock held.
at::Tensor cached_packed_weight(const at::Tensor& weight, const void* pack_fn,
                                const std::function<at::Tensor()>& pack);

// For tests: number of entries, and cumulative misses (packings done through the cache).
int64_t packed_cache_size();
int64_t packed_cache_misses();
void packed_cache_clear();

}  // namespace dsconv::ops
