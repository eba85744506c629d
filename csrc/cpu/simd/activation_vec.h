// Vector forms of the activations in csrc/cpu/activation.h, same formulas (and the same
// division by 6, so results match ATen's bit for bit where the inputs match). `v` is the
// second operand of max/min: x86 returns the second operand when one is NaN (NEON returns
// NaN), so NaN propagates as in ATen.
#pragma once
#include "../activation.h"

namespace dsconv::simd {

template <class V>
inline typename V::reg activate(Activation act, typename V::reg v) {
  switch (act) {
    case Activation::none:
      return v;
    case Activation::relu:
      return V::max(V::zero(), v);
    case Activation::relu6:
      return V::min(V::set1(6.0f), V::max(V::zero(), v));
    case Activation::hardswish: {
      const auto gate = V::min(V::set1(6.0f), V::max(V::zero(), V::add(v, V::set1(3.0f))));
      return V::div(V::mul(v, gate), V::set1(6.0f));
    }
  }
  return v;
}

}  // namespace dsconv::simd
