// Dispatch of fp8_gemm_cuda.h over the kernels of the fp8_gemm_sm90_*.cu files.
#include "optimizations/quant/fp8_gemm_sm90.cuh"

namespace ditbench {

int64_t fp8_gemm_workspace_bytes(Fp8GemmKernel kernel, const Fp8GemmOperands& ops,
                                 Fp8GemmSchedule schedule) {
#define DITBENCH_FP8_GEMM_WORKSPACE(name) \
  if (kernel == Fp8GemmKernel::name) return fp8_gemm_workspace_bytes_##name(ops, schedule);
  DITBENCH_FP8_GEMM_KERNELS(DITBENCH_FP8_GEMM_WORKSPACE)
#undef DITBENCH_FP8_GEMM_WORKSPACE
  return -1;
}

bool fp8_gemm_cuda(Fp8GemmKernel kernel, const Fp8GemmOperands& ops, Fp8GemmSchedule schedule,
                   void* workspace, cudaStream_t stream) {
#define DITBENCH_FP8_GEMM_RUN(name) \
  if (kernel == Fp8GemmKernel::name) return fp8_gemm_##name(ops, schedule, workspace, stream);
  DITBENCH_FP8_GEMM_KERNELS(DITBENCH_FP8_GEMM_RUN)
#undef DITBENCH_FP8_GEMM_RUN
  return false;
}

}  // namespace ditbench
