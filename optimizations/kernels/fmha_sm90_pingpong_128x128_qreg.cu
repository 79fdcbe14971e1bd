// The pingpong_128x128_qreg kernel of fmha_sm90_cuda.h (one kernel per file: they compile in
// parallel).
#include "optimizations/kernels/fmha_sm90.cuh"

namespace ditbench {
DITBENCH_FMHA_KERNEL(pingpong_128x128_qreg,
                     QueryRegistersPingpong<128, 128, QueryRegistersMainloop>::type)
}  // namespace ditbench
