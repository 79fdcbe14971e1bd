#pragma once
// Launchers of the row-scaled e4m3 GEMM (fp8_gemm_sm90.cuh, CUTLASS's warp-specialized Hopper
// kernels): d[M, N] = bf16(a_scale[m] * (b_scale[n] * sum_k a[m, k] b[n, k]) + bias[n]), what
// at::_scaled_mm computes for row-wise scales, with other tile shapes than cuBLASLt's one kernel.
// a: [M, K] e4m3 row-major, b: [N, K] e4m3 row-major (the weight as stored), scales float32,
// bias bfloat16 (may be null), d bfloat16 row-major. Raw pointers; each launcher returns false
// (launching nothing) when it cannot serve: a build without CUTLASS, no sm_90a image for the
// device, K or N not a multiple of 16, or pointers not 16-byte aligned.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>

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
  // When `a` and `a_scale` are still being written by a row quantizer running beside the GEMM
  // (quantize_rows_fp8_signalled_cuda): its counters, one per `rows_per_flag` rows, which the
  // GEMM waits to see complete before it reads a tile's rows. Null: the rows are ready.
  const int* rows_ready = nullptr;
  int rows_per_flag = 128;
  // For fp8_gemm_gated_residual_cuda: residual [M, N] and gate [N], bfloat16, contiguous.
  const void* residual = nullptr;
  const void* gate = nullptr;
};

// Device memory of at least `bytes`, valid for the kernel launched next on the stream.
using Fp8GemmWorkspace = std::function<void*(size_t bytes)>;

// Launches `kernel` on `stream`, asking `workspace` for global memory when the kernel needs some
// (stream-K's partial tiles).
bool fp8_gemm_cuda(Fp8GemmKernel kernel, const Fp8GemmOperands& ops, Fp8GemmSchedule schedule,
                   const Fp8GemmWorkspace& workspace, cudaStream_t stream);

// The kernel whose epilogue also adds a gated residual (a DiT block's x + gate * proj(h)):
// d[m, n] = bf16(residual[m, n] + bf16(gate[n] * bf16(a_scale[m] * b_scale[n] * acc + bias[n]))),
// each step rounded as the bfloat16 ATen chain `residual + y * gate` rounds it, so the result
// equals that chain on this kernel's product bit for bit without the product being written.
// The tiles, cluster and schedule of kFp8GemmGatedResidualTiles (fp8_gemm.h); false as
// fp8_gemm_cuda, and also when
// residual or gate is missing or not 16-byte aligned, or rows_ready is set.
bool fp8_gemm_gated_residual_cuda(const Fp8GemmOperands& ops, Fp8GemmSchedule schedule,
                                  const Fp8GemmWorkspace& workspace, cudaStream_t stream);

}  // namespace ditbench
