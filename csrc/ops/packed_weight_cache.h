// Packed weights kept across calls, so repeated inference with the same weight tensor does
// not repack it. An entry is valid while its weight tensor is alive, unmodified (same
// version counter, data pointer, sizes and strides) and packed by the same function for
// the same `variant` (a shape parameter the packing reads that the weight's sizes do not
// fix, e.g. how a depthwise weight's C*M rows split into channels and multiplier). Weights without a version counter (inference tensors) are packed per call.
// Bounded: at most kMaxEntries entries and kMaxBytes bytes, least recently used evicted.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>

namespace dsconv::ops {

constexpr size_t kPackedCacheMaxEntries = 256;
constexpr int64_t kPackedCacheMaxBytes = int64_t(256) << 20;

// `pack_fn` and `variant` identify the packing (besides the weight's data and sizes).
// `pack` makes a new packed tensor; it runs without the cache lock held.
at::Tensor cached_packed_weight(const at::Tensor& weight, const void* pack_fn, int64_t variant,
                                const std::function<at::Tensor()>& pack);

// For tests: number of entries, and cumulative misses (packings done through the cache).
int64_t packed_cache_size();
int64_t packed_cache_misses();
void packed_cache_clear();

}  // namespace dsconv::ops
