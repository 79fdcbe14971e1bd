#pragma once
// Launchers of the row-scaled e4m3 GEMM (fp8_gemm_sm90.cuh, CUTLASS's warp-specialized Hopper
// kernels): d[M, N] = bf16(a_scale[m] * (b_scale[n] * sum_k a[m, k] b[n, k]) + bias[n]), what
// at::_scaled_mm computes for row-wise scales, with other tile shapes than cuBLASLt's one kernel.
// a: [M, K] e4m3 row-major, b: [N, K] e4m3 row-major (the weight as stored), scales float32,
// bias bfloat16 (may be null), d bfloat16 row-major. Raw pointers; each launcher returns false
// (launching nothing) when it cannot serve: a build without CUTLASS, no sm_90a image for the
// device, K or N not a multiple of 16, or pointers not 16-byte aligned.
#include <cuda_runtime.h>

#include <cstdint>

#include "optimizations/quant/fp8_gemm.h"

namespace ditbench {

struct Fp8GemmOperands {
  const void* a = nullptr;         // [M, K] e4m3
  const float* a_scale = nullptr;  // [M]
  const void* b = nullptr;         // [N, K] e4m3
  const float* b_scale = nullptr;  // [N]
  const void* bias = nullptr;      // [N] bfloat16 or null
  void* d = nullptr;               // [M, N] bfloat16
  int64_t m = 0, n = 0, k = 0;
};

// Bytes of global workspace the kernel needs for these operands (0 when it needs none), or -1
// when it cannot serve them.
int64_t fp8_gemm_workspace_bytes(Fp8GemmKernel kernel, const Fp8GemmOperands& ops,
                                 Fp8GemmSchedule schedule);
bool fp8_gemm_cuda(Fp8GemmKernel kernel, const Fp8GemmOperands& ops, Fp8GemmSchedule schedule,
                   void* workspace, cudaStream_t stream);

}  // namespace ditbench
