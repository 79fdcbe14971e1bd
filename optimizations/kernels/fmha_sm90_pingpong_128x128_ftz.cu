// The pingpong_128x128_ftz kernel of fmha_sm90_cuda.h: pingpong_128x128 compiled with -ftz=true
// (CMakeLists).
#include "optimizations/kernels/fmha_sm90.cuh"

namespace ditbench {
DITBENCH_FMHA_KERNEL(pingpong_128x128_ftz, 128, 128,
                     cutlass::gemm::KernelTmaWarpSpecializedPingpong)
}  // namespace ditbench
