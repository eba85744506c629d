// Kernel sets and selection: which ISA this CPU runs, which one is active, and which
// registered microkernel serves a given call. Torch-free.
#pragma once
#include <cstdint>
#include <string>

#include "shapes.h"

namespace dsconv {

// Ordered within a family: a kernel of ISA k runs when the active ISA is k or above it
// in the same family (scalar belongs to every family).
enum class Isa : int { scalar, avx2, avx512, neon };

enum class Op : int {
  dw_forward,
  dw_backward_input,
  dw_backward_weight,
  pw_forward,
  pw_gemv,
  pw_backward_weight,
  conv_forward,
};

enum class DType : int { f32, f64 };

const char* op_name(Op op);  // "dw_forward", ... as in kernels.def

const char* isa_name(Isa isa);
bool isa_from_name(const std::string& name, Isa* out);

// Every ISA the running CPU supports, scalar first.
std::string supported_isas();  // comma separated
Isa best_isa();                // the highest supported one
Isa active_isa();
// Lowers (or restores) the active ISA. Returns "" on success, else what was wrong.
std::string set_active_isa(const std::string& name);

struct KernelEntry {
  const char* name;
  Op op;
  Isa isa;
  DType dtype;
  int layout;  // -1: any, else a Layout
  int kernel_h, kernel_w, stride_h, stride_w, dilation, multiplier;  // 0: any
  void (*fn)();
  void (*pack)();  // null: the kernel reads ATen's weight layout
};

struct KernelQuery {
  Op op;
  DType dtype;
  Layout layout;
  int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1;
  int64_t dilation_h = 1, dilation_w = 1, multiplier = 1;
};

const KernelEntry* kernel_registry(int* count);

// Whether `entry` computes `query` (op, dtype, layout, geometry), whatever the active ISA.
bool kernel_serves(const KernelEntry& entry, const KernelQuery& query);

// The first registered kernel the active ISA runs that matches the query (never null:
// the scalar reference matches everything). Also appends its name to this thread's
// record of the current call (see last_kernels).
const KernelEntry* select_kernel(const KernelQuery& query);

// Names of the kernels the last op called on this thread selected, joined with '+'.
void clear_kernel_record();
std::string last_kernels();

// Starts the record of an op that runs other ops: while one is alive on this thread, their
// clear_kernel_record() keeps the record, so it lists every kernel the outer op ran.
class KernelRecordScope {
 public:
  KernelRecordScope();
  ~KernelRecordScope();
  KernelRecordScope(const KernelRecordScope&) = delete;
  KernelRecordScope& operator=(const KernelRecordScope&) = delete;
};

template <typename Fn>
Fn kernel_fn(const KernelEntry* entry) {
  return reinterpret_cast<Fn>(entry->fn);
}

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() { return DType::f32; }
template <>
constexpr DType dtype_of<double>() { return DType::f64; }

}  // namespace dsconv
