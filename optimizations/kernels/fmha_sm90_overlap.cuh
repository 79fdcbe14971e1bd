#pragma once
// A mainloop for CUTLASS's Hopper FMHA kernel (fmha_sm90.cuh) in which each consumer warp group
// overlaps its own softmax with its own tensor-core work: while the P V product of key block j-1
// runs, the softmax of block j (its Q K^T product already done) computes P_j and the row scale;
// only then is the output rescaled and P_j V_j queued. CUTLASS's mainloop waits for both products
// before every softmax, so a warp group's tensor cores idle during its softmax unless the other
// warp group has work queued.
//
// The arithmetic is the same as CUTLASS's mainloop, operation for operation (running row max, exp2
// of the scaled scores less the scaled max, per-thread row sums rescaled then increased by the
// block's pairwise sum, the output rescaled before each P V): the two kernels' outputs are equal
// bit for bit. Only the order in which the warp group waits changes. Everything else (loads,
// pipelines, shared storage, epilogue, tile schedulers) is CUTLASS's collective, inherited.
//
// Per warp group and key block j (64 query rows, 128 keys, head dim 128), in issue order:
//   S_j = Q K_j^T          (wgmma, shared-memory operands)
//   O  += P_{j-1} V_{j-1}  (wgmma, P from registers)
//   wait for S_j;  m_j = max(m_{j-1}, rowmax S_j);  P_j = exp2((S_j - m_j) log2(e) / sqrt(D))
//   wait for O;    O *= exp2((m_{j-1} - m_j) log2(e) / sqrt(D))
// and after the last block O += P_last V_last.
#ifdef DITBENCH_HAS_CUTLASS_FMHA
#include <cutlass/cutlass.h>
#include <cute/tensor.hpp>

#include "hopper_fmha/collective/fmha_collective_softmax.hpp"
#include "hopper_fmha/collective/fmha_collective_tma_warpspecialized.hpp"
#include "hopper_fmha/collective/fmha_common.hpp"

namespace ditbench {
namespace fmha_detail {

template <class Base, class Fusion>
struct OverlappedMainloop : Base {
  using typename Base::Element;
  using typename Base::PipelineState;
  using typename Base::PipelineStateQ;
  using typename Base::TiledMmaPV;
  using typename Base::TiledMmaQK;
  using typename Base::TileShape;
  using typename Base::TileShapePV;
  using typename Base::TileShapeQK;

  // P_j from the scores S_j (in place) and each row's rescale factor for the output so far;
  // the running max and per-thread row sums in `state` move on to block j. `first`: block 0
  // (nothing to rescale).
  template <bool kFirst, class AccQK, class State, class RowScale, class Params>
  CUTLASS_DEVICE static void softmax_scores(AccQK& acc_qk, State& state, RowScale& row_scale,
                                            const Params& params) {
    using namespace cute;
    TiledMmaQK tiled_mma_qk;
    Tensor s = make_tensor(acc_qk.data(), cutlass::fmha::collective::layout_acc_mn(
                                              tiled_mma_qk, acc_qk.layout()));  // (rows, keys)
    auto reduction = cutlass::fmha::collective::reduction_target_n(tiled_mma_qk);
    constexpr int kReductionRank = decltype(rank(reduction))::value;
    auto& s_max = get<0>(state);
    auto& a_sum = get<1>(state);
    const float scale = params.scale_softmax_log2;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < size<0>(s); i++) {
      const float previous = s_max(i);
      float m = kFirst ? s(i, 0) : s_max(i);
      CUTLASS_PRAGMA_UNROLL
      for (int j = kFirst ? 1 : 0; j < size<1>(s); j++) m = ::max(m, s(i, j));
      for_each(make_seq<kReductionRank>{}, [&](auto r) {
        CUTLASS_PRAGMA_UNROLL
        for (int step = 1; step < shape<r>(reduction); step *= 2) {
          m = ::max(m, __shfl_xor_sync(uint32_t(-1), m, stride<r>(reduction) * step));
        }
      });
      s_max(i) = m;
      const float current = m == -INFINITY ? 0.f : m;
      const float scale_max = scale * current;
      CUTLASS_PRAGMA_UNROLL
      for (int j = 0; j < size<1>(s); j++) s(i, j) = ::exp2f(scale * s(i, j) - scale_max);
      const float block_sum = cutlass::fmha::collective::reduce(s(i, _), cute::plus{});
      if constexpr (kFirst) {
        a_sum(i) = block_sum;
      } else {
        row_scale(i) = ::exp2f((previous - current) * scale);
        a_sum(i) = a_sum(i) * row_scale(i) + block_sum;
      }
    }
  }

  template <class AccPV, class RowScale>
  CUTLASS_DEVICE static void rescale(AccPV& acc_pv, const RowScale& row_scale) {
    using namespace cute;
    TiledMmaPV tiled_mma_pv;
    Tensor o = make_tensor(acc_pv.data(), cutlass::fmha::collective::layout_acc_mn(
                                              tiled_mma_pv, acc_pv.layout()));  // (rows, dims)
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < size<0>(o); i++) {
      CUTLASS_PRAGMA_UNROLL
      for (int j = 0; j < size<1>(o); j++) o(i, j) *= row_scale(i);
    }
  }

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
    using cutlass::fmha::collective::gemm_reset_zero_acc;
    using cutlass::fmha::collective::gemm_zero_acc;
    using cutlass::fmha::collective::make_acc_into_op;
    const int thread_idx = int(threadIdx.x);

    TiledMmaQK tiled_mma_qk;
    auto thr_mma_qk = tiled_mma_qk.get_thread_slice(thread_idx);
    Tensor sQ = make_tensor(make_smem_ptr(storage.smem_q.data()), typename Base::SmemLayoutQ{});
    Tensor sK = make_tensor(make_smem_ptr(storage.smem_k.data()), typename Base::SmemLayoutK{});
    Tensor tSrQ = thr_mma_qk.make_fragment_A(thr_mma_qk.partition_A(sQ));  // (MMA, M, K, PIPE)
    Tensor tSrK = thr_mma_qk.make_fragment_B(thr_mma_qk.partition_B(sK));  // (MMA, N, K, PIPE)

    TiledMmaPV tiled_mma_pv;
    auto thr_mma_pv = tiled_mma_pv.get_thread_slice(thread_idx);
    Tensor sV = make_tensor(make_smem_ptr(storage.smem_v.data()), typename Base::SmemLayoutV{});
    Tensor tOrV = thr_mma_pv.make_fragment_B(thr_mma_pv.partition_B(sV));  // (MMA, N, K, PIPE)

    // Key positions of this warp group's scores, for the mask of the last (partial) block.
    Tensor cP = make_identity_tensor(take<0, 2>(TileShapeQK{}));
    Tensor tPcP = thr_mma_qk.partition_C(cP);
    const int m_block = get<0>(wg_coord);
    tPcP.data() = tPcP.data() + E<0>{} * m_block * get<0>(TileShapeQK{});

    const int blocks = Fusion{}.get_unmasked_trip_count(blk_coord, TileShape{}, problem_size) +
                       Fusion{}.get_masked_trip_count(blk_coord, TileShape{}, problem_size);

    Tensor acc_pv = partition_fragment_C(tiled_mma_pv, take<0, 2>(TileShapePV{}));  // O
    Tensor acc_qk = partition_fragment_C(tiled_mma_qk, take<0, 2>(TileShapeQK{}));  // S
    cutlass::fmha::collective::CollectiveSoftmax<float, Fusion, Params> softmax{params};
    auto state = softmax.init(acc_pv, tiled_mma_pv);
    auto row_scale = make_fragment_like(get<0>(state));

    PipelineStateQ smem_pipe_release_q = smem_pipe_read_q;
    pipeline_q.consumer_wait(smem_pipe_read_q);

    // Block 0: S_0, its softmax; P_0 waits in registers for V_0.
    pipeline.consumer_wait(smem_pipe_read);
    math_wg_order_barrier.wait();
    warpgroup_fence_operand(acc_qk);
    warpgroup_arrive();
    gemm_zero_acc(tiled_mma_qk, tSrQ(_, _, _, smem_pipe_read_q.index()),
                  tSrK(_, _, _, smem_pipe_read.index()), acc_qk);
    warpgroup_commit_batch();
    math_wg_order_barrier.arrive();
    PipelineState k_stage = smem_pipe_read;  // K_0
    ++smem_pipe_read;
    PipelineState v_stage = smem_pipe_read;  // V_0
    ++smem_pipe_read;
    warpgroup_wait<0>();
    warpgroup_fence_operand(acc_qk);
    pipeline.consumer_release(k_stage);
    if (blocks == 1) Fusion{}.before_softmax(acc_qk, tPcP, problem_size);
    softmax_scores<true>(acc_qk, state, row_scale, params);
    auto p = make_acc_into_op<Element>(acc_qk, typename TiledMmaPV::LayoutA_TV{});

    // Block j >= 1: S_j queued, then P_{j-1} V_{j-1}; the softmax of S_j runs while the latter
    // does. `kMasked`: the last block (keys past the end masked). One code path for every
    // block's products (the first P V's zeroed accumulator is the instruction's runtime scale
    // flag), no branch while a product is in flight.
    auto iteration = [&](int block, auto masked) {
      tPcP.data() = tPcP.data() + E<1>{} * get<1>(TileShapeQK{});
      pipeline.consumer_wait(smem_pipe_read);  // K_j
      if constexpr (Base::kIsMainloopLocked) math_wg_order_barrier.wait();
      warpgroup_fence_operand(acc_qk);
      warpgroup_arrive();
      gemm_zero_acc(tiled_mma_qk, tSrQ(_, _, _, smem_pipe_read_q.index()),
                    tSrK(_, _, _, smem_pipe_read.index()), acc_qk);
      warpgroup_commit_batch();
      k_stage = smem_pipe_read;
      ++smem_pipe_read;
      pipeline.consumer_wait(v_stage);  // V_{j-1}
      warpgroup_fence_operand(acc_pv);
      warpgroup_fence_operand(p);
      warpgroup_arrive();
      tiled_mma_pv.accumulate_ = block == 1 ? GMMA::ScaleOut::Zero : GMMA::ScaleOut::One;
      gemm_reset_zero_acc(tiled_mma_pv, p, tOrV(_, _, _, v_stage.index()), acc_pv);
      warpgroup_commit_batch();
      if constexpr (Base::kIsMainloopLocked) math_wg_order_barrier.arrive();

      warpgroup_wait<1>();  // S_j is ready; P_{j-1} V_{j-1} may still run
      warpgroup_fence_operand(acc_qk);
      pipeline.consumer_release(k_stage);
      if constexpr (decltype(masked)::value) Fusion{}.before_softmax(acc_qk, tPcP, problem_size);
      softmax_scores<false>(acc_qk, state, row_scale, params);

      warpgroup_wait<0>();
      warpgroup_fence_operand(acc_pv);
      warpgroup_fence_operand(p);
      pipeline.consumer_release(v_stage);
      v_stage = smem_pipe_read;  // V_j
      ++smem_pipe_read;
      rescale(acc_pv, row_scale);
      p = make_acc_into_op<Element>(acc_qk, typename TiledMmaPV::LayoutA_TV{});
    };
    CUTLASS_PRAGMA_NO_UNROLL
    for (int block = 1; block < blocks - 1; ++block) iteration(block, cute::false_type{});
    if (blocks > 1) iteration(blocks - 1, cute::true_type{});

    // The last block's P V.
    pipeline.consumer_wait(v_stage);
    warpgroup_fence_operand(acc_pv);
    warpgroup_fence_operand(p);
    warpgroup_arrive();
    tiled_mma_pv.accumulate_ = blocks == 1 ? GMMA::ScaleOut::Zero : GMMA::ScaleOut::One;
    gemm_reset_zero_acc(tiled_mma_pv, p, tOrV(_, _, _, v_stage.index()), acc_pv);
    warpgroup_commit_batch();
    if constexpr (Base::kIsPersistent) pipeline_q.consumer_release(smem_pipe_release_q);
    warpgroup_wait<0>();
    warpgroup_fence_operand(acc_pv);
    if constexpr (Base::kIsPersistent) pipeline.consumer_release(v_stage);

    auto lse = softmax.tail(state, acc_pv, tiled_mma_pv);
    return make_tuple(acc_pv, lse);
  }
};

}  // namespace fmha_detail
}  // namespace ditbench
#endif
