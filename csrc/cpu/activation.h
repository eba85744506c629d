// The one list of activations every op accepts. Python reads the names from here
// (dsconv_ext._C.activation_names()), so a new activation is one line below plus
// its formula in apply_activation.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>

// Host and device (CUDA kernels use the same formulas); empty for the host compiler.
#ifdef __CUDACC__
#define DSCONV_HOST_DEVICE __host__ __device__
#else
#define DSCONV_HOST_DEVICE
#endif

namespace dsconv {

#define DSCONV_ACTIVATIONS(X) \
  X(none)                     \
  X(relu)                     \
  X(relu6)                    \
  X(hardswish)

enum class Activation : int {
#define DSCONV_ENUM_ENTRY(name) name,
  DSCONV_ACTIVATIONS(DSCONV_ENUM_ENTRY)
#undef DSCONV_ENUM_ENTRY
};

inline const char* const* activation_names(int* count) {
  static const char* const names[] = {
#define DSCONV_NAME_ENTRY(name) #name,
      DSCONV_ACTIVATIONS(DSCONV_NAME_ENTRY)
#undef DSCONV_NAME_ENTRY
  };
  *count = static_cast<int>(sizeof(names) / sizeof(names[0]));
  return names;
}

// The gates a squeeze-excite applies to its channel scores (its last step): a separate
// list, since the other ops do not apply them. Python reads it (dsconv_ext._C.gate_names()).
#define DSCONV_GATES(X) \
  X(hardsigmoid)        \
  X(sigmoid)

enum class Gate : int {
#define DSCONV_ENUM_ENTRY(name) name,
  DSCONV_GATES(DSCONV_ENUM_ENTRY)
#undef DSCONV_ENUM_ENTRY
};

inline const char* const* gate_names(int* count) {
  static const char* const names[] = {
#define DSCONV_NAME_ENTRY(name) #name,
      DSCONV_GATES(DSCONV_NAME_ENTRY)
#undef DSCONV_NAME_ENTRY
  };
  *count = static_cast<int>(sizeof(names) / sizeof(names[0]));
  return names;
}

// Index of `name` in a name list, -1 when absent.
inline int find_name(const char* const* names, int count, const char* name) {
  for (int i = 0; i < count; ++i) {
    if (std::strcmp(names[i], name) == 0) return i;
  }
  return -1;
}

// Returns false when `name` is not in the list.
inline bool parse_activation(const char* name, Activation* out) {
  int count = 0;
  const char* const* names = activation_names(&count);
  const int i = find_name(names, count, name);
  if (i < 0) return false;
  *out = static_cast<Activation>(i);
  return true;
}

inline bool parse_gate(const char* name, Gate* out) {
  int count = 0;
  const char* const* names = gate_names(&count);
  const int i = find_name(names, count, name);
  if (i < 0) return false;
  *out = static_cast<Gate>(i);
  return true;
}

// Scalar definitions, identical to ATen's: relu6 = clamp(v, 0, 6),
// hardswish = v * clamp(v + 3, 0, 6) / 6. NaN propagates through each, as in ATen
// (comparisons with NaN are false, so NaN takes the `v` branch).
template <typename T>
DSCONV_HOST_DEVICE inline T clamp_0_6(T v) {
  return v < T(0) ? T(0) : (v > T(6) ? T(6) : v);
}

template <typename T>
DSCONV_HOST_DEVICE inline T apply_activation(Activation act, T v) {
  switch (act) {
    case Activation::none:
      return v;
    case Activation::relu:
      return v < T(0) ? T(0) : v;
    case Activation::relu6:
      return clamp_0_6(v);
    case Activation::hardswish:
      return v * clamp_0_6(v + T(3)) / T(6);
  }
  return v;
}

// As ATen: hardsigmoid = clamp(v + 3, 0, 6) / 6, sigmoid = 1 / (1 + exp(-v)); NaN propagates.
template <typename T>
DSCONV_HOST_DEVICE inline T apply_gate(Gate gate, T v) {
  if (gate == Gate::hardsigmoid) return clamp_0_6(v + T(3)) / T(6);
  return T(1) / (T(1) + std::exp(-v));
}

}  // namespace dsconv
