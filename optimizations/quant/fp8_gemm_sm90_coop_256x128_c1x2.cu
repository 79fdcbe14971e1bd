// The coop_256x128_c1x2 kernel of fp8_gemm_cuda.h (one kernel per file: they compile in parallel).
#include "optimizations/quant/fp8_gemm_sm90.cuh"

namespace ditbench {
DITBENCH_FP8_GEMM_KERNEL(coop_256x128_c1x2, Cooperative<256, 128, 1, 2>)
}  // namespace ditbench
