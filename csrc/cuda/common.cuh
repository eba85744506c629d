// Device helpers shared by the CUDA kernels: element types and their accumulators, the
// dtype switch of the launchers, launch geometry and error reporting.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "launch.h"

namespace dsconv::cuda {

// Accumulator of each element type: f32 for the 16-bit types.
template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };
template <typename T> using Acc = typename AccOf<T>::type;

template <typename A, typename T> __device__ __forceinline__ A load_as(const T* p) {
  return static_cast<A>(*p);
}
template <> __device__ __forceinline__ float load_as<float, __half>(const __half* p) {
  return __half2float(*p);
}
template <> __device__ __forceinline__ float load_as<float, __nv_bfloat16>(const __nv_bfloat16* p) {
  return __bfloat162float(*p);
}

template <typename T, typename A> __device__ __forceinline__ T store_as(A v) {
  return static_cast<T>(v);
}
template <> __device__ __forceinline__ __half store_as<__half, float>(float v) {
  return __float2half_rn(v);
}
template <> __device__ __forceinline__ __nv_bfloat16 store_as<__nv_bfloat16, float>(float v) {
  return __float2bfloat16_rn(v);
}

// Bytes of one accumulator of `dtype` (Acc<T>).
inline int64_t acc_size(DType dtype) { return dtype == DType::f64 ? 8 : 4; }

// The second pass of a deterministic split reduction: out[i] = sum over e of
// ws[e * count + i], e ascending (the weight gradients' partial sums).
template <typename AccT, typename T>
__global__ void __launch_bounds__(256)
    sum_entries(const AccT* __restrict__ ws, int64_t entries, int64_t count, T* __restrict__ out) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    AccT v = AccT(0);
    for (int64_t e = 0; e < entries; ++e) v += ws[e * count + i];
    out[i] = store_as<T>(v);
  }
}

// Calls fn(T{}) with T the element type of `dtype`.
template <typename Fn> void with_element_type(DType dtype, const Fn& fn) {
  switch (dtype) {
    case DType::f32: fn(float{}); break;
    case DType::f64: fn(double{}); break;
    case DType::f16: fn(__half{}); break;
    case DType::bf16: fn(__nv_bfloat16{}); break;
  }
}

// Blocks for `work` items of `per_block` each, capped: kernels loop with a grid stride,
// so the cap only bounds the launch, never the coverage.
inline unsigned grid_for(int64_t work, int64_t per_block, int64_t cap = 65535) {
  const int64_t blocks = (work + per_block - 1) / per_block;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

inline const char* last_error() {
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace dsconv::cuda
