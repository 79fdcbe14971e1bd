// FLUX.1 through the shared axes: context parallelism on in-process ranks (Ulysses, ring, USP:
// the output and the TeaCache signal must equal the single-rank ones), the caches' contract
// (a reused step on unchanged inputs gives the computed output), the TeaCache signal, and the FP8
// layer selection.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <mutex>

#include "cp_agreement.h"
#include "model_test_util.h"
#include "models/checkpoint/checkpoint.h"
#include "models/flux/config.h"
#include "models/flux/pipeline.h"
#include "models/flux/transformer.h"
#include "optimizations/attention/attention.h"
#include "optimizations/cache/cache_policy.h"
#include "optimizations/parallel/context_parallel.h"
#include "optimizations/parallel/parallel_context.h"
#include "optimizations/quant/quant.h"

namespace ditbench {
namespace {

using ditbench::testing::rel_error;

struct Case {
  FluxConfig config;
  FluxTransformer2DModel model{nullptr};
  TransformerInputs in;
  at::Tensor expected;         // single-rank forward: [B, N, C]
  at::Tensor expected_signal;  // single-rank TeaCache signal: [B, N, D]
};

// 15 image tokens (a 3 x 5 grid) and 5 text tokens: neither divides by 2 or 4, so the shards
// carry padding rows; text ids are not all zero, so RoPE on the text rows is exercised too.
Case make_case() {
  Case c;
  c.config = flux_preset("flux-tiny");
  c.config.num_attention_heads = 4;  // Ulysses over 4 ranks divides the heads
  c.model = FluxTransformer2DModel(c.config, at::TensorOptions().dtype(at::kFloat));
  random_init(*c.model, 21);
  at::manual_seed(5);
  c.in.latents = at::randn({2, 15, c.config.in_channels});
  c.in.timestep = at::tensor({0.9f, 0.3f});
  c.in.guidance = at::tensor({3.5f, 3.5f});
  c.in.prompt.embeds = at::randn({2, 5, c.config.joint_attention_dim});
  c.in.prompt.pooled = at::randn({2, c.config.pooled_projection_dim});
  c.in.image_ids = flux_image_ids(3, 5, at::TensorOptions().dtype(at::kFloat));
  c.in.text_ids = at::arange(15, at::kFloat).reshape({5, 3});
  c10::InferenceMode inference;
  c.expected = c.model->forward(c.in);
  BlockState s = c.model->prepare(c.in);
  c.expected_signal = c.model->teacache_signal(s);
  return c;
}

Case& shared_case() {
  static Case c = make_case();
  return c;
}

void expect_matches_single_rank(int ranks, int ulysses, int ring) {
  Case& c = shared_case();
  const auto r =
      testing::run_on_ranks(*c.model, c.in, c.config.num_attention_heads, ranks, ulysses, ring);
  testing::expect_outputs_match(r, c.expected);
  testing::expect_signals_join(r, c.expected_signal);
}

TEST(FluxContextParallel, UlyssesOn2RanksMatchesSingleRank) { expect_matches_single_rank(2, 2, 1); }

TEST(FluxContextParallel, RingOn2RanksMatchesSingleRank) { expect_matches_single_rank(2, 1, 2); }

TEST(FluxContextParallel, UspOn2x2RanksMatchesSingleRank) { expect_matches_single_rank(4, 2, 2); }

TEST(FluxContextParallel, ShardsMarkTheirPaddingRows) {
  Case& c = shared_case();
  const auto rows = testing::shard_rows(
      testing::run_on_ranks(*c.model, c.in, c.config.num_attention_heads, 2, 2, 1));
  EXPECT_EQ(rows.local, (std::vector<int64_t>{8, 8}));
  EXPECT_EQ(rows.valid, (std::vector<int64_t>{8, 7}));
  EXPECT_EQ(rows.text, (std::vector<int64_t>{3, 3}));
}

TEST(FluxCaches, UncachedPoliciesGiveTheForwardPass) {
  Case& c = shared_case();
  c10::InferenceMode inference;
  for (const char* name : {"none", "fbcache", "teacache"}) {
    CacheOptions options;
    options.teacache_coefficients = "flux";
    auto cache = make_cache_policy(name, options);
    for (int step = 0; step < 3; ++step) {
      EXPECT_TRUE(at::equal(cache->forward(*c.model, c.in, step, 3), c.expected))
          << name << " step " << step;
    }
  }
}

TEST(FluxCaches, AReusedStepOnUnchangedInputsGivesTheComputedOutput) {
  // Identical inputs: FBCache's residual difference is 0 and TeaCache's accumulated distance is
  // poly4(0) = c4 = 0.264, so step 1 reuses; the stored residuals of both streams (the single
  // blocks' views of one joint tensor included) must rebuild the computed output.
  Case& c = shared_case();
  c10::InferenceMode inference;
  for (const char* name : {"fbcache", "teacache"}) {
    CacheOptions options;
    options.threshold = 0.5;
    options.teacache_coefficients = "flux";
    auto cache = make_cache_policy(name, options);
    auto first = cache->forward(*c.model, c.in, 0, 3);
    auto second = cache->forward(*c.model, c.in, 1, 3);
    cache->forward(*c.model, c.in, 2, 3);
    ASSERT_EQ(cache->records().size(), 3u);
    EXPECT_FALSE(cache->records()[0].reused) << name;
    EXPECT_TRUE(cache->records()[1].reused) << name;
    // TeaCache always computes the last step; FBCache has no such rule.
    EXPECT_EQ(cache->records()[2].reused, std::string(name) == "fbcache") << name;
    EXPECT_LT(rel_error(second, first), 1e-6) << name;
  }
}

TEST(FluxCaches, TeaCacheSignalIsBlockZerosModulatedImageInput) {
  Case& c = shared_case();
  c10::InferenceMode inference;
  BlockState s = c.model->prepare(c.in);
  auto manual = at::layer_norm(s.hidden, {s.hidden.size(2)}, {}, {}, 1e-6);
  auto mod = c.model->transformer_blocks[0]->norm1->linear(at::silu(s.temb)).chunk(6, 1);
  manual = manual * (1 + mod[1].unsqueeze(1)) + mod[0].unsqueeze(1);
  EXPECT_LT(rel_error(c.model->teacache_signal(s), manual), 1e-6);
}

TEST(FluxQuant, Fp8SelectsAttentionAndMlpLinearsOnly) {
  const auto spec = testing::tiny_cpu_spec("flux", "flux-tiny", 32, 32, 1);
  FluxPipeline pipe(spec);
  auto names = apply_quantization(pipe.transformer_module(), QuantMode::fp8_weight_only,
                                  pipe.quant_include(), pipe.quant_exclude());
  // Per dual block: to_q/k/v, to_out.0, add_q/k/v_proj, to_add_out, ff and ff_context (2 each);
  // per single block: to_q/k/v, proj_mlp, proj_out.
  EXPECT_EQ(names.size(), 2u * 12 + 2u * 5);
  for (const auto& n : names) {
    EXPECT_EQ(n.find("norm"), std::string::npos) << n;
    EXPECT_EQ(n.find("embed"), std::string::npos) << n;
    EXPECT_NE(n, "proj_out");
  }
  EXPECT_NE(std::find(names.begin(), names.end(), "single_transformer_blocks.1.proj_out"),
            names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "transformer_blocks.0.ff_context.net.2"),
            names.end());
}

}  // namespace
}  // namespace ditbench
