#pragma once
// The row-scaled e4m3 GEMM of fp8_gemm_cuda.h as one CUTLASS kernel per tile shape, cluster and
// schedule: TMA loads, warp-specialized WGMMA with fast accumulation, a persistent tile scheduler,
// and an epilogue visitor tree that scales the float32 accumulator by the weight's per-column and
// the activation's per-row scale, adds the bias and rounds to bf16 before the TMA store (and, for
// the gated-residual kernel, scales that by the gate and adds it to the residual it reads as C).
// Each fp8_gemm_sm90_*.cu instantiates one kernel (nvcc compiles them in parallel).
#include <optional>

#include "optimizations/kernels/float_convert.cuh"
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

// The q | k | v epilogue's operands: whole q and k heads within N, their weights and, for rows
// to rotate, the tables, 16-byte aligned; the rows already quantized.
inline bool qk_norm_rope_fits(const Fp8GemmOperands& ops) {
  auto aligned = [](const void* p) { return p && reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (ops.qk == nullptr || ops.rows_ready != nullptr) return false;
  const Fp8QkNormRope& qk = *ops.qk;
  return qk.q_heads > 0 && 2 * qk.q_heads * 128 <= ops.n && aligned(qk.weight_q) &&
         aligned(qk.weight_k) && qk.rope_rows >= 0 && qk.rope_rows < (int64_t(1) << 31) &&
         (qk.rope_rows == 0 || (aligned(qk.cos) && aligned(qk.sin)));
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

// The collective epilogue `Base` (whose tree only rounds the accumulators to bfloat16) run on
// accumulators first turned into the finished q | k | v projection (fp8_gemm_qk_norm_rope_cuda):
// the scaled product and bias, then the q and k heads' RMSNorm and rotary embedding, all in
// registers before the tile is stored.
template <class Base, class TileShape>
struct QkNormRopeEpilogue : Base {
  struct Arguments : Base::Arguments {
    Fp8QkNormRope qk;
    const float* a_scale = nullptr;
    const float* b_scale = nullptr;
    const cutlass::bfloat16_t* bias = nullptr;
  };
  struct Params : Base::Params {
    Fp8QkNormRope qk;
    const float* a_scale;
    const float* b_scale;
    const cutlass::bfloat16_t* bias;
  };

  template <class ProblemShape>
  static Params to_underlying_arguments(ProblemShape const& problem_shape, Arguments const& args,
                                        void* workspace) {
    return {Base::to_underlying_arguments(problem_shape, args, workspace), args.qk, args.a_scale,
            args.b_scale, args.bias};
  }

  CUTLASS_HOST_DEVICE QkNormRopeEpilogue(Params const& params,
                                         typename Base::TensorStorage& shared_tensors)
      : Base(params, shared_tensors), qk_params_(params) {}

  template <class ProblemShapeMNKL, class TileShapeMNK, class TileCoordMNKL, class AccEngine,
            class AccLayout, class TiledMma>
  CUTLASS_DEVICE auto store(typename Base::LoadPipeline load_pipeline,
                            typename Base::LoadPipelineState load_pipe_consumer_state,
                            typename Base::StorePipeline store_pipeline,
                            typename Base::StorePipelineState store_pipe_producer_state,
                            ProblemShapeMNKL problem_shape_mnkl, TileShapeMNK tile_shape_MNK,
                            TileCoordMNKL tile_coord_mnkl,
                            cute::Tensor<AccEngine, AccLayout> accumulators, TiledMma tiled_mma,
                            int thread_idx, typename Base::TensorStorage& shared_tensors,
                            int subtile_idx = -1) {
    finish(problem_shape_mnkl, tile_coord_mnkl, accumulators, tiled_mma, thread_idx);
    return Base::store(load_pipeline, load_pipe_consumer_state, store_pipeline,
                       store_pipe_producer_state, problem_shape_mnkl, tile_shape_MNK,
                       tile_coord_mnkl, accumulators, tiled_mma, thread_idx, shared_tensors,
                       subtile_idx);
  }

 private:
  static constexpr int kHeadDim = 128;

  // The tile's accumulators -> its finished q | k | v values (bfloat16, held as float32).
  template <class ProblemShapeMNKL, class TileCoordMNKL, class AccEngine, class AccLayout,
            class TiledMma>
  CUTLASS_DEVICE void finish(ProblemShapeMNKL problem, TileCoordMNKL tile,
                             cute::Tensor<AccEngine, AccLayout>& acc, TiledMma tiled_mma,
                             int thread_idx) const {
    using namespace cute;
    constexpr int kTileM = size<0>(TileShape{}), kTileN = size<1>(TileShape{});
    // A Hopper GMMA accumulator fragment: ((2, 2, kTileN / 8), 1, 1), element v0 + 2 v1 + 4 v2
    // at column 2 (lane % 4) + v0 + 8 v2 and row (lane / 4) + 8 v1 of the thread's 16-row
    // slice, so the four lanes of a quad hold the rest of its two rows.
    static_assert(size<0, 0>(AccLayout{}) == 2 && size<0, 1>(AccLayout{}) == 2 &&
                      size<0, 2>(AccLayout{}) == kTileN / 8 && size<1>(AccLayout{}) == 1 &&
                      size<2>(AccLayout{}) == 1,
                  "one 64 x kTileN GMMA accumulator a thread");
    static_assert(kTileN % kHeadDim == 0, "whole heads a tile");
    constexpr int kGroups = kTileN / 8, kGroupsPerHead = kHeadDim / 8, kHeads = kTileN / kHeadDim;
    const Params& p = qk_params_;
    // Each element's (row, column) in the tile.
    const auto coords =
        tiled_mma.get_thread_slice(thread_idx)
            .partition_C(make_identity_tensor(make_shape(Int<kTileM>{}, Int<kTileN>{})));
    const int m_first = static_cast<int>(get<0>(tile)) * kTileM;
    const int n_first = static_cast<int>(get<1>(tile)) * kTileN;
    const int rows = static_cast<int>(get<0>(problem)), cols = static_cast<int>(get<1>(problem));
    int m[2];
    float a_scale[2];
    CUTLASS_PRAGMA_UNROLL
    for (int v1 = 0; v1 < 2; ++v1) {
      m[v1] = m_first + static_cast<int>(get<0>(coords(2 * v1)));
      a_scale[v1] = m[v1] < rows ? p.a_scale[m[v1]] : 0.f;
    }
    // The product as fp8_gemm_cuda's tree rounds it, and each row's sum of squares per head.
    float squares[2][kHeads] = {};
    CUTLASS_PRAGMA_UNROLL
    for (int v2 = 0; v2 < kGroups; ++v2) {
      const int n = n_first + static_cast<int>(get<1>(coords(4 * v2)));  // even, n + 1 its pair
      float2 b_scale = make_float2(0.f, 0.f), bias = b_scale;
      if (n < cols) {
        b_scale = *reinterpret_cast<const float2*>(p.b_scale + n);
        if (p.bias) {
          bias = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p.bias + n));
        }
      }
      CUTLASS_PRAGMA_UNROLL
      for (int v1 = 0; v1 < 2; ++v1) {
        float& x = acc(4 * v2 + 2 * v1);
        float& y = acc(4 * v2 + 2 * v1 + 1);
        x = __fmaf_rn(a_scale[v1], __fmul_rn(b_scale.x, x), bias.x);
        y = __fmaf_rn(a_scale[v1], __fmul_rn(b_scale.y, y), bias.y);
        round_bf16_pair(x, y);
        squares[v1][v2 / kGroupsPerHead] += x * x;
        squares[v1][v2 / kGroupsPerHead] += y * y;
      }
    }
    CUTLASS_PRAGMA_UNROLL
    for (int v1 = 0; v1 < 2; ++v1) {
      CUTLASS_PRAGMA_UNROLL
      for (int h = 0; h < kHeads; ++h) {
        squares[v1][h] += __shfl_xor_sync(0xffffffff, squares[v1][h], 1);
        squares[v1][h] += __shfl_xor_sync(0xffffffff, squares[v1][h], 2);
      }
    }
    const float inv_dim = 1.f / static_cast<float>(kHeadDim);
    const int first_head = n_first / kHeadDim;
    CUTLASS_PRAGMA_UNROLL
    for (int v2 = 0; v2 < kGroups; ++v2) {
      const int h = v2 / kGroupsPerHead, head = first_head + h;
      if (head >= 2 * p.qk.q_heads) continue;  // v: the product
      const int n = n_first + static_cast<int>(get<1>(coords(4 * v2)));
      const int within = n % kHeadDim;
      const void* weight = head < p.qk.q_heads ? p.qk.weight_q : p.qk.weight_k;
      const float2 w = __bfloat1622float2(static_cast<const __nv_bfloat162*>(weight)[within / 2]);
      CUTLASS_PRAGMA_UNROLL
      for (int v1 = 0; v1 < 2; ++v1) {
        float& x = acc(4 * v2 + 2 * v1);
        float& y = acc(4 * v2 + 2 * v1 + 1);
        const float r = rsqrtf(squares[v1][h] * inv_dim + p.qk.eps);
        float a = x * r, b = y * r;
        round_bf16_pair(a, b);
        a *= w.x, b *= w.y;
        round_bf16_pair(a, b);
        if (m[v1] < p.qk.rope_rows) {
          const int64_t at = static_cast<int64_t>(m[v1]) * kHeadDim + within;
          const float2 c = *reinterpret_cast<const float2*>(p.qk.cos + at);
          const float2 s = *reinterpret_cast<const float2*>(p.qk.sin + at);
          x = __fadd_rn(__fmul_rn(a, c.x), __fmul_rn(-b, s.x));
          y = __fadd_rn(__fmul_rn(b, c.y), __fmul_rn(a, s.y));
        } else {
          x = a, y = b;
        }
      }
    }
  }

  Params const& qk_params_;
};

// What a RowScaledGemm's epilogue computes: the scaled product; the scaled product as a gated
// residual's branch added to the residual it reads as the source matrix C
// (fp8_gemm_gated_residual_cuda); the q | k | v projection with its q and k heads finished
// (fp8_gemm_qk_norm_rope_cuda).
enum class Fp8Epilogue { product, gated_residual, qk_norm_rope };

template <class TileShape, class ClusterShape, class EpilogueSchedule, Fp8Epilogue kKind>
struct RowScaledEpilogue {
  using Trees = RowScaledOutput<TileShape>;
  static constexpr bool kGatedResidual = kKind == Fp8Epilogue::gated_residual;
  using Rounded = cutlass::epilogue::fusion::Sm90EVT<  // bf16(acc)
      typename Trees::template Bf16Op<cutlass::epilogue::thread::Identity>,
      cutlass::epilogue::fusion::Sm90AccFetch>;
  using Output = std::conditional_t<
      kGatedResidual, typename Trees::GatedResidual,
      std::conditional_t<kKind == Fp8Epilogue::qk_norm_rope, Rounded, typename Trees::Product>>;
  using ElementC = std::conditional_t<kGatedResidual, cutlass::bfloat16_t, void>;
  using Collective = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float,  //
      ElementC, cutlass::layout::RowMajor, 8,                         // the residual, or none
      cutlass::bfloat16_t, cutlass::layout::RowMajor, 8,              // D [M, N]
      EpilogueSchedule, Output>::CollectiveOp;
  using Op = std::conditional_t<kKind == Fp8Epilogue::qk_norm_rope,
                                QkNormRopeEpilogue<Collective, TileShape>, Collective>;
};

template <class TileShape, class ClusterShape, class MainloopSchedule, class EpilogueSchedule,
          class TileScheduler = cutlass::gemm::PersistentScheduler,
          Fp8Epilogue kKind = Fp8Epilogue::product>
struct RowScaledGemm {
  using Trees = RowScaledOutput<TileShape>;
  static constexpr bool kGatedResidual = kKind == Fp8Epilogue::gated_residual;
  static constexpr bool kQkNormRope = kKind == Fp8Epilogue::qk_norm_rope;
  using ElementC = std::conditional_t<kGatedResidual, cutlass::bfloat16_t, void>;
  using Epilogue = typename RowScaledEpilogue<TileShape, ClusterShape, EpilogueSchedule, kKind>::Op;
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
    typename Epilogue::Arguments epilogue{};
    epilogue.ptr_C = static_cast<const ElementC*>(kGatedResidual ? ops.residual : nullptr);
    epilogue.dC = cutlass::make_cute_packed_stride(StrideC{}, cute::make_shape(m, n, 1));
    epilogue.ptr_D = static_cast<cutlass::bfloat16_t*>(ops.d);
    epilogue.dD = cutlass::make_cute_packed_stride(StrideD{}, cute::make_shape(m, n, 1));
    if constexpr (kGatedResidual) {
      epilogue.thread = Trees::gated_residual(ops);
    } else if constexpr (kQkNormRope) {
      epilogue.qk = ops.qk != nullptr ? *ops.qk : Fp8QkNormRope{};
      epilogue.a_scale = ops.a_scale;
      epilogue.b_scale = ops.b_scale;
      epilogue.bias = static_cast<const cutlass::bfloat16_t*>(ops.bias);
    } else {
      epilogue.thread = Trees::product(ops);
    }
    typename Gemm::Arguments args{
        cutlass::gemm::GemmUniversalMode::kGemm, {m, n, k, 1}, mainloop, epilogue};
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
        (kGatedResidual && !gated_residual_fits(ops)) || (kQkNormRope && !qk_norm_rope_fits(ops)) ||
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
          Fp8Epilogue kKind = Fp8Epilogue::product>
using Cooperative =
    RowScaledGemm<cute::Shape<cute::Int<M>, cute::Int<N>, cute::_128>,
                  cute::Shape<cute::Int<CM>, cute::Int<CN>, cute::_1>,
                  cutlass::gemm::KernelTmaWarpSpecializedCooperativeFP8FastAccum,
                  cutlass::epilogue::TmaWarpSpecializedCooperative, TileScheduler, kKind>;
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
