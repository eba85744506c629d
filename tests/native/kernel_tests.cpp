// Native (torch-free) tests of every registered kernel (csrc/cpu/kernels.def) of every
// kernel set this CPU runs, against the double-precision scalar reference of the same op.
// Built for the host and, cross-compiled, for aarch64 under qemu (scripts/native_tests.sh).
//
// Each case packs the weight as the entry says, calls the kernel on a middle range of
// units (rows, pixels or channels) first and checks that nothing else was written, then
// fills in the other ranges, and compares every element with the oracle, allowing for
// float rounding in proportion to the sum of |terms| (the oracle on absolute values).
// Exit status 1 when any case fails or any registered op has no oracle.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../../csrc/cpu/kernel_decls.h"
#include "problems.h"

namespace dsconv::native {

int64_t fused_driver_tests(int64_t* cases);  // fused_tests.cpp

namespace {

// Calls the kernel fn (dtype T) for units [u0, u1) of image n.
template <typename T>
void call(const Problem& p, void (*fn)(), const T* a, const T* b, const T* c, T* out, int64_t n,
          int64_t u0, int64_t u1) {
  using K = KernelTypes<T>;
  const DwShape& d = p.dw;
  const PwShape& w = p.pw;
  switch (p.op) {
    case Op::dw_forward:
      return reinterpret_cast<typename K::DwForward>(fn)(d, a + n * d.x_ns, b, c,
                                                         out + n * d.y_ns + u0 * d.y_hs, u0, u1);
    case Op::dw_backward_input:
      return reinterpret_cast<typename K::DwBackwardInput>(fn)(d, a + n * d.y_ns, b,
                                                               out + n * d.x_ns + u0 * d.x_hs, u0, u1);
    case Op::dw_backward_weight:
      return reinterpret_cast<typename K::DwBackwardWeight>(fn)(d, a, b, out + u0 * d.kernel_h * d.kernel_w,
                                                                u0, u1);
    case Op::pw_forward:
      return reinterpret_cast<typename K::PwForward>(fn)(w, a + n * w.x_ns + u0 * w.x_ps, b, c,
                                                         out + n * w.y_ns + u0 * w.y_ps, u1 - u0);
    case Op::conv_forward:
      return reinterpret_cast<typename K::ConvForward>(fn)(p.conv, a + n * p.conv.x_ns, b, c,
                                                           out + n * p.conv.y_ns + u0 * p.conv.y_hs, u0, u1);
    case Op::pw_gemv:
      return reinterpret_cast<typename K::PwGemv>(fn)(w, a + n * w.x_ns, b, c,
                                                      out + n * w.y_ns + u0 * w.y_cs, w.pixels, u0, u1);
    case Op::pw_backward_weight:
      return reinterpret_cast<typename K::PwBackwardWeight>(fn)(w, a, b, out + u0 * w.in_channels, u0, u1);
  }
}

// The weight as the entry's kernel reads it (packed when it registers a packing function).
std::vector<float> kernel_weight(const KernelEntry& e, const Problem& p, const std::vector<float>& w) {
  if (e.pack == nullptr) return w;
  if (p.op == Op::dw_backward_weight || p.op == Op::pw_backward_weight) {
    std::printf("  %s: a packing function for a weight-gradient kernel is not supported here\n", e.name);
    std::exit(1);
  }
  std::vector<float> packed;
  if (p.op == Op::conv_forward) {
    const auto pack = reinterpret_cast<KernelTypes<float>::ConvPack>(e.pack);
    packed.resize(static_cast<size_t>(pack(p.conv, w.data(), nullptr)));
    pack(p.conv, w.data(), packed.data());
  } else if (p.is_dw()) {
    const auto pack = reinterpret_cast<KernelTypes<float>::DwPack>(e.pack);
    packed.resize(static_cast<size_t>(pack(p.dw, w.data(), nullptr)));
    pack(p.dw, w.data(), packed.data());
  } else {
    const auto pack = reinterpret_cast<KernelTypes<float>::PwPack>(e.pack);
    packed.resize(static_cast<size_t>(pack(p.pw, w.data(), nullptr)));
    pack(p.pw, w.data(), packed.data());
  }
  return packed;
}

// The oracle's output on every unit of every image.
std::vector<double> oracle(const KernelEntry& ref, const Problem& p, const std::vector<double>& a,
                           const std::vector<double>& b, const std::vector<double>& c) {
  std::vector<double> out(static_cast<size_t>(p.out_size));
  for (int64_t n = 0; n < p.images; ++n) {
    call<double>(p, ref.fn, a.data(), b.data(), p.bias ? c.data() : nullptr, out.data(), n, 0, p.units);
  }
  return out;
}

// A pointwise weight [C_out][C_in] laid out input-major, inputs w_ks apart (PwShape::w_ks);
// the padding is NaN, which a kernel reading it would spread into the output.
std::vector<float> input_major(const PwShape& s, const std::vector<float>& w) {
  std::vector<float> out(static_cast<size_t>(s.in_channels * s.w_ks), std::nanf(""));
  for (int64_t co = 0; co < s.out_channels; ++co) {
    for (int64_t k = 0; k < s.in_channels; ++k) out[k * s.w_ks + co] = w[co * s.in_channels + k];
  }
  return out;
}

// "" when the kernel matches the oracle on problem p, else what went wrong. A pointwise
// problem with pw.w_ks set gives the kernel the weight input-major (the oracle, a kernel
// without a packing, reads ATen's layout whatever w_ks says).
std::string check(const KernelEntry& e, const KernelEntry& ref, const Problem& p, uint64_t seed) {
  Rng rng(seed);
  const std::vector<float> a = rng.fill(p.a_size), b = rng.fill(p.b_size), c = rng.fill(p.c_size);
  const std::vector<float> w = p.op == Op::dw_backward_weight || p.op == Op::pw_backward_weight
                                   ? b
                               : p.op == Op::pw_forward && p.pw.w_ks ? input_major(p.pw, b)
                                                                     : kernel_weight(e, p, b);
  const float* bias = p.bias ? c.data() : nullptr;
  const std::vector<double> want = oracle(ref, p, to_double(a), to_double(b), to_double(c));
  Problem unsigned_p = p;  // the bound: no activation, absolute values
  unsigned_p.dw.activation = unsigned_p.pw.activation = unsigned_p.conv.activation = Activation::none;
  const std::vector<double> bound =
      oracle(ref, unsigned_p, absolute(to_double(a)), absolute(to_double(b)), absolute(to_double(c)));

  // Units [u0, u1) of image 0 first; then everything else.
  const int64_t u0 = p.units / 3, u1 = std::max(u0 + 1, (2 * p.units + 2) / 3);
  Output out(p.out_size);
  call<float>(p, e.fn, a.data(), w.data(), bias, out.data(), 0, u0, u1);
  std::string err = compare(out, want, bound, [&](int64_t i) {
    const int64_t u = p.unit_of(i);
    return p.image_of(i) == 0 && u >= u0 && u < u1;
  });
  if (!err.empty()) return "units [" + std::to_string(u0) + ", " + std::to_string(u1) + ") alone: " + err;
  for (int64_t n = 0; n < p.images; ++n) {
    if (n == 0) {
      if (u0 > 0) call<float>(p, e.fn, a.data(), w.data(), bias, out.data(), 0, 0, u0);
      if (u1 < p.units) call<float>(p, e.fn, a.data(), w.data(), bias, out.data(), 0, u1, p.units);
    } else {
      call<float>(p, e.fn, a.data(), w.data(), bias, out.data(), n, 0, p.units);
    }
  }
  return compare(out, want, bound, [](int64_t) { return true; });
}

const KernelEntry* oracle_for(const KernelEntry& e, const KernelEntry* all, int count) {
  for (int i = 0; i < count; ++i) {
    const KernelEntry& r = all[i];
    if (r.op == e.op && r.dtype == DType::f64 && r.isa == Isa::scalar && r.pack == nullptr &&
        r.layout < 0 && r.kernel_h == 0 && r.kernel_w == 0 && r.stride_h == 0 && r.stride_w == 0 &&
        r.dilation == 0 && r.multiplier == 0) {
      return &r;
    }
  }
  return nullptr;
}

bool cpu_runs(Isa isa) {
  const std::string supported = "," + supported_isas() + ",";
  return supported.find("," + std::string(isa_name(isa)) + ",") != std::string::npos;
}

}  // namespace
}  // namespace dsconv::native

int main(int argc, char** argv) {
  using namespace dsconv;
  using namespace dsconv::native;
  const char* only = argc > 1 ? argv[1] : nullptr;  // optional: a substring of kernel names
  int count = 0;
  const KernelEntry* all = kernel_registry(&count);
  std::printf("native kernel tests: %d registered kernels; this CPU runs: %s\n", count,
              supported_isas().c_str());
  int64_t total_cases = 0, failed_kernels = 0, tested = 0;
  for (int i = 0; i < count; ++i) {
    const KernelEntry& e = all[i];
    if (only != nullptr && std::strstr(e.name, only) == nullptr) continue;
    const KernelEntry* ref = oracle_for(e, all, count);
    if (ref == &e) {
      std::printf("%-40s %-20s the oracle\n", e.name, op_name(e.op));
      continue;
    }
    if (ref == nullptr) {
      std::printf("%-40s %-20s FAIL: no f64 scalar reference for this op\n", e.name, op_name(e.op));
      ++failed_kernels;
      continue;
    }
    if (!cpu_runs(e.isa)) {
      std::printf("%-40s %-20s skipped: this CPU lacks %s\n", e.name, op_name(e.op), isa_name(e.isa));
      continue;
    }
    if (e.dtype != DType::f32) {
      std::printf("%-40s %-20s skipped: only f32 kernels are compared with the f64 oracle\n", e.name,
                  op_name(e.op));
      continue;
    }
    Tally tally(e.name);
    uint64_t seed = 1;
    for (const Problem& p : problems_for(e)) {
      std::vector<Problem> variants{p};
      if (e.op == Op::pw_forward && e.pack != nullptr) {  // also the weight read in place
        Problem q = p;
        q.pw.w_ks = p.pw.out_channels + static_cast<int64_t>(seed % 3) * 7;  // padded or not
        q.text += " w_ks=" + std::to_string(q.pw.w_ks);
        variants.push_back(q);
      }
      for (const Problem& v : variants) {
        const std::string err = check(e, *ref, v, seed++);
        if (err.empty()) {
          tally.pass();
        } else {
          tally.fail(v.text, err);
        }
      }
    }
    ++tested;
    total_cases += tally.cases();
    const bool ok = tally.failures() == 0 && tally.cases() > 0;
    failed_kernels += ok ? 0 : 1;
    std::printf("%-40s %-20s %6lld cases  %s\n", e.name, op_name(e.op), static_cast<long long>(tally.cases()),
                ok ? "ok" : tally.cases() == 0 ? "FAIL (no case matched)" : "FAIL");
  }
  std::printf("%lld kernels tested, %lld cases, %lld kernels failed\n", static_cast<long long>(tested),
              static_cast<long long>(total_cases), static_cast<long long>(failed_kernels));
  int64_t fused_cases = 0, fused_failed = 0;
  if (only == nullptr) {
    fused_failed = fused_driver_tests(&fused_cases);
    std::printf("fused drivers: %lld cases, %lld failed\n", static_cast<long long>(fused_cases),
                static_cast<long long>(fused_failed));
  }
  return failed_kernels == 0 && fused_failed == 0 && (only != nullptr || tested > 0) ? 0 : 1;
}
