#pragma once
// The FP8 GEMM behind fp8_dynamic on CUDA: y = (x ⊙ sx) (w ⊙ sw)^T + b with e4m3 operands, one
// float32 scale per activation row and per output channel, bf16 output. Two implementations:
// at::_scaled_mm (ATen picks cuBLASLt's first heuristic answer) and a direct cuBLASLt call whose
// algorithm is chosen per problem by timing the heuristic's candidates once on the call's own
// operands (the first call of each shape pays a few dozen GEMMs; later calls reuse the choice).
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "optimizations/quant/quant.h"

namespace ditbench {

enum class Fp8GemmBackend {
  scaled_mm,      // at::_scaled_mm
  cublaslt_tuned  // cuBLASLt, the fastest of the heuristic's candidates for each problem
};
// Process-wide choice of the FP8 GEMM: by default the environment's DITBENCH_FP8_GEMM (scaled_mm
// or cublaslt; another value makes the first call throw an InputError naming it), else
// cublaslt_tuned in CUDA builds.
void set_fp8_gemm_backend(Fp8GemmBackend backend);
Fp8GemmBackend fp8_gemm_backend();

// What the tuner found for one problem (device, M, N, K, bias): the candidates the heuristic
// offered, each with its time (ms, mean of the timed runs; infinity when it failed to run), and
// the index of the one chosen (the fastest; 0 is the heuristic's own first choice).
struct Fp8GemmTuning {
  int64_t m = 0, n = 0, k = 0;
  bool bias = false;
  std::vector<double> candidate_ms;
  int chosen = 0;
};
// Every problem tuned so far in this process, in the order first seen.
std::vector<Fp8GemmTuning> fp8_gemm_tunings();

// x: values [M, K] e4m3 (read in place when the row stride is a multiple of 16 and columns are
// dense, else copied dense), scale [M, 1]; weight: values [N, K] contiguous, scale [N, 1]; bias [N]
// or undefined; K and N multiples of 16; CUDA tensors on one device. Returns [M, N] bf16. Under
// stream capture an untuned problem takes the heuristic's first algorithm (timing cannot run inside
// a capture) and is tuned at its next uncaptured call. Throws when cuBLASLt refuses the problem.
at::Tensor fp8_gemm_cublaslt(const Fp8Rows& x, const Fp8Rows& weight, const at::Tensor& bias);

}  // namespace ditbench
