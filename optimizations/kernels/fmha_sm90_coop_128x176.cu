// The coop_128x176 kernel of fmha_sm90_cuda.h (one kernel per file: they compile in parallel).
#include "optimizations/kernels/fmha_sm90.cuh"

namespace ditbench {
DITBENCH_FMHA_KERNEL(coop_128x176, 128, 176, cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                     Option<Tag::kStagesKV, Int<4>>)
}  // namespace ditbench
