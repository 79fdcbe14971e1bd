#pragma once
// Context parallelism on in-process ranks for the transformer tests: every rank runs the forward
// pass and prepare() under a ulysses x ring layout with math attention behind the one call site;
// the tests compare with the single-rank pass (outputs, the shards' real rows, TeaCache signals).
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include <mutex>
#include <vector>

#include "models/model.h"
#include "optimizations/attention/attention.h"
#include "optimizations/parallel/context_parallel.h"
#include "optimizations/parallel/parallel_context.h"
#include "test_util.h"

namespace ditbench::testing {

struct RankResults {
  std::vector<at::Tensor> outputs;  // each rank's forward output, by rank
  std::vector<BlockState> states;   // each rank's prepared shard, by sequence rank
  std::vector<at::Tensor> signals;  // each shard's TeaCache signal (real rows), by sequence rank
};

inline RankResults run_on_ranks(BlockTransformer& model, const TransformerInputs& in, int64_t heads,
                                int ranks, int ulysses, int ring) {
  RankResults r;
  const auto n = static_cast<size_t>(ranks);
  r.outputs.resize(n);
  r.states.resize(n);
  r.signals.resize(n);
  std::mutex mutex;
  launch_ranks(ranks, [&](int rank, Communicator& world) {
    c10::InferenceMode inference;
    ParallelGroups groups = make_parallel_groups(world, 1, ulysses, ring);
    auto cp = make_context_parallel_attention(groups, heads);
    AttentionSettings attn;
    attn.backend = "math";
    attn.context_parallel = cp.get();
    AttentionScope attention_scope(attn);
    ParallelScope parallel_scope(&groups);
    auto out = model.forward(in);
    BlockState s = model.prepare(in);
    auto signal = model.teacache_signal(s);
    std::lock_guard<std::mutex> lock(mutex);
    const auto shard = static_cast<size_t>(groups.sequence_rank());
    r.outputs[static_cast<size_t>(rank)] = out;
    r.states[shard] = s;
    r.signals[shard] = signal;
  });
  return r;
}

// Every rank's output is `expected` up to 1e-5 (relative).
inline void expect_outputs_match(const RankResults& r, const at::Tensor& expected) {
  for (size_t i = 0; i < r.outputs.size(); ++i) {
    ASSERT_EQ(r.outputs[i].sizes(), expected.sizes()) << "rank " << i;
    EXPECT_LT(rel_error(r.outputs[i], expected), 1e-5) << "rank " << i;
  }
}

// The shards' TeaCache signals in shard order, [B, N, D], are the single-rank `expected` one.
inline void expect_signals_join(const RankResults& r, const at::Tensor& expected) {
  auto joined = at::cat(r.signals, 1);
  ASSERT_EQ(joined.sizes(), expected.sizes());
  EXPECT_LT(rel_error(joined, expected), 1e-5);
}

// The shards' real hidden rows in shard order.
inline at::Tensor joined_real_rows(const RankResults& r) {
  std::vector<at::Tensor> real;
  for (const auto& s : r.states) {
    real.push_back(s.hidden_valid_rows < 0 ? s.hidden : s.hidden.narrow(1, 0, s.hidden_valid_rows));
  }
  return at::cat(real, 1);
}

// hidden_valid_rows and the hidden and text row counts of every shard.
struct ShardRows {
  std::vector<int64_t> valid, local, text;
};
inline ShardRows shard_rows(const RankResults& r) {
  ShardRows rows;
  for (const auto& s : r.states) {
    rows.valid.push_back(s.hidden_valid_rows);
    rows.local.push_back(s.hidden.size(1));
    rows.text.push_back(s.context.defined() ? s.context.size(1) : 0);
  }
  return rows;
}

}  // namespace ditbench::testing
