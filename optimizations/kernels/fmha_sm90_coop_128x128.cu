// The coop_128x128 kernel of fmha_sm90_cuda.h (one kernel per file: they compile in parallel).
#include "optimizations/kernels/fmha_sm90.cuh"

namespace ditbench {
DITBENCH_FMHA_KERNEL(coop_128x128,
                     Built<128, 128, cutlass::gemm::KernelTmaWarpSpecializedCooperative>)
}  // namespace ditbench
