#pragma once
// The row-scaled e4m3 GEMM of fp8_gemm_cuda.h as one CUTLASS kernel per tile shape, cluster and
// schedule: TMA loads, warp-specialized WGMMA with fast accumulation, a persistent tile scheduler,
// and an epilogue visitor tree that scales the float32 accumulator by the weight's per-column and
// the activation's per-row scale, adds the bias and rounds to bf16 before the TMA store.
// Each fp8_gemm_sm90_*.cu instantiates one kernel (nvcc compiles them in parallel).
#include <optional>

#include "optimizations/kernels/launch.cuh"
#include "optimizations/quant/fp8_gemm_cuda.h"

#ifdef DITBENCH_HAS_CUTLASS
#include <cutlass/cutlass.h>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
#include <cute/tensor.hpp>
#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/epilogue/fusion/sm90_callbacks_tma_warpspecialized.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/gemm/dispatch_policy.hpp>
#include <cutlass/gemm/kernel/gemm_universal.hpp>
#include <cutlass/util/packed_stride.hpp>
#endif

namespace ditbench {
namespace fp8_gemm_detail {

// Whether the operands suit every kernel: TMA and the epilogue's vector loads want 16-byte
// aligned rows and bases.
inline bool operands_fit(const Fp8GemmOperands& ops) {
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return ops.m > 0 && ops.n > 0 && ops.k > 0 && ops.k % 16 == 0 && ops.n % 16 == 0 &&
         ops.m < (int64_t(1) << 31) && ops.n < (int64_t(1) << 31) && ops.k < (int64_t(1) << 31) &&
         aligned(ops.a) && aligned(ops.b) && aligned(ops.d) && ops.a_scale && ops.b_scale &&
         aligned(ops.a_scale) && aligned(ops.b_scale) && (ops.bias == nullptr || aligned(ops.bias));
}

#ifdef DITBENCH_HAS_CUTLASS
// sm_90a kernels run on compute capability 9.0 only.
inline bool device_is_sm90() {
  int device = 0, major = 0, minor = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
  return major == 9 && minor == 0;
}

template <class TileShape, class ClusterShape, class MainloopSchedule, class EpilogueSchedule,
          class TileScheduler = cutlass::gemm::PersistentScheduler>
struct RowScaledGemm {
  using Acc = cutlass::epilogue::fusion::Sm90AccFetch;
  // a_scale[m] broadcast along a row of the tile, b_scale[n] and bias[n] along a column.
  using RowScale = cutlass::epilogue::fusion::Sm90ColBroadcast<0, TileShape, float, float>;
  using ColScale = cutlass::epilogue::fusion::Sm90RowBroadcast<0, TileShape, float, float>;
  using Bias =
      cutlass::epilogue::fusion::Sm90RowBroadcast<0, TileShape, cutlass::bfloat16_t, float>;
  using Round = cutlass::FloatRoundStyle;
  using Scaled = cutlass::epilogue::fusion::Sm90EVT<  // b_scale[n] * acc
      cutlass::epilogue::fusion::Sm90Compute<cutlass::multiplies, float, float,
                                             Round::round_to_nearest>,
      ColScale, Acc>;
  using Output = cutlass::epilogue::fusion::Sm90EVT<  // a_scale[m] * scaled + bias[n] -> bf16
      cutlass::epilogue::fusion::Sm90Compute<cutlass::multiply_add, cutlass::bfloat16_t, float,
                                             Round::round_to_nearest>,
      RowScale, Scaled, Bias>;

  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float,  //
      void, cutlass::layout::RowMajor, 8,                             // no source matrix C
      cutlass::bfloat16_t, cutlass::layout::RowMajor, 8,              // D [M, N]
      EpilogueSchedule, Output>::CollectiveOp;
  using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp,      //
      cutlass::float_e4m3_t, cutlass::layout::RowMajor, 16,     // A [M, K]
      cutlass::float_e4m3_t, cutlass::layout::ColumnMajor, 16,  // B [K, N] = the weight [N, K]
      float, TileShape, ClusterShape,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
          sizeof(typename Epilogue::SharedStorage))>,
      MainloopSchedule>::CollectiveOp;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<cute::Shape<int, int, int, int>, Mainloop,
                                                      Epilogue, TileScheduler>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;

  static typename Gemm::Arguments arguments(const Fp8GemmOperands& ops, Fp8GemmSchedule schedule) {
    const int m = static_cast<int>(ops.m), n = static_cast<int>(ops.n), k = static_cast<int>(ops.k);
    using StrideA = typename Kernel::StrideA;
    using StrideB = typename Kernel::StrideB;
    using StrideC = typename Kernel::StrideC;
    using StrideD = typename Kernel::StrideD;
    typename Gemm::Arguments args{
        cutlass::gemm::GemmUniversalMode::kGemm,
        {m, n, k, 1},
        {static_cast<const cutlass::float_e4m3_t*>(ops.a),
         cutlass::make_cute_packed_stride(StrideA{}, cute::make_shape(m, k, 1)),
         static_cast<const cutlass::float_e4m3_t*>(ops.b),
         cutlass::make_cute_packed_stride(StrideB{}, cute::make_shape(n, k, 1))},
        {{},
         nullptr,
         cutlass::make_cute_packed_stride(StrideC{}, cute::make_shape(m, n, 1)),
         static_cast<cutlass::bfloat16_t*>(ops.d),
         cutlass::make_cute_packed_stride(StrideD{}, cute::make_shape(m, n, 1))}};
    args.epilogue.thread = {
        {ops.a_scale},                                        // RowScale
        {{ops.b_scale}, {}, {}},                              // Scaled: ColScale, Acc, multiply
        {static_cast<const cutlass::bfloat16_t*>(ops.bias)},  // Bias (null: zero)
        {}};                                                  // multiply_add
    using Raster = cutlass::gemm::kernel::detail::RasterOrderOptions;
    args.scheduler.raster_order = schedule.raster == Fp8GemmRaster::along_m   ? Raster::AlongM
                                  : schedule.raster == Fp8GemmRaster::along_n ? Raster::AlongN
                                                                              : Raster::Heuristic;
    args.scheduler.max_swizzle_size = schedule.swizzle;
    return args;
  }

  // The arguments for `ops` when this kernel can run them on the current device.
  static std::optional<typename Gemm::Arguments> checked_arguments(const Fp8GemmOperands& ops,
                                                                   Fp8GemmSchedule schedule) {
    int device = 0;
    if (!operands_fit(ops) || !device_is_sm90() ||
        !kernel_has_image(cutlass::device_kernel<Kernel>) ||
        cudaGetDevice(&device) != cudaSuccess) {
      return std::nullopt;
    }
    auto args = arguments(ops, schedule);
    args.hw_info.device_id = device;  // the scheduler sizes the persistent grid by its SMs
    cudaDeviceGetAttribute(&args.hw_info.sm_count, cudaDevAttrMultiProcessorCount, device);
    if (Gemm::can_implement(args) != cutlass::Status::kSuccess) return std::nullopt;
    return args;
  }

  static int64_t workspace_bytes(const Fp8GemmOperands& ops, Fp8GemmSchedule schedule) {
    auto args = checked_arguments(ops, schedule);
    return args ? static_cast<int64_t>(Gemm::get_workspace_size(*args)) : -1;
  }

  static bool run(const Fp8GemmOperands& ops, Fp8GemmSchedule schedule, void* workspace,
                  cudaStream_t stream) {
    auto args = checked_arguments(ops, schedule);
    Gemm gemm;
    return args && gemm.initialize(*args, workspace, stream) == cutlass::Status::kSuccess &&
           gemm.run(stream) == cutlass::Status::kSuccess;
  }
};

// Cooperative kernels pair with the cooperative epilogue.
// Stream-K kernels (cooperative only) split the K loop of some tiles between thread blocks so
// that the last wave of tiles keeps every SM busy.
template <int M, int N, int CM, int CN, class TileScheduler = cutlass::gemm::PersistentScheduler>
using Cooperative = RowScaledGemm<cute::Shape<cute::Int<M>, cute::Int<N>, cute::_128>,
                                  cute::Shape<cute::Int<CM>, cute::Int<CN>, cute::_1>,
                                  cutlass::gemm::KernelTmaWarpSpecializedCooperativeFP8FastAccum,
                                  cutlass::epilogue::TmaWarpSpecializedCooperative, TileScheduler>;
#endif

}  // namespace fp8_gemm_detail

// Each kernel's launchers, defined in its fp8_gemm_sm90_<name>.cu by DITBENCH_FP8_GEMM_KERNEL.
#define DITBENCH_FP8_GEMM_DECLARE(name)                                                          \
  int64_t fp8_gemm_workspace_bytes_##name(const Fp8GemmOperands& ops, Fp8GemmSchedule schedule); \
  bool fp8_gemm_##name(const Fp8GemmOperands& ops, Fp8GemmSchedule schedule, void* workspace,    \
                       cudaStream_t stream);
DITBENCH_FP8_GEMM_KERNELS(DITBENCH_FP8_GEMM_DECLARE)
#undef DITBENCH_FP8_GEMM_DECLARE

// Defines the two launchers of kernel `name` as those of `...` (a RowScaledGemm), or as refusals
// in a build without CUTLASS.
#ifdef DITBENCH_HAS_CUTLASS
#define DITBENCH_FP8_GEMM_KERNEL(name, ...)                                                       \
  int64_t fp8_gemm_workspace_bytes_##name(const Fp8GemmOperands& ops, Fp8GemmSchedule schedule) { \
    return fp8_gemm_detail::__VA_ARGS__::workspace_bytes(ops, schedule);                          \
  }                                                                                               \
  bool fp8_gemm_##name(const Fp8GemmOperands& ops, Fp8GemmSchedule schedule, void* workspace,     \
                       cudaStream_t stream) {                                                     \
    return fp8_gemm_detail::__VA_ARGS__::run(ops, schedule, workspace, stream);                   \
  }
#else
#define DITBENCH_FP8_GEMM_KERNEL(name, ...)                                                       \
  int64_t fp8_gemm_workspace_bytes_##name(const Fp8GemmOperands&, Fp8GemmSchedule) { return -1; } \
  bool fp8_gemm_##name(const Fp8GemmOperands&, Fp8GemmSchedule, void*, cudaStream_t) {            \
    return false;                                                                                 \
  }
#endif

}  // namespace ditbench
