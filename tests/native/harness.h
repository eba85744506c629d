// The native tests' small harness (no test framework: the program is also cross-compiled
// for aarch64, where none is installed): seeded random data, output buffers with guard
// zones, and a per-kernel tally that records the first few mismatches.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace dsconv::native {

// Deterministic data (the same on every host), uniform in [-1, 1).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  float uniform() {
    state_ = state_ * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>(static_cast<int64_t>(state_ >> 40) - (1 << 23)) / float(1 << 23);
  }
  // Uniform in [0, n), by integer arithmetic only (the same cases on every host: float
  // arithmetic may contract into FMAs on one compiler and not another).
  int64_t below(int64_t n) {
    state_ = state_ * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<int64_t>((state_ >> 33) % static_cast<uint64_t>(n));
  }
  std::vector<float> fill(int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = uniform();
    return v;
  }

 private:
  uint64_t state_;
};

// A float buffer with untouchable guard zones on both sides; every element starts as
// the sentinel, so a test can tell which elements a kernel wrote.
class Output {
 public:
  static constexpr int64_t kGuard = 64;
  static constexpr float kSentinel = -7.3e33f;

  explicit Output(int64_t n) : v_(static_cast<size_t>(n + 2 * kGuard), kSentinel), n_(n) {}
  float* data() { return v_.data() + kGuard; }
  const float& operator[](int64_t i) const { return v_[static_cast<size_t>(kGuard + i)]; }
  int64_t size() const { return n_; }
  bool written(int64_t i) const { return (*this)[i] != kSentinel; }
  bool guards_intact() const {
    for (int64_t i = 0; i < kGuard; ++i) {
      if (v_[static_cast<size_t>(i)] != kSentinel ||
          v_[static_cast<size_t>(kGuard + n_ + i)] != kSentinel) {
        return false;
      }
    }
    return true;
  }

 private:
  std::vector<float> v_;
  int64_t n_;
};

inline std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }
inline std::vector<double> absolute(std::vector<double> v) {
  for (double& x : v) x = std::fabs(x);
  return v;
}

// Cases and failures of one kernel. A case fails on its first bad element; the first
// few failures are printed with the case and the element.
class Tally {
 public:
  explicit Tally(std::string kernel) : kernel_(std::move(kernel)) {}
  void pass() { ++cases_; }
  void fail(const std::string& what_case, const std::string& what_wrong) {
    ++cases_, ++failures_;
    if (failures_ <= kPrinted) {
      std::printf("  FAIL %s: %s: %s\n", kernel_.c_str(), what_case.c_str(), what_wrong.c_str());
    }
  }
  int64_t cases() const { return cases_; }
  int64_t failures() const { return failures_; }

 private:
  static constexpr int64_t kPrinted = 5;
  std::string kernel_;
  int64_t cases_ = 0, failures_ = 0;
};

// Compares a kernel's float output with the double oracle. `bound` is the oracle run on
// absolute values (the sum of |terms|), which scales the rounding allowance; `in_range`
// says which elements the calls were asked to write (the others must keep the sentinel).
template <typename InRange>
std::string compare(const Output& got, const std::vector<double>& want,
                    const std::vector<double>& bound, InRange in_range) {
  char msg[160];
  if (!got.guards_intact()) return "wrote outside the output buffer";
  for (int64_t i = 0; i < got.size(); ++i) {
    if (!in_range(i)) {
      if (got.written(i)) {
        std::snprintf(msg, sizeof msg, "element %lld is outside the requested range but was written",
                      static_cast<long long>(i));
        return msg;
      }
      continue;
    }
    const double g = got[i], w = want[static_cast<size_t>(i)];
    const double tol = 1e-5 * (1.0 + bound[static_cast<size_t>(i)]);
    if (!got.written(i) || !(std::fabs(g - w) <= tol)) {
      std::snprintf(msg, sizeof msg, "element %lld: got %.9g, want %.9g (tolerance %.3g)%s",
                    static_cast<long long>(i), g, w, tol, got.written(i) ? "" : " [not written]");
      return msg;
    }
  }
  return "";
}

}  // namespace dsconv::native
