// std::vector whose storage starts on a 64-byte boundary (a cache line, and one AVX-512
// vector). The kernels' scratch (row buffers, depthwise tiles, zero rows) is read and
// written in whole vectors; std::vector's 16-byte alignment splits every 64-byte access
// across two cache lines, which halved the AVX-512 depthwise kernel's speed in L1
// (MobileNet-sized rows, Xeon: 29-59 GFLOP/s at 16-byte alignment, 58-95 at 64).
#pragma once
#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace dsconv {

constexpr std::size_t kScratchAlignment = 64;

// `elems` rounded up to whole cache lines of T: the pixel stride of the NHWC scratch rows,
// so that every pixel's channel vectors start on a line too.
template <typename T>
inline int64_t cache_line_multiple(int64_t elems) {
  constexpr int64_t line = int64_t(kScratchAlignment / sizeof(T));
  return (elems + line - 1) / line * line;
}

template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kScratchAlignment)));
  }
  void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t(kScratchAlignment)); }
  template <typename U>
  bool operator==(const CacheLineAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const CacheLineAllocator<U>&) const { return false; }
};

template <typename T>
using AlignedVector = std::vector<T, CacheLineAllocator<T>>;

}  // namespace dsconv
