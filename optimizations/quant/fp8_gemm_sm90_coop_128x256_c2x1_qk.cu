// The q | k | v kernel of fp8_gemm_cuda.h: coop_128x256_c2x1's tiles and schedule with the q and
// k heads' RMSNorm and rotary embedding in the epilogue (one kernel per file: they compile in
// parallel).
#include "optimizations/quant/fp8_gemm_sm90.cuh"

namespace ditbench {

bool fp8_gemm_qk_norm_rope_cuda(const Fp8GemmOperands& ops, const Fp8QkNormRope& qk,
                                Fp8GemmSchedule schedule, const Fp8GemmWorkspace& workspace,
                                cudaStream_t stream) {
#ifdef DITBENCH_HAS_CUTLASS
  Fp8GemmOperands with_qk = ops;
  with_qk.qk = &qk;
  return fp8_gemm_detail::Cooperative<128, 256, 2, 1, cutlass::gemm::PersistentScheduler,
                                      fp8_gemm_detail::Fp8Epilogue::qk_norm_rope>::run(with_qk,
                                                                                       schedule,
                                                                                       workspace,
                                                                                       stream);
#else
  (void)ops, (void)qk, (void)schedule, (void)workspace, (void)stream;
  return false;
#endif
}

}  // namespace ditbench
