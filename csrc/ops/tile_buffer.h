// Per-thread scratch for the fused ops (separable and inverted_residual tiles, squeeze_excite vectors).
#pragma once
#include <cstddef>
#include <cstdint>

#include "../cpu/aligned_vector.h"
#include "../cpu/separable.h"

namespace dsconv::ops {

// Up to 2 * kSeparableMaxTileBytes (scaled to the L2 size) lives in a per-thread buffer kept
// between calls (a call neither allocates nor clears it); a larger one (very wide rows) is
// allocated for the call. Both start on a cache line (aligned_vector.h).
// One get() per TileBuffer: every get() of a thread returns the same kept storage.
template <typename T>
struct TileBuffer {
  AlignedVector<T> large;
  T* get(int64_t elements) {
    const size_t n = static_cast<size_t>(elements);
    if (n * sizeof(T) > static_cast<size_t>(2 * l2_scaled(kSeparableMaxTileBytes))) {
      large.resize(n);
      return large.data();
    }
    thread_local AlignedVector<T> kept;
    if (kept.size() < n) kept.resize(n);
    return kept.data();
  }
};

}  // namespace dsconv::ops
