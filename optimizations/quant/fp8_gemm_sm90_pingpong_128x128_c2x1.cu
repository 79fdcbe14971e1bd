// The pingpong_128x128_c2x1 kernel of fp8_gemm_cuda.h (one kernel per file: they compile in
// parallel).
#include "optimizations/quant/fp8_gemm_sm90.cuh"

namespace ditbench {
DITBENCH_FP8_GEMM_KERNEL(pingpong_128x128_c2x1, Pingpong<128, 128, 2, 1>)
}  // namespace ditbench
