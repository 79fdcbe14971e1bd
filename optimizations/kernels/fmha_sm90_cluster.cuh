#pragma once
// The mainloop of fmha_sm90_qreg.cuh for a cluster of two blocks on neighbouring query tiles of one
// head: each block loads half of every key and value block and the TMA multicast writes it into
// both blocks' shared memory, so each block reads half the keys and values from L2. At
// HunyuanVideo's 480p shape the kernel moves ~4.7 TB/s from L2 into the SMs at full rate; at the
// card's power limit the step is bounded by energy, and those bytes cost some: halving them made
// the 480p step 0.2-0.8 % faster, the 720p step 0.4 % slower (bench/RESULTS.md; fmha_sm90_cuda.h's
// fmha_default_variant picks by the keys).
//
// What changes against the one-block kernel, all in the loads and the pipelines' bookkeeping:
// - The K and V loads are CUTLASS's TMA multicast copies for a (2, 1, 1) cluster; each block's
//   full barrier expects the whole block (both halves), and each stage is released by the
//   consumer warp groups of both blocks (CUTLASS's PipelineTmaAsync for the cluster shape) before
//   either block's producer overwrites it.
// - CUTLASS's kernel builds the Q pipeline for a cluster of one, whose releases would all go to
//   the cluster's first block: ours is built for the cluster's shape, so each block's Q stage is
//   released by the matching warp group of both blocks. The two blocks walk the same tiles (the
//   persistent scheduler rounds each head's query tiles up to a whole cluster, the grid is whole
//   clusters), so this couples nothing that the shared K and V loads do not couple already.
// - A block must not exit while the other may still arrive on its barriers: the kernel ends with
//   a cluster barrier.
// The products, the softmax and the epilogue are the one-block kernel's, so the outputs are the
// same bits (GPU test).
#ifdef DITBENCH_HAS_CUTLASS_FMHA
#include <cutlass/cutlass.h>
#include <cute/tensor.hpp>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include <type_traits>

#include "hopper_fmha/collective/fmha_collective_load.hpp"
#include "optimizations/kernels/fmha_sm90_qreg.cuh"

namespace ditbench {
namespace fmha_detail {

// PipelineTmaAsync for `ClusterShape` whatever cluster shape the kernel constructs it with.
template <int kStages, class ClusterShape>
struct ClusterPipeline : cutlass::PipelineTmaAsync<kStages> {
  using Pipeline = cutlass::PipelineTmaAsync<kStages>;
  template <class AnyShape>
  CUTLASS_DEVICE ClusterPipeline(typename Pipeline::SharedStorage& storage,
                                 typename Pipeline::Params params, AnyShape)
      : Pipeline(storage, params, ClusterShape{}) {}
};

template <class Base, class Fusion>
struct SharedKeysMainloop : QueryRegistersMainloop<Base, Fusion> {
  using ClusterShape = cute::Shape<cute::_2, cute::_1, cute::_1>;
  static constexpr int kClusterBlocks = cute::size(ClusterShape{});
  using typename Base::Element;
  using typename Base::MainloopPipeline;
  using typename Base::PipelineState;
  using typename Base::PipelineStateQ;
  using typename Base::SharedStorage;
  using typename Base::SmemLayoutK;
  using typename Base::SmemLayoutQ;
  using typename Base::SmemLayoutV;
  using typename Base::TileShape;
  using typename Base::TileShapePV;
  using typename Base::TileShapeQK;
  using MainloopPipelineQ = ClusterPipeline<Base::MainloopPipelineQ::Stages, ClusterShape>;

  // CUTLASS's collectives for the two products with the cluster's shape: B (K, V) is shared along
  // the cluster's query dimension, so their builders pick the multicast TMA for it.
  template <class TileShapeMma, class LayoutA, class LayoutB, class Accumulator>
  using Mma = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Element, LayoutA, Base::Alignment,
      Element, LayoutB, Base::Alignment, Accumulator, TileShapeMma, ClusterShape,
      typename Base::Stages, cutlass::gemm::KernelTmaWarpSpecialized>::CollectiveOp;
  using MmaQK = Mma<TileShapeQK, typename Base::LayoutQ, typename Base::LayoutK,
                    typename Base::ElementAccumulatorQK>;
  using LayoutVt = decltype(cute::select<1, 0, 2>(typename Base::LayoutV{}));
  using MmaPV =
      Mma<TileShapePV, typename Base::LayoutK, LayoutVt, typename Base::ElementAccumulatorPV>;
  static_assert(std::is_same_v<typename MmaQK::GmemTiledCopyB, cute::SM90_TMA_LOAD_MULTICAST> &&
                std::is_same_v<typename MmaPV::GmemTiledCopyB, cute::SM90_TMA_LOAD_MULTICAST>);
  static_assert(std::is_same_v<typename MmaQK::SmemLayoutB, SmemLayoutK> &&
                std::is_same_v<typename MmaPV::SmemLayoutB, SmemLayoutV>);

  struct Params {
    typename MmaQK::Params::TMA_A tma_load_q;
    typename MmaQK::Params::TMA_B tma_load_k;
    typename MmaPV::Params::TMA_B tma_load_v;
    float scale_softmax, scale_softmax_log2, rp_dropout;
  };

  template <cutlass::fmha::collective::LoadKind kKind, class Pipeline, class Layout, class Tma>
  using Load = cutlass::fmha::collective::CollectiveLoadTma<kKind, Pipeline, Element, Layout, Tma>;
  using LoadQ = Load<cutlass::fmha::collective::LoadKind::kQ, MainloopPipelineQ, SmemLayoutQ,
                     decltype(Params::tma_load_q)>;
  using LoadK = Load<cutlass::fmha::collective::LoadKind::kK, MainloopPipeline, SmemLayoutK,
                     decltype(Params::tma_load_k)>;
  using LoadV = Load<cutlass::fmha::collective::LoadKind::kV, MainloopPipeline, SmemLayoutV,
                     decltype(Params::tma_load_v)>;

  // problem_size: (B, H, Sq, Sk, D).
  template <class ProblemShape>
  static Params to_underlying_arguments(ProblemShape const& problem_size,
                                        typename Base::Arguments const& args, void*) {
    using cute::get;
    auto qk = cute::make_shape(get<2>(problem_size), get<3>(problem_size), get<4>(problem_size),
                               cute::make_shape(get<0>(problem_size), get<1>(problem_size)));
    auto params_qk = MmaQK::to_underlying_arguments(
        qk, typename MmaQK::Arguments{args.ptr_Q, args.dQ, args.ptr_K, args.dK}, nullptr);
    // P V: A (P) comes from registers; its TMA is built from K's pointer and never used.
    auto params_pv = MmaPV::to_underlying_arguments(
        cute::select<0, 2, 1, 3>(qk),
        typename MmaPV::Arguments{args.ptr_K, args.dK, args.ptr_V, cute::select<1, 0, 2>(args.dV)},
        nullptr);
    // The scales as CUTLASS's mainloop computes them (double, then float), to the bit.
    const double root = std::sqrt(static_cast<double>(get<4>(problem_size)));
    return Params{params_qk.tma_load_a,
                  params_qk.tma_load_b,
                  params_pv.tma_load_b,
                  1.0f / static_cast<float>(root),
                  static_cast<float>(std::log2(std::exp(1.0)) / root),
                  1.0f};
  }

  CUTLASS_DEVICE static void prefetch_tma_descriptors(Params const& params) {
    cute::prefetch_tma_descriptor(params.tma_load_q.get_tma_descriptor());
    cute::prefetch_tma_descriptor(params.tma_load_k.get_tma_descriptor());
    cute::prefetch_tma_descriptor(params.tma_load_v.get_tma_descriptor());
  }

  // The key and value blocks of one tile, K_0, V_0, K_1, V_1, ...: this block's half of each,
  // multicast to both blocks. The first K block is issued before the first Q is (the load warps'
  // barrier), as in CUTLASS's kernel.
  template <bool kLoadQ, class BlkCoord, class ProblemShape, class LoadWarpBarrier>
  CUTLASS_DEVICE void load_kv_maybe_q(int block_rank_in_cluster, BlkCoord const& blk_coord,
                                      Params const& params, ProblemShape const& problem_size,
                                      MainloopPipeline& pipeline, PipelineState& smem_pipe_write,
                                      MainloopPipelineQ&, PipelineStateQ&, SharedStorage& storage,
                                      LoadWarpBarrier& load_warp_barrier, bool do_barrier) {
    static_assert(!kLoadQ, "a warp of its own loads Q");
    constexpr uint16_t kBothBlocks = (1u << kClusterBlocks) - 1;
    const int blocks = Fusion{}.get_trip_count(blk_coord, TileShape{}, problem_size);
    const int lane_predicate = cute::elect_one_sync();
    auto block = cute::make_coord_iterator(blocks);
    int loads = 2 * blocks;
    LoadK load_k{params.tma_load_k, pipeline, storage.smem_k};
    auto state_k =
        load_k.init_state(block_rank_in_cluster, problem_size, TileShapeQK{}, blk_coord, blocks);
    LoadV load_v{params.tma_load_v, pipeline, storage.smem_v};
    auto state_v =
        load_v.init_state(block_rank_in_cluster, problem_size, TileShapePV{}, blk_coord, blocks);
    load_k.template step<false>(block, state_k, smem_pipe_write, lane_predicate, loads,
                                kBothBlocks);
    if (do_barrier) {
      load_warp_barrier.arrive();
      load_warp_barrier.wait(/*phase=*/0);
    }
    load_v.template step<true>(block, state_v, smem_pipe_write, lane_predicate, loads, kBothBlocks);
    CUTLASS_PRAGMA_NO_UNROLL
    while (loads > 0) {
      load_k.template step<false>(block, state_k, smem_pipe_write, lane_predicate, loads,
                                  kBothBlocks);
      load_v.template step<true>(block, state_v, smem_pipe_write, lane_predicate, loads,
                                 kBothBlocks);
    }
  }

  // One Q stage per consumer warp group, loaded by this block only.
  template <class BlkCoord, class ProblemShape, class LoadWarpBarrier>
  CUTLASS_DEVICE void load_maybe_q(BlkCoord const& blk_coord, Params const& params,
                                   ProblemShape const& problem_size, MainloopPipelineQ& pipeline_q,
                                   PipelineStateQ& smem_pipe_write_q, SharedStorage& storage,
                                   LoadWarpBarrier& load_warp_barrier, bool do_barrier) {
    const int lane_predicate = cute::elect_one_sync();
    LoadQ load_q{params.tma_load_q, pipeline_q, storage.smem_q};
    auto state_q = load_q.init_state(cute::_0{}, problem_size, TileShapeQK{}, blk_coord,
                                     Base::NumMmaWarpGroups);
    auto tile = cute::make_coord_iterator(cute::Int<Base::NumMmaWarpGroups>{});
    CUTLASS_PRAGMA_UNROLL
    for (int group = 0; group < Base::NumMmaWarpGroups; ++group) {
      int count = 1;
      load_q.step(tile, state_q, smem_pipe_write_q, lane_predicate, count);
      if (group == 0 && do_barrier) {
        load_warp_barrier.arrive();
        load_warp_barrier.wait(/*phase=*/0);
      }
    }
  }

  template <class... Any>
  CUTLASS_DEVICE void reduce(Any&&...) {}  // no split keys: nothing to reduce
};

// A kernel of clusters that ends with a cluster barrier, so that no block exits while the other
// may still arrive on its pipelines' barriers.
template <class Kernel>
struct ClusterKernel : Kernel {
  CUTLASS_DEVICE void operator()(const typename Kernel::Params& params, char* smem) {
    Kernel::operator()(params, smem);
    cute::cluster_sync();
  }
};

}  // namespace fmha_detail
}  // namespace ditbench
#endif
