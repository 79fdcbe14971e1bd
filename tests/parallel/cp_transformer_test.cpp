// HunyuanVideo under context parallelism on in-process ranks: the model shards its tokens in
// prepare() (ParallelScope), the attention wrapper (Ulysses, ring, USP) runs behind the one call
// site, and finish() gathers the image tokens; the output must equal the single-rank forward pass.
// The token counts (27 image, 5 text) divide by neither 2 nor 4, so shards carry padding, and one
// sample's text is right-padded, so the text mask is sharded too.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include <mutex>

#include "cp_agreement.h"
#include "models/checkpoint/checkpoint.h"
#include "models/common/error.h"
#include "models/hunyuan_video/config.h"
#include "models/hunyuan_video/transformer.h"
#include "optimizations/parallel/context_parallel.h"
#include "optimizations/parallel/parallel_context.h"

namespace ditbench {
namespace {

using ditbench::testing::rel_error;

struct Case {
  HunyuanVideoConfig config;
  HunyuanVideoTransformer3DModel model{nullptr};
  TransformerInputs in;
  at::Tensor expected;         // single-rank forward: [B, C, F, H, W]
  at::Tensor expected_signal;  // single-rank TeaCache signal: [B, N, D]
};

Case make_case(int64_t heads = 4) {
  Case c;
  c.config = hunyuan_video_preset("hunyuan-video-tiny");
  c.config.num_attention_heads = heads;  // so that Ulysses over `heads` ranks divides them
  c.model = HunyuanVideoTransformer3DModel(c.config, at::TensorOptions().dtype(at::kFloat));
  random_init(*c.model, 11);
  at::manual_seed(3);
  c.in.latents = at::randn({2, c.config.in_channels, 3, 6, 6});  // patch grid 3 x 3 x 3: N = 27
  c.in.timestep = at::tensor({900.0f, 300.0f});
  c.in.guidance = at::tensor({6016.0f, 6016.0f});
  c.in.prompt.embeds = at::randn({2, 5, c.config.text_embed_dim});
  c.in.prompt.attention_mask = at::tensor({1, 1, 1, 0, 0, 1, 1, 1, 1, 1}).reshape({2, 5});
  c.in.prompt.pooled = at::randn({2, c.config.pooled_projection_dim});
  c10::InferenceMode inference;
  c.expected = c.model->forward(c.in);
  BlockState s = c.model->prepare(c.in);
  c.expected_signal = c.model->teacache_signal(s);
  return c;
}

// Runs the forward pass on `ranks` in-process ranks with the given layout and checks every rank's
// output against the single-rank one; the ranks' TeaCache signals (real rows only) in rank order
// must be the single-rank signal.
void expect_matches_single_rank(int ranks, int ulysses, int ring) {
  static Case c = make_case();
  const auto r =
      testing::run_on_ranks(*c.model, c.in, c.config.num_attention_heads, ranks, ulysses, ring);
  testing::expect_outputs_match(r, c.expected);
  testing::expect_signals_join(r, c.expected_signal);
}

TEST(ContextParallelTransformer, UlyssesMatchesSingleRankOn2And4Ranks) {
  expect_matches_single_rank(2, 2, 1);
  expect_matches_single_rank(4, 4, 1);
}

TEST(ContextParallelTransformer, RingMatchesSingleRankOn2And4Ranks) {
  expect_matches_single_rank(2, 1, 2);
  expect_matches_single_rank(4, 1, 4);
}

TEST(ContextParallelTransformer, UspMatchesSingleRankOn2x2Ranks) {
  expect_matches_single_rank(4, 2, 2);
}

TEST(ContextParallelTransformer, ShardsCarryPaddingRowsThatTheStateMarks) {
  // 27 image tokens over 4 ranks: 7 rows each, the last rank holds 6 real rows and 1 padding row.
  static Case c = make_case();
  std::mutex mutex;
  std::vector<int64_t> valid(4), local(4);
  launch_ranks(4, [&](int rank, Communicator& world) {
    c10::InferenceMode inference;
    ParallelGroups groups = make_parallel_groups(world, 1, 1, 4);
    ParallelScope parallel_scope(&groups);
    BlockState s = c.model->prepare(c.in);
    std::lock_guard<std::mutex> lock(mutex);
    valid[static_cast<size_t>(rank)] = s.hidden_valid_rows;
    local[static_cast<size_t>(rank)] = s.hidden.size(1);
  });
  EXPECT_EQ(local, (std::vector<int64_t>{7, 7, 7, 7}));
  EXPECT_EQ(valid, (std::vector<int64_t>{7, 7, 7, 6}));
  // One rank: no layout, every row real.
  c10::InferenceMode inference;
  EXPECT_EQ(c.model->prepare(c.in).hidden_valid_rows, -1);
}

TEST(ContextParallelTransformer, EvenShardsOfValidTextNeedNoKeyMaskAndStillMatch) {
  // 2 x 4 x 4 = 32 image tokens and 4 valid of 5 text tokens (the padded one is dropped) divide
  // by 2 and 4: no rank holds padding, so attention runs unmasked, and the output is unchanged.
  static Case c = make_case();
  TransformerInputs in = c.in;
  at::manual_seed(5);
  in.latents = at::randn({2, c.config.in_channels, 2, 8, 8});
  in.prompt.attention_mask = at::tensor({1, 1, 1, 1, 0, 1, 1, 1, 1, 0}).reshape({2, 5});
  at::Tensor expected;
  {
    c10::InferenceMode inference;
    expected = c.model->forward(in);
  }
  for (int ranks : {2, 4}) {
    std::mutex mutex;
    std::vector<int> masked(static_cast<size_t>(ranks), -1);
    launch_ranks(ranks, [&](int rank, Communicator& world) {
      c10::InferenceMode inference;
      ParallelGroups groups = make_parallel_groups(world, 1, ranks, 1);
      ParallelScope parallel_scope(&groups);
      BlockState s = c.model->prepare(in);
      std::lock_guard<std::mutex> lock(mutex);
      masked[static_cast<size_t>(rank)] = hunyuan_video_state(s).key_mask.defined();
    });
    EXPECT_EQ(masked, std::vector<int>(static_cast<size_t>(ranks), 0)) << ranks << " ranks";
    const auto r =
        testing::run_on_ranks(*c.model, in, c.config.num_attention_heads, ranks, ranks, 1);
    testing::expect_outputs_match(r, expected);
  }
  // The case above (27 image tokens) keeps a mask: its shards carry padding rows.
  launch_ranks(2, [&](int, Communicator& world) {
    c10::InferenceMode inference;
    ParallelGroups groups = make_parallel_groups(world, 1, 2, 1);
    ParallelScope parallel_scope(&groups);
    EXPECT_TRUE(hunyuan_video_state(c.model->prepare(c.in)).key_mask.defined());
  });
}

TEST(ContextParallelTransformer, EightRanksInEveryLayoutMatchSingleRank) {
  // The 8-GPU layouts on 8 in-process ranks: 27 image and 5 text tokens leave 5 padding rows.
  static Case c = make_case(8);
  for (auto [ulysses, ring] : std::vector<std::pair<int, int>>{{8, 1}, {1, 8}, {4, 2}, {2, 4}}) {
    SCOPED_TRACE("ulysses " + std::to_string(ulysses) + " x ring " + std::to_string(ring));
    const auto r = testing::run_on_ranks(*c.model, c.in, 8, 8, ulysses, ring);
    testing::expect_outputs_match(r, c.expected);
    testing::expect_signals_join(r, c.expected_signal);
  }
}

}  // namespace
}  // namespace ditbench
