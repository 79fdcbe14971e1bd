// The pingpong_128x128_qreg_c2x1_lazy kernel of fmha_sm90_cuda.h (one kernel per file: they
// compile in parallel).
#include "optimizations/kernels/fmha_sm90.cuh"

namespace ditbench {
DITBENCH_FMHA_KERNEL(pingpong_128x128_qreg_c2x1_lazy,
                     QueryRegistersPingpong<128, 128, SharedKeysLazyRescaleMainloop>::type)
}  // namespace ditbench
