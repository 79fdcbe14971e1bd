#pragma once
// The row-scaled e4m3 GEMMs fp8_dynamic can run on Hopper besides at::_scaled_mm (cuBLASLt's one
// kernel for these scales): CUTLASS kernels with other tile shapes, clusters and schedules
// (fp8_gemm_cuda.h launches them; fp8_linear_cutlass in quant.h runs one on tensors). This header
// names them and compiles without CUDA.
#include <optional>
#include <string>

namespace ditbench {

// The kernels compiled in, named by schedule, tile shape (M x N per thread block, K 128) and
// cluster: "coop" kernels split each tile's rows between two warp groups, "streamk" ones do too
// and split the K loop of the last wave's tiles between blocks (stream-K). X(name) for each.
// (Measured and dropped: 128x128 tiles, cooperative or ping-pong, and 128x256 in 1x2 clusters,
// slower at every one of HunyuanVideo's shapes; bench/RESULTS.md.)
#define DITBENCH_FP8_GEMM_KERNELS(X) \
  X(coop_128x256_c2x1)               \
  X(coop_256x128_c1x2)               \
  X(streamk_128x256_c2x1)
#define DITBENCH_FP8_GEMM_ENUM(name) name,
enum class Fp8GemmKernel { DITBENCH_FP8_GEMM_KERNELS(DITBENCH_FP8_GEMM_ENUM) };
#undef DITBENCH_FP8_GEMM_ENUM
#define DITBENCH_FP8_GEMM_COUNT(name) +1
constexpr int kFp8GemmKernelCount = 0 DITBENCH_FP8_GEMM_KERNELS(DITBENCH_FP8_GEMM_COUNT);
#undef DITBENCH_FP8_GEMM_COUNT

// The kernel whose tiles, cluster and schedule also come with a gated-residual epilogue
// (fp8_gemm_gated_residual_cuda): the one fp8_gemm_choice picks for the large-K products it
// sends to CUTLASS, DiT blocks' output projections among them.
inline constexpr Fp8GemmKernel kFp8GemmGatedResidualTiles = Fp8GemmKernel::coop_128x256_c2x1;

// How the persistent scheduler walks the output tiles: along M or N first (or CUTLASS's choice by
// shape), how many tiles it groups (1, 2, 4 or 8) so that neighbouring blocks share operand
// tiles in L2, and over how many SMs (0: all of the device's; fewer leave the rest to other
// work, such as the row quantization of fp8_linear_overlapped).
enum class Fp8GemmRaster { heuristic, along_m, along_n };
struct Fp8GemmSchedule {
  Fp8GemmRaster raster = Fp8GemmRaster::heuristic;
  int swizzle = 1;
  int sm_count = 0;
};

// "coop_128x256_c2x1", ...
inline const char* fp8_gemm_kernel_name(Fp8GemmKernel kernel) {
#define DITBENCH_FP8_GEMM_NAME(name) \
  if (kernel == Fp8GemmKernel::name) return #name;
  DITBENCH_FP8_GEMM_KERNELS(DITBENCH_FP8_GEMM_NAME)
#undef DITBENCH_FP8_GEMM_NAME
  return "?";
}
inline std::optional<Fp8GemmKernel> parse_fp8_gemm_kernel(const std::string& name) {
#define DITBENCH_FP8_GEMM_PARSE(kernel) \
  if (name == #kernel) return Fp8GemmKernel::kernel;
  DITBENCH_FP8_GEMM_KERNELS(DITBENCH_FP8_GEMM_PARSE)
#undef DITBENCH_FP8_GEMM_PARSE
  return std::nullopt;
}

}  // namespace ditbench
