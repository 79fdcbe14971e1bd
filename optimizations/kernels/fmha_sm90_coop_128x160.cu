// The coop_128x160 kernel of fmha_sm90_cuda.h (one kernel per file: they compile in parallel).
#include "optimizations/kernels/fmha_sm90.cuh"

namespace ditbench {
DITBENCH_FMHA_KERNEL(coop_128x160, 128, 160, cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                     Option<Tag::kStagesKV, Int<4>>)
}  // namespace ditbench
