#pragma once
// CUTLASS's Hopper FMHA kernel (fmha_sm90.cuh) run by pairs of blocks, a cluster of two on
// neighbouring query tiles of one head, each key and value block fetched from L2 once for both:
// each block's TMA loads half of the tile and multicasts it into both blocks' shared memory.
// With one block per query tile, every block reads the head's whole K and V from L2; at the 480p
// step that is ~62 GB a call, ~4.7 TB/s over the call, which the pair halves.
//
// Everything but the K/V loads is CUTLASS's collective, inherited: Q loads, pipelines (whose
// consumers release each stage to both blocks of the cluster, as CUTLASS's pipeline does for any
// cluster shape), softmax, products, epilogue, tile schedulers (which round the query tiles up to
// the cluster's size, so a pair always shares a head). The kernel adds a cluster barrier at its
// end, so that neither block exits while its partner may still signal its barriers.
#ifdef DITBENCH_HAS_CUTLASS_FMHA
#include <cutlass/cutlass.h>
#include <cute/tensor.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>

#include "hopper_fmha/collective/fmha_collective_load.hpp"
#include "hopper_fmha/collective/fmha_collective_tma_warpspecialized.hpp"

namespace ditbench {
namespace fmha_detail {

template <class Base, class Fusion, int kBlocks>
struct ClusterMainloop : Base {
  using ClusterShape = cute::Shape<cute::Int<kBlocks>, cute::_1, cute::_1>;
  using typename Base::Element;
  using typename Base::MainloopPipeline;
  using typename Base::MainloopPipelineQ;
  using typename Base::PipelineState;
  using typename Base::PipelineStateQ;
  using typename Base::TileShapePV;
  using typename Base::TileShapeQK;

  // The builders' K and V operands for the cluster shape: their TMA copies multicast.
  template <class TileShape, class Layout>
  using Operand = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Element, typename Base::LayoutK,
      Base::Alignment, Element, Layout, Base::Alignment, float, TileShape, ClusterShape,
      typename Base::Stages, cutlass::gemm::KernelTmaWarpSpecialized>::CollectiveOp;
  using OperandK = Operand<TileShapeQK, typename Base::LayoutK>;
  using OperandV = Operand<TileShapePV, decltype(cute::select<1, 0, 2>(typename Base::LayoutV{}))>;
  using TmaK = typename OperandK::Params::TMA_B;
  using TmaV = typename OperandV::Params::TMA_B;
  static_assert(
      kBlocks == 1 ||
          (std::is_same_v<typename OperandK::GmemTiledCopyB, cute::SM90_TMA_LOAD_MULTICAST> &&
           std::is_same_v<typename OperandV::GmemTiledCopyB, cute::SM90_TMA_LOAD_MULTICAST>),
      "K and V multicast to the cluster");
  static_assert(std::is_same_v<typename OperandK::SmemLayoutB, typename Base::SmemLayoutK> &&
                    std::is_same_v<typename OperandV::SmemLayoutB, typename Base::SmemLayoutV>,
                "the multicast operands fill CUTLASS's shared-memory layouts");

  // CUTLASS's parameters (its Q load, softmax scales) and the multicast K and V loads.
  struct Params : Base::Params {
    TmaK tma_load_k_cluster;
    TmaV tma_load_v_cluster;
  };

  template <class ProblemShape>
  static Params to_underlying_arguments(ProblemShape const& problem_size,
                                        typename Base::Arguments const& args, void* workspace) {
    using namespace cute;
    auto shape_qk = make_shape(get<2>(problem_size), get<3>(problem_size), get<4>(problem_size),
                               make_shape(get<0>(problem_size), get<1>(problem_size)));
    auto k = OperandK::to_underlying_arguments(
        shape_qk, typename OperandK::Arguments{args.ptr_Q, args.dQ, args.ptr_K, args.dK}, nullptr);
    auto v = OperandV::to_underlying_arguments(
        select<0, 2, 1, 3>(shape_qk),
        typename OperandV::Arguments{args.ptr_K, args.dK, args.ptr_V, select<1, 0, 2>(args.dV)},
        nullptr);
    return Params{Base::to_underlying_arguments(problem_size, args, workspace), k.tma_load_b,
                  v.tma_load_b};
  }

  CUTLASS_DEVICE static void prefetch_tma_descriptors(Params const& params) {
    cute::prefetch_tma_descriptor(params.tma_load_q.get_tma_descriptor());
    cute::prefetch_tma_descriptor(params.tma_load_k_cluster.get_tma_descriptor());
    cute::prefetch_tma_descriptor(params.tma_load_v_cluster.get_tma_descriptor());
  }

  // The K/V producer warp: K_0, V_0, K_1, V_1, ... into the stages in turn, each this block's
  // half multicast to the cluster; with kLoadQ, also the warp groups' Q tiles (the first before
  // K_0, the second before V_0, as CUTLASS orders them). Without kLoadQ (Q has a warp of its own)
  // the two producer warps meet at `load_warp_barrier` once, after K_0.
  template <bool kLoadQ, class BlkCoord, class ProblemShape, class SharedStorage,
            class LoadWarpBarrier>
  CUTLASS_DEVICE void load_kv_maybe_q(int block_rank_in_cluster, BlkCoord const& blk_coord,
                                      Params const& params, ProblemShape const& problem_size,
                                      MainloopPipeline& pipeline, PipelineState& smem_pipe_write,
                                      MainloopPipelineQ& pipeline_q,
                                      PipelineStateQ& smem_pipe_write_q, SharedStorage& storage,
                                      LoadWarpBarrier& load_warp_barrier, bool do_barrier) {
    using namespace cutlass::fmha::collective;
    const int blocks = Fusion{}.get_trip_count(blk_coord, typename Base::TileShape{}, problem_size);
    const int lane_predicate = cute::elect_one_sync();
    constexpr uint16_t kEveryBlock = (1u << kBlocks) - 1;

    using LoadK = CollectiveLoadTma<LoadKind::kK, MainloopPipeline, Element,
                                    typename Base::SmemLayoutK, TmaK>;
    using LoadV = CollectiveLoadTma<LoadKind::kV, MainloopPipeline, Element,
                                    typename Base::SmemLayoutV, TmaV>;
    LoadK load_k{params.tma_load_k_cluster, pipeline, storage.smem_k};
    LoadV load_v{params.tma_load_v_cluster, pipeline, storage.smem_v};
    auto state_k =
        load_k.init_state(block_rank_in_cluster, problem_size, TileShapeQK{}, blk_coord, blocks);
    auto state_v =
        load_v.init_state(block_rank_in_cluster, problem_size, TileShapePV{}, blk_coord, blocks);
    auto k_iter = cute::make_coord_iterator(blocks);
    int k_count = 2 * blocks;  // each step counts one load, K and V alike

    typename Base::LoadQ load_q{params.tma_load_q, pipeline_q, storage.smem_q};
    auto state_q = load_q.init_state(cute::_0{}, problem_size, TileShapeQK{}, blk_coord,
                                     Base::NumMmaWarpGroups);
    auto q_iter = cute::make_coord_iterator(cute::Int<Base::NumMmaWarpGroups>{});
    int q_count = Base::NumMmaWarpGroups;

    if constexpr (kLoadQ) load_q.step(q_iter, state_q, smem_pipe_write_q, lane_predicate, q_count);
    load_k.template step<false>(k_iter, state_k, smem_pipe_write, lane_predicate, k_count,
                                kEveryBlock);
    if constexpr (kLoadQ) {
      load_q.step(q_iter, state_q, smem_pipe_write_q, lane_predicate, q_count);
    } else if (do_barrier) {
      load_warp_barrier.arrive();
      load_warp_barrier.wait(/*phase=*/0);
    }
    load_v.template step<true>(k_iter, state_v, smem_pipe_write, lane_predicate, k_count,
                               kEveryBlock);
    if constexpr (kLoadQ) {
      while (q_count > 0) load_q.step(q_iter, state_q, smem_pipe_write_q, lane_predicate, q_count);
    }
    CUTLASS_PRAGMA_NO_UNROLL
    while (k_count > 0) {
      load_k.template step<false>(k_iter, state_k, smem_pipe_write, lane_predicate, k_count,
                                  kEveryBlock);
      load_v.template step<true>(k_iter, state_v, smem_pipe_write, lane_predicate, k_count,
                                 kEveryBlock);
    }
  }
};

// `Kernel` whose blocks wait for their whole cluster before exiting: a block's consumers release
// each stage to its partner's barriers too, so neither may leave while the other still runs.
template <class Kernel>
struct ClusterExitKernel : Kernel {
  CUTLASS_DEVICE void operator()(typename Kernel::Params const& params, char* smem) {
    Kernel::operator()(params, smem);
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    cute::cluster_arrive();
    cute::cluster_wait();
#endif
  }
};

}  // namespace fmha_detail
}  // namespace ditbench
#endif
