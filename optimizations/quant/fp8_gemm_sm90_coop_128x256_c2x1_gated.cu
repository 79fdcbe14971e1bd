// The gated-residual kernel of fp8_gemm_cuda.h: coop_128x256_c2x1's tiles and schedule with the
// residual added in the epilogue (one kernel per file: they compile in parallel).
#include "optimizations/quant/fp8_gemm_sm90.cuh"

namespace ditbench {

bool fp8_gemm_gated_residual_cuda(const Fp8GemmOperands& ops, Fp8GemmSchedule schedule,
                                  const Fp8GemmWorkspace& workspace, cudaStream_t stream) {
  static_assert(kFp8GemmGatedResidualTiles == Fp8GemmKernel::coop_128x256_c2x1);
#ifdef DITBENCH_HAS_CUTLASS
  return fp8_gemm_detail::Cooperative<128, 256, 2, 1, cutlass::gemm::PersistentScheduler,
                                      true>::run(ops, schedule, workspace, stream);
#else
  (void)ops, (void)schedule, (void)workspace, (void)stream;
  return false;
#endif
}

}  // namespace ditbench
