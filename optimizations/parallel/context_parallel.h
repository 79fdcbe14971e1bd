#pragma once
// Context-parallel attention behind the model's one attention call site (attention.h): every rank
// holds a shard of the joint sequence (q, k, v: [B, H, S/P, D], key_mask: [B, S/P]) and gets the
// attention output for its own queries, equal to single-rank attention over the whole sequence.
#include <ATen/ATen.h>

#include <memory>
#include <vector>

#include "optimizations/attention/attention.h"
#include "optimizations/parallel/communicator.h"

namespace ditbench {

// Merges partial attention results over disjoint key blocks with their log-sum-exps (float32).
// out_*: [B, H, Sq, D], lse_*: [B, H, Sq]. A block whose keys were all masked has lse = -inf and
// contributes nothing, whatever its output holds (NaN included). Returns the merged pair; a query
// masked in every block gets output 0 and lse -inf.
LocalAttentionResult merge_attention(const LocalAttentionResult& a, const LocalAttentionResult& b);

// Merges the partial results of P disjoint key blocks into one: out in `dtype` ([B, H, Sq, D]),
// lse float32. On CUDA one fused kernel reads every part once (attention_merge.h); elsewhere, or
// when it does not serve, the parts are folded with merge_attention in float32 and rounded once.
LocalAttentionResult merge_attention_parts(const std::vector<LocalAttentionResult>& parts,
                                           at::ScalarType dtype);

// Ulysses (DeepSpeed-Ulysses / ParaAttention): all-to-all q, k, v from sequence-sharded
// [B, H, S/P, D] to head-sharded [B, H/P, S, D], all-gather the key masks in rank order (the
// gathered sequence is the shards in rank order), local attention, all-to-all back.
// With `chunks` > 1 (dividing H/P) the heads of each rank go in that many groups, pipelined: the
// exchange of group c + 1's q, k, v and of group c's output run (all_to_all_into) while group c's
// attention computes, which hides them where the transport needs no SM (the copy engines).
class UlyssesAttention : public ContextParallelAttention {
 public:
  explicit UlyssesAttention(Communicator& comm, int chunks = 1) : comm_(comm), chunks_(chunks) {}
  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    const at::Tensor& key_mask, const LocalAttentionFn& local) override;

 private:
  // attend with chunks_ > 1 head groups; full_mask: the gathered key mask [B, S] or undefined.
  at::Tensor attend_in_chunks(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& full_mask, const LocalAttentionFn& local);
  Communicator& comm_;
  int chunks_;
};

// Ring attention: each rank keeps its queries; K/V blocks (with their key-mask shard) travel round
// the ring, each transfer overlapped with the local attention of the block in hand; the P partial
// results merge by log-sum-exp in float32 once the last block is done (merge_attention_parts).
class RingAttention : public ContextParallelAttention {
 public:
  explicit RingAttention(Communicator& comm) : comm_(comm) {}
  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    const at::Tensor& key_mask, const LocalAttentionFn& local) override;
  // The same with the merged log-sum-exp [B, H, Sq] (float32), for callers that merge further.
  LocalAttentionResult attend_with_lse(const at::Tensor& q, const at::Tensor& k,
                                       const at::Tensor& v, const at::Tensor& key_mask,
                                       const LocalAttentionFn& local);

 private:
  Communicator& comm_;
};

// USP (xDiT's unified sequence parallelism): Ulysses inside each group of ulysses_comm, ring across
// the groups over ring_comm. Global rank layout (see make_parallel_groups): ranks of one Ulysses
// group are consecutive, so the all-to-all stays on the fastest links.
class UspAttention : public ContextParallelAttention {
 public:
  UspAttention(Communicator& ulysses_comm, Communicator& ring_comm)
      : ulysses_(ulysses_comm), ring_(ring_comm) {}
  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    const at::Tensor& key_mask, const LocalAttentionFn& local) override;

 private:
  UlyssesAttention ulysses_;
  RingAttention ring_;
};

// The communicators of one rank for a (cfg × ring × ulysses) layout of the world:
// global rank = cfg_index * (ring * ulysses) + ring_index * ulysses + ulysses_index.
struct ParallelGroups {
  int cfg_degree = 1, ulysses_degree = 1, ring_degree = 1;
  std::unique_ptr<Communicator>
      cfg;  // the ranks that hold the same sequence shard, one per CFG branch
  std::unique_ptr<Communicator>
      sequence;  // all ranks of this CFG branch (ulysses × ring), in shard order
  std::unique_ptr<Communicator> ulysses;  // consecutive ranks inside `sequence`
  std::unique_ptr<Communicator> ring;     // ranks with the same ulysses index inside `sequence`
  // This rank's shard index in the sequence (its rank in `sequence`).
  int sequence_rank() const { return sequence ? sequence->rank() : 0; }
  // Communicator::synchronize through one of the groups (they share the rank's stream and its
  // launch's failure signal); nothing to do on a single rank.
  void synchronize(const std::string& op) const;
};

// Collective over `world`. Throws Unsupported when cfg × ulysses × ring is not the world size or
// cfg_degree is not 1 or 2.
ParallelGroups make_parallel_groups(Communicator& world, int cfg_degree, int ulysses_degree,
                                    int ring_degree);

// Throws Unsupported when a (ulysses x ring) layout cannot serve a model with num_heads heads
// ("ulysses degree 4 does not divide 6 heads"). Needs no communicator, so a runner can check a
// config before it launches any rank.
void check_context_parallel_layout(int ulysses_degree, int ring_degree, int64_t num_heads);

// The head groups Ulysses pipelines (UlyssesAttention's chunks): DITBENCH_ULYSSES_CHUNKS, 1 when
// unset; used by Ulysses-only layouts (ring degree 1), whose check_context_parallel_layout then
// also requires them to divide the heads of a rank. A value that is not a positive integer is an
// InputError naming the variable.
int ulysses_chunks();

// The context-parallel wrapper for a layout: Ulysses when ring is 1, ring when ulysses is 1, USP
// otherwise; null when both are 1 (nothing to wrap). Checks the head count up front so that an
// impossible layout is a recorded skip before any work runs ("ulysses degree 4 does not divide
// 6 heads"). The groups must outlive the wrapper.
std::unique_ptr<ContextParallelAttention> make_context_parallel_attention(
    const ParallelGroups& groups, int64_t num_heads);

}  // namespace ditbench
