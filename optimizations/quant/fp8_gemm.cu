// Dispatch of fp8_gemm_cuda.h over the kernels of the fp8_gemm_sm90_*.cu files.
#include "optimizations/quant/fp8_gemm_sm90.cuh"

namespace ditbench {

bool fp8_gemm_cuda(Fp8GemmKernel kernel, const Fp8GemmOperands& ops, Fp8GemmSchedule schedule,
                   const Fp8GemmWorkspace& workspace, cudaStream_t stream) {
#define DITBENCH_FP8_GEMM_RUN(name) \
  if (kernel == Fp8GemmKernel::name) return fp8_gemm_##name(ops, schedule, workspace, stream);
  DITBENCH_FP8_GEMM_KERNELS(DITBENCH_FP8_GEMM_RUN)
#undef DITBENCH_FP8_GEMM_RUN
  return false;
}

}  // namespace ditbench
