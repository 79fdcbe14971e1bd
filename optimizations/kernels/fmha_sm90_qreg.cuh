#pragma once
// A mainloop for CUTLASS's Hopper FMHA kernel (fmha_sm90.cuh) that keeps each warp group's query
// rows in registers: Q (64 rows x 128 dims, bf16: 32 registers a thread) is read from shared
// memory once per tile by ldmatrix, and every S = Q K^T product takes it from registers (the
// register-sourced WGMMA) instead of reading it from shared memory again for every key block.
// Per warp group and key block the products read K and V, 64 KB of shared memory, where
// CUTLASS's mainloop reads Q, K and V, 80 KB: at the card's power limit a step is bounded by its
// energy, and shared-memory operand reads are part of every product's.
//
// Everything else is CUTLASS's mainloop as it ships, in the same order: the pipelines' waits and
// releases, the warp groups' turns, the softmax (CUTLASS's CollectiveSoftmax), the P V product
// from registers. The products are the same instructions on the same values, so the outputs are
// CUTLASS's bit for bit (GPU test).
#ifdef DITBENCH_HAS_CUTLASS_FMHA
#include <cutlass/cutlass.h>
#include <cute/tensor.hpp>

#include "hopper_fmha/collective/fmha_collective_softmax.hpp"
#include "hopper_fmha/collective/fmha_collective_tma_warpspecialized.hpp"
#include "hopper_fmha/collective/fmha_common.hpp"

namespace ditbench {
namespace fmha_detail {

template <class Base, class Fusion>
struct QueryRegistersMainloop : Base {
  using typename Base::Element;
  using typename Base::PipelineState;
  using typename Base::PipelineStateQ;
  using typename Base::TiledMmaPV;
  using typename Base::TiledMmaQK;
  using typename Base::TileShape;
  using typename Base::TileShapePV;
  using typename Base::TileShapeQK;
  // S = Q K^T with Q from registers.
  using TiledMmaQKRegisters = decltype(cutlass::fmha::collective::convert_to_gmma_rs(TiledMmaQK{}));

  // The signature of CUTLASS's mainloop compute(), which the kernel calls.
  template <class BlkCoord, class Params, class ProblemShape, class MainloopPipeline,
            class MainloopPipelineQ, class MainloopPipelineReducer, class PipelineStateReducer,
            class SharedStorage, class MathWgOrderBarrier>
  CUTLASS_DEVICE auto compute(BlkCoord const& blk_coord, BlkCoord const& wg_coord,
                              Params const& params, ProblemShape const& problem_size,
                              MainloopPipeline& pipeline, PipelineState& smem_pipe_read,
                              MainloopPipelineQ& pipeline_q, PipelineStateQ& smem_pipe_read_q,
                              MainloopPipelineReducer&, PipelineStateReducer&,
                              SharedStorage& storage, MathWgOrderBarrier& math_wg_order_barrier) {
    using namespace cute;
    using cutlass::fmha::collective::gemm_zero_acc;
    using cutlass::fmha::collective::make_acc_into_op;
    const int thread_idx = int(threadIdx.x);
    PipelineState smem_pipe_release = smem_pipe_read;
    const PipelineStateQ smem_pipe_release_q = smem_pipe_read_q;

    TiledMmaQKRegisters tiled_mma_qk;
    auto thr_mma_qk = tiled_mma_qk.get_thread_slice(thread_idx);
    Tensor sQ = make_tensor(make_smem_ptr(storage.smem_q.data()), typename Base::SmemLayoutQ{});
    Tensor sK = make_tensor(make_smem_ptr(storage.smem_k.data()), typename Base::SmemLayoutK{});
    Tensor tSrQ = thr_mma_qk.partition_fragment_A(sQ(_, _, 0));            // (MMA, M, K) registers
    Tensor tSrK = thr_mma_qk.make_fragment_B(thr_mma_qk.partition_B(sK));  // (MMA, N, K, PIPE)
    // ldmatrix of this warp group's Q stage into the fragment's layout (the copy's threads are
    // the warp group's 128).
    auto q_copy = make_tiled_copy_A(Copy_Atom<SM75_U32x4_LDSM_N, Element>{}, tiled_mma_qk);
    auto thr_q_copy = q_copy.get_thread_slice(thread_idx % cutlass::NumThreadsPerWarpGroup);
    Tensor tQsQ = thr_q_copy.partition_S(sQ);  // (CPY, M, K, PIPE)
    Tensor tQrQ = thr_q_copy.retile_D(tSrQ);   // (CPY, M, K)

    TiledMmaPV tiled_mma_pv;
    auto thr_mma_pv = tiled_mma_pv.get_thread_slice(thread_idx);
    Tensor sV = make_tensor(make_smem_ptr(storage.smem_v.data()), typename Base::SmemLayoutV{});
    Tensor tOrV = thr_mma_pv.make_fragment_B(thr_mma_pv.partition_B(sV));  // (MMA, N, K, PIPE)

    int k_tile_count = Fusion{}.get_unmasked_trip_count(blk_coord, TileShape{}, problem_size);

    // Key positions of this warp group's scores, for the mask of the last (partial) block.
    Tensor cP = make_identity_tensor(take<0, 2>(TileShapeQK{}));
    Tensor tPcP = thr_mma_qk.partition_C(cP);
    tPcP.data() = tPcP.data() + E<0>{} * get<0>(wg_coord) * get<0>(TileShapeQK{});

    Tensor acc_pv = partition_fragment_C(tiled_mma_pv, take<0, 2>(TileShapePV{}));  // O
    cutlass::fmha::collective::CollectiveSoftmax<float, Fusion, Params> softmax{params};
    auto softmax_state = softmax.init(acc_pv, tiled_mma_pv);

    pipeline_q.consumer_wait(smem_pipe_read_q);
    cute::copy(q_copy, tQsQ(_, _, _, smem_pipe_read_q.index()), tQrQ);

    // Block 0: S_0 in the warp groups' turn, its softmax, then P_0 V_0.
    {
      --k_tile_count;
      Tensor acc_qk = partition_fragment_C(tiled_mma_qk, take<0, 2>(TileShapeQK{}));  // S
      pipeline.consumer_wait(smem_pipe_read);
      math_wg_order_barrier.wait();
      warpgroup_fence_operand(tSrQ);
      warpgroup_fence_operand(acc_qk);
      warpgroup_arrive();
      gemm_zero_acc(tiled_mma_qk, tSrQ, tSrK(_, _, _, smem_pipe_read.index()), acc_qk);
      warpgroup_commit_batch();
      math_wg_order_barrier.arrive();
      ++smem_pipe_read;
      warpgroup_wait<0>();
      warpgroup_fence_operand(acc_qk);
      softmax.step(acc_qk, tiled_mma_qk, tPcP, softmax_state, problem_size);
      Tensor p = make_acc_into_op<Element>(acc_qk, typename TiledMmaPV::LayoutA_TV{});
      pipeline.consumer_wait(smem_pipe_read);
      warpgroup_fence_operand(acc_pv);
      warpgroup_fence_operand(p);
      warpgroup_arrive();
      gemm_zero_acc(tiled_mma_pv, p, tOrV(_, _, _, smem_pipe_read.index()), acc_pv);
      warpgroup_commit_batch();
      pipeline.consumer_release(smem_pipe_release);
      ++smem_pipe_release;
      ++smem_pipe_read;
      tPcP.data() = tPcP.data() + E<1>{} * get<1>(TileShapeQK{});
    }

    // Block j >= 1: S_j (while P_{j-1} V_{j-1} may still run), then both awaited, the softmax
    // (the output rescaled), P_j V_j queued. `masked`: keys past the end masked (the last block).
    auto block = [&](auto masked) {
      Tensor acc_qk = partition_fragment_C(tiled_mma_qk, take<0, 2>(TileShapeQK{}));  // S
      pipeline.consumer_wait(smem_pipe_read);
      warpgroup_fence_operand(tSrQ);
      warpgroup_fence_operand(acc_qk);
      warpgroup_arrive();
      gemm_zero_acc(tiled_mma_qk, tSrQ, tSrK(_, _, _, smem_pipe_read.index()), acc_qk);
      warpgroup_commit_batch();
      ++smem_pipe_read;
      auto token = pipeline.consumer_try_wait(smem_pipe_read);
      warpgroup_wait<0>();
      warpgroup_fence_operand(acc_qk);
      warpgroup_fence_operand(acc_pv);
      if constexpr (Base::kIsMainloopLocked) math_wg_order_barrier.wait();
      softmax.template step<decltype(masked)::value>(acc_qk, tiled_mma_qk, tPcP, softmax_state,
                                                     acc_pv, tiled_mma_pv, problem_size);
      if constexpr (Base::kIsMainloopLocked) math_wg_order_barrier.arrive();
      Tensor p = make_acc_into_op<Element>(acc_qk, typename TiledMmaPV::LayoutA_TV{});
      pipeline.consumer_wait(smem_pipe_read, token);
      warpgroup_fence_operand(acc_pv);
      warpgroup_fence_operand(p);
      warpgroup_arrive();
      cute::gemm(tiled_mma_pv, p, tOrV(_, _, _, smem_pipe_read.index()), acc_pv);
      warpgroup_commit_batch();
      pipeline.consumer_release(smem_pipe_release);  // V_{j-1}
      ++smem_pipe_release;
      pipeline.consumer_release(smem_pipe_release);  // K_j
      ++smem_pipe_release;
      ++smem_pipe_read;
      tPcP.data() = tPcP.data() + E<1>{} * get<1>(TileShapeQK{});
    };
    CUTLASS_PRAGMA_NO_UNROLL
    for (; k_tile_count > 0; --k_tile_count) block(false_type{});
    k_tile_count += Fusion{}.get_masked_trip_count(blk_coord, TileShape{}, problem_size);
    CUTLASS_PRAGMA_NO_UNROLL
    for (; k_tile_count > 0; --k_tile_count) block(true_type{});

    if constexpr (Base::kIsPersistent) pipeline_q.consumer_release(smem_pipe_release_q);
    warpgroup_wait<0>();
    warpgroup_fence_operand(acc_pv);
    if constexpr (Base::kIsPersistent) pipeline.consumer_release(smem_pipe_release);
    ++smem_pipe_release;

    auto lse = softmax.tail(softmax_state, acc_pv, tiled_mma_pv);
    return make_tuple(acc_pv, lse);
  }
};

}  // namespace fmha_detail
}  // namespace ditbench
#endif
