// The coop_128x256 kernel of fmha_sm90_cuda.h (one kernel per file: they compile in parallel).
#include "optimizations/kernels/fmha_sm90.cuh"

namespace ditbench {
// Two K/V stages: five (the collective's default) of 256 x 128 bf16 blocks exceed shared memory.
DITBENCH_FMHA_KERNEL(coop_128x256, 128, 256, cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                     cutlass::fmha::kernel::Option<cutlass::fmha::kernel::Tag::kStagesKV, _2>)
}  // namespace ditbench
