// The pingpong_128x192 kernel of fmha_sm90_cuda.h (one kernel per file: they compile in parallel).
#include "optimizations/kernels/fmha_sm90.cuh"

namespace ditbench {
// Three K/V stages: four of 192 x 128 bf16 blocks exceed shared memory (247,296 bytes).
DITBENCH_FMHA_KERNEL(pingpong_128x192, 128, 192, cutlass::gemm::KernelTmaWarpSpecializedPingpong,
                     cutlass::fmha::kernel::Option<cutlass::fmha::kernel::Tag::kStagesKV, _3>)
}  // namespace ditbench
