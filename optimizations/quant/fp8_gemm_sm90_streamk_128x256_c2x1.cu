// The streamk_128x256_c2x1 kernel of fp8_gemm_cuda.h (one kernel per file: they compile in
// parallel).
#include "optimizations/quant/fp8_gemm_sm90.cuh"

namespace ditbench {
DITBENCH_FP8_GEMM_KERNEL(streamk_128x256_c2x1,
                         Cooperative<128, 256, 2, 1, cutlass::gemm::StreamKScheduler>)
}  // namespace ditbench
