// WanPipeline end to end against diffusers' WanPipeline (tests/data/wan/pipeline_ref.safetensors,
// scripts/refdata/wan/pipeline.py): the shared fixture transformer and VAE as a checkpoint folder,
// given prompt / negative prompt embeddings and noise, 3 UniPC steps with CFG at guidance 5.0, the
// float32 frames. Then the tiny preset with random weights through every cache policy.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "model_test_util.h"
#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"
#include "models/wan/pipeline.h"
#include "optimizations/cache/cache_policy.h"

namespace ditbench {
namespace {

namespace fs = std::filesystem;
using testing::rel_error;

std::string ref_file() {
  return testing::source_dir() + "/tests/data/wan/pipeline_ref.safetensors";
}

// The denoising loop as the harness runs it, one cache policy per CFG branch.
struct Generation {
  at::Tensor latents, frames;
  std::vector<std::unique_ptr<CachePolicy>> caches;
};
Generation run(WanPipeline& pipeline, int steps, const std::string& cache = "none",
               double threshold = 0) {
  c10::InferenceMode inference;
  Generation r;
  CacheOptions o;
  o.threshold = threshold;
  o.teacache_coefficients = pipeline.teacache_coefficients();
  for (int b = 0; b < (pipeline.uses_cfg() ? 2 : 1); ++b) {
    r.caches.push_back(make_cache_policy(cache, o));
  }
  const PromptEmbeds prompt = pipeline.encode_prompt(0);
  at::Tensor latents = pipeline.prepare_latents(0);
  const int n = pipeline.set_timesteps(steps);
  for (int i = 0; i < n; ++i) {
    const auto inputs = pipeline.step_inputs(latents, i, prompt);
    std::vector<at::Tensor> outputs;
    for (size_t b = 0; b < inputs.size(); ++b) {
      outputs.push_back(r.caches[b]->forward(pipeline.transformer(), inputs[b], i, n));
    }
    latents = pipeline.scheduler_step(outputs, i, latents);
  }
  r.latents = latents;
  r.frames = pipeline.postprocess(pipeline.decode(latents));
  return r;
}

TEST(WanPipeline, MatchesDiffusersEndToEnd) {
  testing::TempDir dir("wan_ckpt");
  auto spec = testing::fixture_checkpoint_spec(dir, "wan", "wan", "vae_wan", ref_file());
  spec.height = 32;
  spec.width = 32;
  spec.frames = 9;
  spec.guidance = 5.0;
  spec.noise_file = ref_file();
  WanPipeline pipeline(spec);
  EXPECT_TRUE(pipeline.uses_cfg());
  const auto refs = load_safetensors(ref_file());
  const Generation r = run(pipeline, 3);
  EXPECT_LE(rel_error(r.latents, refs.at("latents")), 1e-4);
  ASSERT_EQ(r.frames.sizes(), refs.at("frames").sizes());  // [9, 32, 32, 3]
  EXPECT_LE(rel_error(r.frames, refs.at("frames")), 1e-4);
}

TEST(WanPipeline, TinyPresetRunsWithEveryCachePolicy) {
  auto spec = testing::tiny_cpu_spec("wan", "wan-tiny", 32, 48, 5);
  spec.decode = true;
  spec.guidance = 5.0;
  spec.synthetic_tokens = 16;
  spec.synthetic_valid = 7;
  WanPipeline pipeline(spec);
  EXPECT_EQ(pipeline.latent_shape(), (std::vector<int64_t>{1, 4, 2, 4, 6}));
  EXPECT_EQ(pipeline.teacache_coefficients(), "wan2.1-t2v-1.3b");
  const Generation base = run(pipeline, 4);
  ASSERT_EQ(base.frames.sizes(), (at::IntArrayRef{5, 32, 48, 3}));
  EXPECT_GE(base.frames.min().item<float>(), 0.0f);
  EXPECT_LE(base.frames.max().item<float>(), 1.0f);
  // Uncached policies at threshold 0 give the baseline bit for bit; a large threshold reuses.
  for (const std::string cache : {"fbcache", "teacache"}) {
    EXPECT_TRUE(at::equal(run(pipeline, 4, cache, 0.0).frames, base.frames)) << cache;
    const Generation cached = run(pipeline, 4, cache, 1e6);
    EXPECT_GT(cached.caches[0]->reused_steps(), 0) << cache;
    EXPECT_GT(cached.caches[1]->reused_steps(), 0) << cache;  // each branch decides on its own
    EXPECT_LT(rel_error(cached.frames, base.frames), 1.0) << cache;
  }
  // The synthetic negative prompt is one token long, the prompt 7 (zero past them).
  c10::InferenceMode inference;
  const auto prompt = pipeline.encode_prompt(0);
  ASSERT_EQ(prompt.embeds.sizes(), (at::IntArrayRef{2, 16, 32}));
  EXPECT_EQ(prompt.embeds[0].abs().sum(1).ne(0).sum().item<int64_t>(), 7);
  EXPECT_EQ(prompt.embeds[1].abs().sum(1).ne(0).sum().item<int64_t>(), 1);
}

TEST(WanPipeline, NoGuidanceMeansOneBranch) {
  auto spec = testing::tiny_cpu_spec("wan", "wan-tiny", 32, 32, 1);
  spec.guidance = 1.0;
  WanPipeline pipeline(spec);
  EXPECT_FALSE(pipeline.uses_cfg());
  c10::InferenceMode inference;
  const auto prompt = pipeline.encode_prompt(0);
  pipeline.set_timesteps(2);
  EXPECT_EQ(pipeline.step_inputs(pipeline.prepare_latents(0), 0, prompt).size(), 1u);
}

TEST(WanPipeline, PromptFileWithoutNegativeEmbedsUnderCfgNamesTheTensor) {
  testing::TempDir dir("wan_prompt");
  auto spec = testing::tiny_cpu_spec("wan", "wan-tiny", 32, 32, 1);
  spec.dtype = at::kBFloat16;
  spec.guidance = 5.0;
  spec.prompt_file = testing::source_dir() + "/tests/data/wan/transformer_refs.safetensors";
  WanPipeline pipeline(spec);
  const auto msg = testing::input_error_of([&] { pipeline.encode_prompt(0); });
  EXPECT_NE(msg.find("prompt_embeds"), std::string::npos);
  EXPECT_NE(msg.find("transformer_refs.safetensors"), std::string::npos);
}

}  // namespace
}  // namespace ditbench

namespace ditbench {
namespace {

TEST(WanPipeline, RetStepsCoefficientSetsSwitchTheTeaCacheSignal) {
  for (const std::string set : {"", "wan2.1-t2v-1.3b", "wan2.1-t2v-1.3b-ret"}) {
    auto spec = testing::tiny_cpu_spec("wan", "wan-tiny", 32, 32, 1);
    spec.dtype = at::kBFloat16;
    spec.teacache_coefficients = set;
    WanPipeline pipeline(spec);
    c10::InferenceMode inference;
    const auto prompt = pipeline.encode_prompt(0);
    pipeline.set_timesteps(2);
    const auto in = pipeline.step_inputs(pipeline.prepare_latents(0), 0, prompt).at(0);
    const auto signal = pipeline.transformer().teacache_signal(pipeline.transformer().prepare(in));
    // [B, D] time embedding, or [B, 6, D] projected modulation for the ret-steps sets
    EXPECT_EQ(signal.dim(), set == "wan2.1-t2v-1.3b-ret" ? 3 : 2) << set;
  }
}

}  // namespace
}  // namespace ditbench
