#pragma once
// The row-scaled e4m3 GEMM of fp8_gemm_cuda.h as one CUTLASS kernel per tile shape, cluster and
// schedule: TMA loads, warp-specialized WGMMA with fast accumulation, a persistent tile scheduler,
// and an epilogue visitor tree that scales the float32 accumulator by the weight's per-column and
// the activation's per-row scale, adds the bias and rounds to bf16 before the TMA store (and, for
// the gated-residual kernel, scales that by the gate and adds it to the residual it reads as C).
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

// The gated residual's operands: present, 16-byte aligned, the rows already quantized.
inline bool gated_residual_fits(const Fp8GemmOperands& ops) {
  auto aligned = [](const void* p) { return p && reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return aligned(ops.residual) && aligned(ops.gate) && ops.rows_ready == nullptr;
}

#ifdef DITBENCH_HAS_CUTLASS
// The mainloop `Base` whose producer warp, before it loads a tile's rows of A, waits until the
// row quantizer running beside the GEMM has counted every one of them (Fp8GemmOperands::
// rows_ready; without counters it loads at once). The epilogue reads those rows' scales after
// the tile's loads have landed, so they are ready too.
template <class Base>
struct AwaitRowsMainloop : Base {
  struct Arguments : Base::Arguments {
    const int* rows_ready = nullptr;
    int rows_per_flag = 128;
  };
  struct Params : Base::Params {
    const int* rows_ready;
    int rows_per_flag;
    int m;
  };

  template <class ProblemShape>
  static Params to_underlying_arguments(ProblemShape const& problem_shape, Arguments const& args,
                                        void* workspace) {
    return {Base::to_underlying_arguments(problem_shape, args, workspace), args.rows_ready,
            args.rows_per_flag, static_cast<int>(cute::get<0>(problem_shape))};
  }

  // Past this many nanoseconds of waiting the quantizer is taken to be gone (it cannot run): the
  // kernel traps, an error, rather than hanging the device.
  static constexpr uint64_t kAwaitLimitNs = 20'000'000'000ull;

  CUTLASS_DEVICE static uint64_t now_ns() {
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
  }

  CUTLASS_DEVICE static void await_rows(Params const& params, int m_block) {
    constexpr int kBlockM = cute::size<0>(typename Base::TileShape{});
    if (cute::elect_one_sync()) {
      const int first = m_block * kBlockM, last = cute::min(params.m, first + kBlockM) - 1;
      for (int f = first / params.rows_per_flag; f <= last / params.rows_per_flag; ++f) {
        const int want = cute::min(params.rows_per_flag, params.m - f * params.rows_per_flag);
        const uint64_t start = now_ns();
        for (;;) {
          int seen;
          asm volatile("ld.acquire.gpu.global.b32 %0, [%1];"
                       : "=r"(seen)
                       : "l"(params.rows_ready + f)
                       : "memory");
          if (seen >= want) break;
          __nanosleep(256);
          if (now_ns() - start > kAwaitLimitNs) __trap();
        }
      }
      // The rows were written through the generic proxy; TMA reads them through the async one.
      asm volatile("fence.proxy.async.global;" ::: "memory");
    }
    __syncwarp();
  }

  template <class TensorA, class TensorB, class KTileIterator, class BlockCoord>
  CUTLASS_DEVICE void load(Params const& params, typename Base::MainloopPipeline pipeline,
                           typename Base::PipelineState smem_pipe_write,
                           cute::tuple<TensorA, TensorB> const& load_inputs,
                           BlockCoord const& blk_coord, KTileIterator k_tile_iter, int k_tile_count,
                           int thread_idx, uint32_t block_rank_in_cluster,
                           typename Base::TensorStorage& shared_tensors) {
    if (params.rows_ready != nullptr) await_rows(params, static_cast<int>(cute::get<0>(blk_coord)));
    Base::load(params, pipeline, smem_pipe_write, load_inputs, blk_coord, k_tile_iter, k_tile_count,
               thread_idx, block_rank_in_cluster, shared_tensors);
  }
};

// The epilogue visitor trees of RowScaledGemm: the scaled product, and the scaled product as a
// gated residual's branch.
template <class TileShape>
struct RowScaledOutput {
  using Acc = cutlass::epilogue::fusion::Sm90AccFetch;
  // a_scale[m] broadcast along a row of the tile, b_scale[n], bias[n] and gate[n] along a column.
  using RowScale = cutlass::epilogue::fusion::Sm90ColBroadcast<0, TileShape, float, float>;
  using ColScale = cutlass::epilogue::fusion::Sm90RowBroadcast<0, TileShape, float, float>;
  using ColBf16 =
      cutlass::epilogue::fusion::Sm90RowBroadcast<0, TileShape, cutlass::bfloat16_t, float>;
  template <template <class> class Op>
  using Bf16Op = cutlass::epilogue::fusion::Sm90Compute<Op, cutlass::bfloat16_t, float,
                                                        cutlass::FloatRoundStyle::round_to_nearest>;
  using Scaled = cutlass::epilogue::fusion::Sm90EVT<  // b_scale[n] * acc
      cutlass::epilogue::fusion::Sm90Compute<cutlass::multiplies, float, float,
                                             cutlass::FloatRoundStyle::round_to_nearest>,
      ColScale, Acc>;
  using Product = cutlass::epilogue::fusion::Sm90EVT<  // a_scale[m] * scaled + bias[n] -> bf16
      Bf16Op<cutlass::multiply_add>, RowScale, Scaled, ColBf16>;
  using Gated = cutlass::epilogue::fusion::Sm90EVT<  // bf16(gate[n] * product)
      Bf16Op<cutlass::multiplies>, ColBf16, Product>;
  using GatedResidual = cutlass::epilogue::fusion::Sm90EVT<  // bf16(residual + gated)
      Bf16Op<cutlass::plus>, cutlass::epilogue::fusion::Sm90SrcFetch<cutlass::bfloat16_t>, Gated>;

  static typename Product::Arguments product(const Fp8GemmOperands& ops) {
    return {{ops.a_scale},                                        // RowScale
            {{ops.b_scale}, {}, {}},                              // Scaled: ColScale, Acc, multiply
            {static_cast<const cutlass::bfloat16_t*>(ops.bias)},  // bias (null: zero)
            {}};                                                  // multiply_add
  }
  static typename GatedResidual::Arguments gated_residual(const Fp8GemmOperands& ops) {
    return {{},  // residual (C)
            {{static_cast<const cutlass::bfloat16_t*>(ops.gate)}, product(ops), {}},  // gate *
            {}};                                                                      // plus
  }
};

// kGatedResidual: the epilogue adds the gated residual (fp8_gemm_gated_residual_cuda), reading
// the residual as the source matrix C.
template <class TileShape, class ClusterShape, class MainloopSchedule, class EpilogueSchedule,
          class TileScheduler = cutlass::gemm::PersistentScheduler, bool kGatedResidual = false>
struct RowScaledGemm {
  using Trees = RowScaledOutput<TileShape>;
  using Output =
      std::conditional_t<kGatedResidual, typename Trees::GatedResidual, typename Trees::Product>;
  using ElementC = std::conditional_t<kGatedResidual, cutlass::bfloat16_t, void>;

  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float,  //
      ElementC, cutlass::layout::RowMajor, 8,                         // the residual, or none
      cutlass::bfloat16_t, cutlass::layout::RowMajor, 8,              // D [M, N]
      EpilogueSchedule, Output>::CollectiveOp;
  using Mainloop = AwaitRowsMainloop<typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp,      //
      cutlass::float_e4m3_t, cutlass::layout::RowMajor, 16,     // A [M, K]
      cutlass::float_e4m3_t, cutlass::layout::ColumnMajor, 16,  // B [K, N] = the weight [N, K]
      float, TileShape, ClusterShape,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
          sizeof(typename Epilogue::SharedStorage))>,
      MainloopSchedule>::CollectiveOp>;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<cute::Shape<int, int, int, int>, Mainloop,
                                                      Epilogue, TileScheduler>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;

  static typename Gemm::Arguments arguments(const Fp8GemmOperands& ops, Fp8GemmSchedule schedule) {
    const int m = static_cast<int>(ops.m), n = static_cast<int>(ops.n), k = static_cast<int>(ops.k);
    using StrideA = typename Kernel::StrideA;
    using StrideB = typename Kernel::StrideB;
    using StrideC = typename Kernel::StrideC;
    using StrideD = typename Kernel::StrideD;
    typename Mainloop::Arguments mainloop;
    mainloop.ptr_A = static_cast<const cutlass::float_e4m3_t*>(ops.a);
    mainloop.dA = cutlass::make_cute_packed_stride(StrideA{}, cute::make_shape(m, k, 1));
    mainloop.ptr_B = static_cast<const cutlass::float_e4m3_t*>(ops.b);
    mainloop.dB = cutlass::make_cute_packed_stride(StrideB{}, cute::make_shape(n, k, 1));
    mainloop.rows_ready = ops.rows_ready;
    mainloop.rows_per_flag = ops.rows_per_flag;
    typename Gemm::Arguments args{
        cutlass::gemm::GemmUniversalMode::kGemm,
        {m, n, k, 1},
        mainloop,
        {{},
         static_cast<const ElementC*>(kGatedResidual ? ops.residual : nullptr),
         cutlass::make_cute_packed_stride(StrideC{}, cute::make_shape(m, n, 1)),
         static_cast<cutlass::bfloat16_t*>(ops.d),
         cutlass::make_cute_packed_stride(StrideD{}, cute::make_shape(m, n, 1))}};
    if constexpr (kGatedResidual) {
      args.epilogue.thread = Trees::gated_residual(ops);
    } else {
      args.epilogue.thread = Trees::product(ops);
    }
    using Raster = cutlass::gemm::kernel::detail::RasterOrderOptions;
    args.scheduler.raster_order = schedule.raster == Fp8GemmRaster::along_m   ? Raster::AlongM
                                  : schedule.raster == Fp8GemmRaster::along_n ? Raster::AlongN
                                                                              : Raster::Heuristic;
    args.scheduler.max_swizzle_size = schedule.swizzle;
    return args;
  }

  // Launches the kernel when it can run `ops` on the current device; validates and builds the
  // arguments once per call.
  static bool run(const Fp8GemmOperands& ops, Fp8GemmSchedule schedule,
                  const Fp8GemmWorkspace& workspace, cudaStream_t stream) {
    int device = 0, sms = 0;
    if (!operands_fit(ops) || ops.rows_per_flag < 1 || current_compute_capability() != 90 ||
        (kGatedResidual && !gated_residual_fits(ops)) ||
        !kernel_has_image(cutlass::device_kernel<Kernel>) ||
        cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
        schedule.sm_count < 0) {
      return false;
    }
    auto args = arguments(ops, schedule);
    args.hw_info.device_id = device;  // the scheduler sizes the persistent grid by its SMs
    args.hw_info.sm_count =
        schedule.sm_count > 0 && schedule.sm_count < sms ? schedule.sm_count : sms;
    if (Gemm::can_implement(args) != cutlass::Status::kSuccess) return false;
    const size_t bytes = Gemm::get_workspace_size(args);
    void* memory = bytes > 0 ? workspace(bytes) : nullptr;
    if (bytes > 0 && memory == nullptr) return false;
    Gemm gemm;
    return gemm.initialize(args, memory, stream) == cutlass::Status::kSuccess &&
           gemm.run(stream) == cutlass::Status::kSuccess;
  }
};

// Cooperative kernels pair with the cooperative epilogue.
// Stream-K kernels (cooperative only) split the K loop of some tiles between thread blocks so
// that the last wave of tiles keeps every SM busy.
template <int M, int N, int CM, int CN, class TileScheduler = cutlass::gemm::PersistentScheduler,
          bool kGatedResidual = false>
using Cooperative =
    RowScaledGemm<cute::Shape<cute::Int<M>, cute::Int<N>, cute::_128>,
                  cute::Shape<cute::Int<CM>, cute::Int<CN>, cute::_1>,
                  cutlass::gemm::KernelTmaWarpSpecializedCooperativeFP8FastAccum,
                  cutlass::epilogue::TmaWarpSpecializedCooperative, TileScheduler, kGatedResidual>;
#endif

}  // namespace fp8_gemm_detail

// Each kernel's launcher, defined in its fp8_gemm_sm90_<name>.cu by DITBENCH_FP8_GEMM_KERNEL.
#define DITBENCH_FP8_GEMM_DECLARE(name)                                      \
  bool fp8_gemm_##name(const Fp8GemmOperands& ops, Fp8GemmSchedule schedule, \
                       const Fp8GemmWorkspace& workspace, cudaStream_t stream);
DITBENCH_FP8_GEMM_KERNELS(DITBENCH_FP8_GEMM_DECLARE)
#undef DITBENCH_FP8_GEMM_DECLARE

// Defines the launcher of kernel `name` as that of `...` (a RowScaledGemm), or as a refusal in a
// build without CUTLASS.
#ifdef DITBENCH_HAS_CUTLASS
#define DITBENCH_FP8_GEMM_KERNEL(name, ...)                                      \
  bool fp8_gemm_##name(const Fp8GemmOperands& ops, Fp8GemmSchedule schedule,     \
                       const Fp8GemmWorkspace& workspace, cudaStream_t stream) { \
    return fp8_gemm_detail::__VA_ARGS__::run(ops, schedule, workspace, stream);  \
  }
#else
#define DITBENCH_FP8_GEMM_KERNEL(name, ...)                                              \
  bool fp8_gemm_##name(const Fp8GemmOperands&, Fp8GemmSchedule, const Fp8GemmWorkspace&, \
                       cudaStream_t) {                                                   \
    return false;                                                                        \
  }
#endif

}  // namespace ditbench
