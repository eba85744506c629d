#include "packed_weight_cache.h"

#include <c10/util/intrusive_ptr.h>

#include <list>
#include <mutex>

namespace dsconv::ops {
namespace {

struct Entry {
  c10::weak_intrusive_ptr<c10::TensorImpl> owner;
  const c10::TensorImpl* impl;
  const void* data;
  uint32_t version;
  std::vector<int64_t> sizes, strides;
  const void* pack_fn;
  int64_t variant;
  at::Tensor packed;
};

std::mutex g_mutex;
std::list<Entry> g_entries;  // most recently used first
int64_t g_bytes = 0;
int64_t g_misses = 0;

int64_t bytes_of(const at::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

bool matches(const Entry& e, const at::Tensor& w, uint32_t version, const void* pack_fn,
             int64_t variant) {
  return e.impl == w.unsafeGetTensorImpl() && e.pack_fn == pack_fn && e.variant == variant &&
         e.data == w.const_data_ptr() && e.version == version &&
         w.sizes() == at::IntArrayRef(e.sizes) && w.strides() == at::IntArrayRef(e.strides) &&
         !e.owner.expired();
}

void evict_locked() {
  for (auto it = g_entries.begin(); it != g_entries.end();) {  // drop dead weights first
    if (it->owner.expired()) {
      g_bytes -= bytes_of(it->packed);
      it = g_entries.erase(it);
    } else {
      ++it;
    }
  }
  while (!g_entries.empty() &&
         (g_entries.size() > kPackedCacheMaxEntries || g_bytes > kPackedCacheMaxBytes)) {
    g_bytes -= bytes_of(g_entries.back().packed);
    g_entries.pop_back();
  }
}

}  // namespace

at::Tensor cached_packed_weight(const at::Tensor& weight, const void* pack_fn, int64_t variant,
                                const std::function<at::Tensor()>& pack) {
  if (weight.is_inference()) return pack();  // no version counter: cannot see in-place updates
  const uint32_t version = weight._version();
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    for (auto it = g_entries.begin(); it != g_entries.end(); ++it) {
      if (matches(*it, weight, version, pack_fn, variant)) {
        g_entries.splice(g_entries.begin(), g_entries, it);
        return it->packed;
      }
    }
  }
  at::Tensor packed = pack();
  std::lock_guard<std::mutex> lock(g_mutex);
  ++g_misses;
  // A stale entry for this tensor (an older version) is replaced.
  for (auto it = g_entries.begin(); it != g_entries.end(); ++it) {
    if (it->impl == weight.unsafeGetTensorImpl() && it->pack_fn == pack_fn &&
        it->variant == variant) {
      g_bytes -= bytes_of(it->packed);
      g_entries.erase(it);
      break;
    }
  }
  g_entries.push_front(Entry{c10::weak_intrusive_ptr<c10::TensorImpl>(
                                 weight.getIntrusivePtr()),
                             weight.unsafeGetTensorImpl(), weight.const_data_ptr(), version,
                             weight.sizes().vec(), weight.strides().vec(), pack_fn,
                             variant, packed});
  g_bytes += bytes_of(packed);
  evict_locked();
  return packed;
}

int64_t packed_cache_size() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return static_cast<int64_t>(g_entries.size());
}

int64_t packed_cache_misses() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_misses;
}

void packed_cache_clear() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_entries.clear();
  g_bytes = 0;
}

}  // namespace dsconv::ops
