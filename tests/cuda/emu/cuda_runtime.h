// A CPU stand-in for the CUDA runtime, just enough to run the kernels of csrc/cuda on the
// host. Each block's threads are fibers (ucontext) on one OS thread: every fiber runs until
// its next __syncthreads (or its end), then the next fiber runs; a round over all fibers is
// one barrier phase. Rounds alternate between ascending and descending thread order, so a
// read of shared memory that lacks a barrier sees stale data in one of the orders. Checks
// that all threads of a block pass the same number of barriers. Blocks run one after
// another, so __shared__ (static storage) is per block. Used by tests/cuda/emulate.sh; it
// says nothing about warp behaviour, memory coalescing or performance.
#pragma once
#include <ucontext.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using cudaStream_t = struct CUstream_st*;
using cudaError_t = int;
constexpr cudaError_t cudaSuccess = 0;
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost };

inline dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emu {
struct Fiber {
  ucontext_t ctx;
  std::vector<char> stack;
  bool done = false;
  long syncs = 0;
};
inline ucontext_t g_main;
inline Fiber* g_current = nullptr;
inline std::function<void()> g_body;
inline int g_error = 0;

inline void fiber_entry() {
  g_body();
  g_current->done = true;  // returns to uc_link (g_main)
}
}  // namespace emu

inline void __syncthreads() {
  ++emu::g_current->syncs;
  swapcontext(&emu::g_current->ctx, &emu::g_main);
}

using std::max;
using std::min;

inline cudaError_t cudaGetLastError() { return emu::g_error; }
inline const char* cudaGetErrorString(cudaError_t) { return "emulated launch failed"; }
inline cudaError_t cudaDeviceSynchronize() { return emu::g_error; }
inline cudaError_t cudaMalloc(void* p, size_t n) {
  *static_cast<void**>(p) = std::calloc(n, 1);
  return cudaSuccess;
}
inline cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind) {
  std::memcpy(d, s, n);
  return cudaSuccess;
}

namespace emu {
struct Launch {
  dim3 grid, block;
  size_t smem = 0;
  cudaStream_t stream = nullptr;

  template <typename... P, typename... A>
  void run(void (*kernel)(P...), A&&... args) const {
    const unsigned threads = block.x * block.y * block.z;
    if (threads == 0 || threads > 1024 || grid.y > 65535 || grid.z > 65535 || grid.x == 0) {
      std::fprintf(stderr, "emu: bad launch grid %u,%u,%u block %u\n", grid.x, grid.y, grid.z, threads);
      g_error = 1;
      return;
    }
    std::vector<Fiber> fibers(threads);
    for (auto& f : fibers) f.stack.resize(1 << 16);
    g_body = [&] { kernel(args...); };
    blockDim = block;
    gridDim = grid;
    const unsigned blocks = grid.x * grid.y * grid.z;
    for (unsigned b = 0; b < blocks; ++b) {
      blockIdx = dim3(b % grid.x, b / grid.x % grid.y, b / (grid.x * grid.y));
      for (auto& f : fibers) {
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack.data();
        f.ctx.uc_stack.ss_size = f.stack.size();
        f.ctx.uc_link = &g_main;
        makecontext(&f.ctx, fiber_entry, 0);
        f.done = false;
        f.syncs = 0;
      }
      for (bool ascending = true, any = true; any; ascending = !ascending) {
        any = false;
        for (unsigned i = 0; i < threads; ++i) {
          const unsigned t = ascending ? i : threads - 1 - i;
          Fiber& f = fibers[t];
          if (f.done) continue;
          threadIdx = dim3(t % block.x, t / block.x % block.y, t / (block.x * block.y));
          g_current = &f;
          swapcontext(&g_main, &f.ctx);
          any = true;
        }
      }
      for (const auto& f : fibers) {
        if (f.syncs != fibers[0].syncs) {
          std::fprintf(stderr, "emu: threads of block %u passed different numbers of "
                               "__syncthreads\n", b);
          g_error = 1;
          break;
        }
      }
    }
  }
};
}  // namespace emu
