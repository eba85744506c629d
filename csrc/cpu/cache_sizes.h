// The per-core L2 size the tiling budgets scale with. The budgets were tuned on a 512 KiB
// L2 (Zen 3); a CPU with a larger L2 (Intel server cores: 2 MiB) holds proportionally
// larger tiles, which read the streamed weights fewer times and pay fewer tile edges.
// Detected once: DSCONV_L2_BYTES if set (tests use it to force other tilings), else what
// the C library reports, else 512 KiB; clamped to [256 KiB, 2 MiB].
#pragma once
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>

namespace dsconv {

constexpr int64_t kTunedL2Bytes = 512 * 1024;

inline int64_t detect_l2_bytes() {
  int64_t bytes = 0;
  if (const char* env = std::getenv("DSCONV_L2_BYTES")) bytes = std::atoll(env);
#ifdef _SC_LEVEL2_CACHE_SIZE
  if (bytes <= 0) bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
  if (bytes <= 0) bytes = kTunedL2Bytes;
  return std::clamp<int64_t>(bytes, 256 * 1024, 2048 * 1024);
}

inline int64_t l2_bytes() {
  static const int64_t bytes = detect_l2_bytes();
  return bytes;
}

// `tuned` bytes (a budget tuned on a kTunedL2Bytes L2) scaled to this CPU's L2.
inline int64_t l2_scaled(int64_t tuned) { return tuned * l2_bytes() / kTunedL2Bytes; }

}  // namespace dsconv
