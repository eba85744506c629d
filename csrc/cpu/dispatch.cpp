#include "dispatch.h"

#include <atomic>

#include "kernel_decls.h"

namespace dsconv {
namespace {

// Must follow the enumerator order of Isa.
const char* const kIsaNames[] = {"scalar", "avx2", "avx512", "neon"};
constexpr int kIsaCount = 4;

bool cpu_supports(Isa isa) {
  switch (isa) {
    case Isa::scalar:
      return true;
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
#if defined(__aarch64__)
    case Isa::neon:
      return true;
#endif
    default:
      return false;
  }
}

int family(Isa isa) { return isa == Isa::neon ? 1 : 0; }

// A kernel built for `kernel` may run while `active` is selected.
bool runs_under(Isa kernel, Isa active) {
  if (kernel == Isa::scalar) return true;
  return family(kernel) == family(active) && static_cast<int>(kernel) <= static_cast<int>(active);
}

std::atomic<int> g_active{-1};

}  // namespace

bool kernel_serves(const KernelEntry& e, const KernelQuery& q) {
  auto any_or = [](int want, int64_t have) { return want == 0 || want == have; };
  return e.op == q.op && e.dtype == q.dtype &&
         (e.layout < 0 || e.layout == static_cast<int>(q.layout)) &&
         any_or(e.kernel_h, q.kernel_h) && any_or(e.kernel_w, q.kernel_w) &&
         any_or(e.stride_h, q.stride_h) && any_or(e.stride_w, q.stride_w) &&
         any_or(e.dilation, q.dilation_h) && any_or(e.dilation, q.dilation_w) &&
         any_or(e.multiplier, q.multiplier);
}

namespace {

constexpr int any = -1;
constexpr int nchw = static_cast<int>(Layout::nchw);
constexpr int nhwc = static_cast<int>(Layout::nhwc);

template <typename Fn>
void (*erase(Fn fn))() { return reinterpret_cast<void (*)()>(fn); }
void (*erase(std::nullptr_t))() { return nullptr; }
constexpr std::nullptr_t no_pack = nullptr;

const KernelEntry kRegistry[] = {
#define DSCONV_KERNEL(name, pack, op, isa, dtype, layout, kh, kw, sh, sw, dil, mult) \
  {#name, Op::op, Isa::isa, DType::dtype, layout, kh, kw, sh, sw, dil, mult, erase(&name), erase(pack)},
#define DSCONV_PACK(name, shape, dtype)
#include "kernels.def"
#undef DSCONV_KERNEL
#undef DSCONV_PACK
};

thread_local std::string t_record;
thread_local int t_record_scopes = 0;  // live KernelRecordScopes on this thread

}  // namespace

const char* isa_name(Isa isa) { return kIsaNames[static_cast<int>(isa)]; }

const char* op_name(Op op) {
  switch (op) {
    case Op::dw_forward: return "dw_forward";
    case Op::dw_backward_input: return "dw_backward_input";
    case Op::dw_backward_weight: return "dw_backward_weight";
    case Op::pw_forward: return "pw_forward";
    case Op::pw_gemv: return "pw_gemv";
    case Op::conv_forward: return "conv_forward";
    case Op::pw_backward_weight: return "pw_backward_weight";
  }
  return "?";
}

bool isa_from_name(const std::string& name, Isa* out) {
  for (int i = 0; i < kIsaCount; ++i) {
    if (name == kIsaNames[i]) {
      *out = static_cast<Isa>(i);
      return true;
    }
  }
  return false;
}

std::string supported_isas() {
  std::string out;
  for (int i = 0; i < kIsaCount; ++i) {
    if (cpu_supports(static_cast<Isa>(i))) out += (out.empty() ? "" : ",") + std::string(kIsaNames[i]);
  }
  return out;
}

Isa best_isa() {
  static const Isa best = [] {
    Isa b = Isa::scalar;
    for (int i = 0; i < kIsaCount; ++i) {
      if (cpu_supports(static_cast<Isa>(i))) b = static_cast<Isa>(i);
    }
    return b;
  }();
  return best;
}

Isa active_isa() {
  int v = g_active.load(std::memory_order_relaxed);
  return v < 0 ? best_isa() : static_cast<Isa>(v);
}

std::string set_active_isa(const std::string& name) {
  Isa isa;
  if (!isa_from_name(name, &isa)) {
    return "unknown kernel set '" + name + "'; expected one of scalar, avx2, avx512, neon";
  }
  if (!cpu_supports(isa)) {
    return "kernel set '" + name + "' is not supported by this CPU (supported: " +
           supported_isas() + ")";
  }
  g_active.store(static_cast<int>(isa), std::memory_order_relaxed);
  return "";
}

const KernelEntry* kernel_registry(int* count) {
  *count = static_cast<int>(sizeof(kRegistry) / sizeof(kRegistry[0]));
  return kRegistry;
}

const KernelEntry* select_kernel(const KernelQuery& query) {
  const Isa active = active_isa();
  for (const KernelEntry& e : kRegistry) {
    if (runs_under(e.isa, active) && kernel_serves(e, query)) {
      if (!t_record.empty()) t_record += '+';
      t_record += e.name;
      return &e;
    }
  }
  return nullptr;  // unreachable while the scalar catch-alls are registered
}

void clear_kernel_record() {
  if (t_record_scopes == 0) t_record.clear();
}
KernelRecordScope::KernelRecordScope() {
  clear_kernel_record();
  ++t_record_scopes;
}
KernelRecordScope::~KernelRecordScope() { --t_record_scopes; }
std::string last_kernels() { return t_record; }

}  // namespace dsconv
