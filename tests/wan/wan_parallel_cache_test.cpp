// The Wan transformer on the shared interfaces: context parallelism on in-process ranks (Ulysses,
// ring, USP) must give the single-rank output; the caches wrap it as the policies promise
// (threshold 0 bit-exact, FBCache's reuse = block 0 output + stored residual with the text stream
// left alone, TeaCache's signal = TeaCache4Wan2.1's time embedding or, for the ret-steps sets, the
// projected modulation); FP8 selects the block linears only.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include <mutex>
#include <string>

#include "cp_agreement.h"
#include "models/checkpoint/checkpoint.h"
#include "models/wan/config.h"
#include "models/wan/pipeline.h"
#include "models/wan/transformer.h"
#include "optimizations/cache/cache_policy.h"
#include "optimizations/parallel/context_parallel.h"
#include "optimizations/parallel/parallel_context.h"
#include "optimizations/quant/quant.h"
#include "test_util.h"

namespace ditbench {
namespace {

using testing::rel_error;

struct Case {
  WanConfig config;
  WanTransformer3DModel model{nullptr};
  TransformerInputs in;
  at::Tensor expected;  // single-rank forward: [B, C, F, H, W]
};

// Tiny model with 4 heads (Ulysses over 4 ranks divides them); patch grid 3 x 3 x 3 = 27 tokens,
// which divides by neither 2 nor 4, so shards carry padding rows.
Case make_case() {
  Case c;
  c.config = wan_preset("wan-tiny");
  c.config.num_attention_heads = 4;
  c.config.attention_head_dim = 12;  // RoPE (t, h, w) = (4, 4, 4)
  c.model = WanTransformer3DModel(c.config, at::TensorOptions().dtype(at::kFloat));
  random_init(*c.model, 21);
  at::manual_seed(4);
  c.in.latents = at::randn({2, c.config.in_channels, 3, 6, 6});
  c.in.timestep = at::tensor({999, 412});
  c.in.prompt.embeds = at::randn({2, 5, c.config.text_dim});
  c10::InferenceMode inference;
  c.expected = c.model->forward(c.in);
  return c;
}

Case& shared_case() {
  static Case c = make_case();
  return c;
}

void expect_matches_single_rank(int ranks, int ulysses, int ring) {
  Case& c = shared_case();
  testing::expect_outputs_match(
      testing::run_on_ranks(*c.model, c.in, c.config.num_attention_heads, ranks, ulysses, ring),
      c.expected);
}

TEST(WanContextParallel, UlyssesRingAndUspMatchSingleRank) {
  expect_matches_single_rank(2, 2, 1);
  expect_matches_single_rank(2, 1, 2);
  expect_matches_single_rank(4, 4, 1);
  expect_matches_single_rank(4, 2, 2);
}

TEST(WanContextParallel, ShardsCarryPaddingRowsThatTheStateMarks) {
  Case& c = shared_case();
  const auto rows = testing::shard_rows(
      testing::run_on_ranks(*c.model, c.in, c.config.num_attention_heads, 4, 1, 4));
  EXPECT_EQ(rows.local, (std::vector<int64_t>{7, 7, 7, 7}));
  EXPECT_EQ(rows.valid, (std::vector<int64_t>{7, 7, 7, 6}));
  EXPECT_EQ(rows.text, (std::vector<int64_t>{5, 5, 5, 5}));  // the text is whole on every rank
}

CacheOptions options(double threshold, const std::string& coefficients = "wan2.1-t2v-1.3b") {
  CacheOptions o;
  o.threshold = threshold;
  o.teacache_coefficients = coefficients;
  return o;
}

TEST(WanCaches, ThresholdZeroIsTheForwardPassBitForBit) {
  Case& c = shared_case();
  c10::InferenceMode inference;
  for (const std::string name : {"none", "fbcache", "teacache"}) {
    auto policy = make_cache_policy(name, options(0.0));
    EXPECT_TRUE(at::equal(policy->forward(*c.model, c.in, 0, 3), c.expected)) << name;
  }
}

TEST(WanCaches, FirstBlockCacheReusesBlockZeroPlusTheStoredResidual) {
  Case& c = shared_case();
  c10::InferenceMode inference;
  auto policy = make_cache_policy("fbcache", options(1e9));
  auto first = policy->forward(*c.model, c.in, 0, 2);
  EXPECT_TRUE(at::equal(first, c.expected));
  // Step 1 at another timestep reuses: block 0 output + (blocks 1..N of step 0 - their input).
  TransformerInputs next = c.in;
  next.timestep = at::tensor({980, 400});
  auto reused = policy->forward(*c.model, next, 1, 2);
  ASSERT_TRUE(policy->records().at(1).reused);
  BlockState s0 = c.model->prepare(c.in);
  c.model->run_block(0, s0);
  const at::Tensor after_first = s0.hidden;
  for (int64_t i = 1; i < c.model->num_blocks(); ++i) c.model->run_block(i, s0);
  const at::Tensor residual = s0.hidden - after_first;
  BlockState s1 = c.model->prepare(next);
  c.model->run_block(0, s1);
  s1.hidden = s1.hidden + residual;
  EXPECT_LT(rel_error(reused, c.model->finish(s1)), 1e-6);
}

TEST(WanCaches, TeaCacheSignalIsTheTimeEmbeddingOrTheProjectedModulation) {
  Case& c = shared_case();
  c10::InferenceMode inference;
  TransformerInputs next = c.in;
  next.timestep = at::tensor({900, 300});
  auto rel = [](const at::Tensor& prev, const at::Tensor& cur) {
    return ((cur - prev).abs().mean() / prev.abs().mean()).item<double>();
  };
  for (bool ret : {false, true}) {
    c.model->set_teacache_uses_timestep_proj(ret);
    BlockState a = c.model->prepare(c.in), b = c.model->prepare(next);
    const at::Tensor sa = ret ? wan_state(a).timestep_proj : a.temb;
    const at::Tensor sb = ret ? wan_state(b).timestep_proj : b.temb;
    EXPECT_EQ(c.model->teacache_signal(a).sizes(), sa.sizes());
    auto policy = make_cache_policy("teacache",
                                    options(0.0, ret ? "wan2.1-t2v-1.3b-ret" : "wan2.1-t2v-1.3b"));
    policy->forward(*c.model, c.in, 0, 3);
    policy->forward(*c.model, next, 1, 3);
    ASSERT_TRUE(policy->records().at(1).signal.has_value());
    EXPECT_NEAR(*policy->records().at(1).signal, rel(sa, sb), 1e-6 * rel(sa, sb)) << ret;
  }
  c.model->set_teacache_uses_timestep_proj(false);
}

TEST(WanFp8, SelectsTheBlockLinearsOnly) {
  WanTransformer3DModel model(wan_preset("wan-tiny"), at::TensorOptions().dtype(at::kFloat));
  random_init(*model, 2);
  PipelineSpec spec;
  spec.model = "wan";
  spec.preset = "wan-tiny";
  spec.random_weights = true;
  spec.decode = false;
  WanPipeline pipeline(spec);
  auto names = apply_quantization(*model, QuantMode::fp8_weight_only, pipeline.quant_include(),
                                  pipeline.quant_exclude());
  // 2 blocks x (attn1 q, k, v, out + attn2 q, k, v, out + ffn in, out) = 20
  EXPECT_EQ(names.size(), 20u);
  for (const auto& n : names) {
    EXPECT_EQ(n.rfind("blocks.", 0), 0u) << n;
    EXPECT_EQ(n.find("norm"), std::string::npos) << n;
  }
}

}  // namespace
}  // namespace ditbench
