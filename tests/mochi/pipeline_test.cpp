// MochiPipeline against diffusers' MochiPipeline (tests/data/mochi/*.safetensors, made by
// scripts/refdata/mochi/{scheduler,pipeline}.py): the inverted linear-quadratic schedule and the
// bf16 timesteps the transformer receives, the CFG mix and f32 step of the loop, and a whole
// generation with the fixture transformer and VAE; then the tiny preset under the caches and
// under context parallelism on in-process ranks.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include <filesystem>
#include <map>
#include <mutex>
#include <string>

#include "cp_agreement.h"
#include "model_test_util.h"
#include "models/checkpoint/checkpoint.h"
#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"
#include "models/mochi/pipeline.h"
#include "optimizations/attention/attention.h"
#include "optimizations/cache/cache_policy.h"
#include "optimizations/parallel/context_parallel.h"
#include "optimizations/parallel/parallel_context.h"
#include "optimizations/quant/quant.h"
#include "pipeline_loop.h"

namespace ditbench {
namespace {

using testing::rel_error;

const testing::TensorMap& scheduler_refs() {
  return testing::test_data("mochi/scheduler_refs.safetensors");
}

std::string pipeline_refs_file() {
  return testing::source_dir() + "/tests/data/mochi/pipeline_refs.safetensors";
}

PipelineSpec tiny_spec() {
  auto spec = testing::tiny_cpu_spec("mochi", "mochi-tiny", 32, 48, 7);
  spec.guidance = 4.5;
  spec.synthetic_tokens = 8;
  spec.synthetic_valid = 5;
  return spec;
}

TEST(MochiPipeline, ScheduleAndModelTimestepsMatchDiffusers) {
  c10::InferenceMode guard;
  auto spec = tiny_spec();
  spec.dtype = at::kBFloat16;
  MochiPipeline pipeline(spec);
  const auto& refs = scheduler_refs();
  auto prompt = pipeline.encode_prompt(0);
  auto latents = pipeline.prepare_latents(0);
  EXPECT_EQ(latents.scalar_type(), at::kBFloat16);
  for (int n : {2, 3, 8, 64}) {
    SCOPED_TRACE(n);
    const std::string prefix = "steps" + std::to_string(n);
    ASSERT_EQ(pipeline.set_timesteps(n), n);
    const auto& sigmas = pipeline.scheduler().sigmas();
    ASSERT_EQ(sigmas.sizes(), refs.at(prefix + ".sigmas").sizes());
    EXPECT_LT((sigmas - refs.at(prefix + ".sigmas")).abs().max().item<double>(), 1e-7);
    EXPECT_LT((pipeline.scheduler().timesteps() - refs.at(prefix + ".timesteps"))
                  .abs()
                  .max()
                  .item<double>(),
              1e-4);
    for (int i = 0; i < n; ++i) {
      auto inputs = pipeline.step_inputs(latents, i, prompt);
      ASSERT_EQ(inputs.size(), 2u);  // CFG: uncond, cond
      EXPECT_EQ(inputs[0].timestep.scalar_type(), at::kBFloat16);
      EXPECT_TRUE(
          at::equal(inputs[1].timestep, refs.at(prefix + ".model_timesteps")[i][0].view({1})))
          << "step " << i;
    }
  }
  EXPECT_THROW(pipeline.set_timesteps(1), InputError);
}

// The stand-in model of scheduler.py: branch outputs x (1 - t/1000) -/+ 0.25 in bf16.
TEST(MochiPipeline, CfgLoopInBf16MatchesDiffusers) {
  c10::InferenceMode guard;
  auto spec = tiny_spec();
  spec.dtype = at::kBFloat16;
  MochiPipeline pipeline(spec);
  const auto& refs = scheduler_refs();
  auto prompt = pipeline.encode_prompt(0);
  at::Tensor latents = refs.at("loop.latents0");
  const int n = pipeline.set_timesteps(8);
  for (int i = 0; i < n; ++i) {
    auto inputs = pipeline.step_inputs(latents, i, prompt);
    std::vector<at::Tensor> outputs;
    for (double offset : {-0.25, 0.25}) {
      auto scale = inputs[0].timestep / 1000;  // bf16
      auto bias = at::full({}, offset, at::kFloat).to(at::kBFloat16);
      outputs.push_back(latents * (1 - scale.view({-1, 1, 1, 1, 1})) + bias);
    }
    latents = pipeline.scheduler_step(outputs, i, latents);
    EXPECT_EQ(latents.scalar_type(), at::kBFloat16);
    EXPECT_LT(rel_error(latents, refs.at("loop.latents")[i]), 1e-6) << "step " << i;
  }
}

TEST(MochiPipeline, GenerationWithFixtureWeightsMatchesDiffusers) {
  c10::InferenceMode guard;
  testing::TempDir dir("mochi_ckpt");
  auto spec =
      testing::fixture_checkpoint_spec(dir, "mochi", "mochi", "vae_mochi", pipeline_refs_file());
  spec.height = 64;
  spec.width = 48;
  spec.frames = 13;
  spec.guidance = 4.5;
  MochiPipeline pipeline(spec);
  EXPECT_TRUE(pipeline.uses_cfg());
  auto refs = load_safetensors(pipeline_refs_file());
  auto latents = testing::run_denoise_loop(pipeline, 3);
  ASSERT_EQ(latents.sizes(), refs.at("latents").sizes());
  EXPECT_LT(rel_error(latents, refs.at("latents")), 1e-4);
  auto frames = pipeline.postprocess(pipeline.decode(latents));
  ASSERT_EQ(frames.sizes(), refs.at("frames").sizes());  // [13, 64, 48, 3]
  EXPECT_LT(rel_error(frames, refs.at("frames")), 1e-4);
}

TEST(MochiPipeline, PromptFileNeedsTheNegativePromptUnderCfg) {
  testing::TempDir dir("mochi_prompt");
  const auto file = dir.file("prompt.safetensors");
  save_safetensors(file, {{"prompt_embeds", at::zeros({1, 8, 32})},
                          {"prompt_attention_mask", at::ones({1, 8})}});
  auto spec = tiny_spec();
  spec.prompt_file = file;
  MochiPipeline pipeline(spec);
  EXPECT_NE(
      testing::input_error_of([&] { pipeline.encode_prompt(0); }).find("negative_prompt_embeds"),
      std::string::npos);
  spec.guidance = 1.0;  // no CFG: one branch, no negative prompt needed
  MochiPipeline single(spec);
  EXPECT_FALSE(single.uses_cfg());
  auto prompt = single.encode_prompt(0);
  single.set_timesteps(2);
  EXPECT_EQ(single.step_inputs(single.prepare_latents(0), 0, prompt).size(), 1u);
}

TEST(MochiPipeline, TinyPresetShapesAndFrames) {
  c10::InferenceMode guard;
  auto spec = tiny_spec();
  spec.decode = true;
  MochiPipeline pipeline(spec);
  EXPECT_EQ(pipeline.latent_shape(), (std::vector<int64_t>{1, 12, 2, 4, 6}));
  auto latents = testing::run_denoise_loop(pipeline, 2);
  auto frames = pipeline.postprocess(pipeline.decode(latents));
  EXPECT_EQ(frames.sizes(), (std::vector<int64_t>{7, 32, 48, 3}));
  EXPECT_GE(frames.min().item<float>(), 0.0f);
  EXPECT_LE(frames.max().item<float>(), 1.0f);
}

TEST(MochiPipeline, CachesWithThresholdZeroChangeNothingAndTeaCacheReuses) {
  c10::InferenceMode guard;
  MochiPipeline pipeline(tiny_spec());
  const auto baseline = testing::expect_zero_threshold_caches_change_nothing(pipeline, 8);
  // A large TeaCache threshold reuses every step but the first and the last.
  CacheOptions options;
  options.teacache_coefficients = "mochi";
  options.threshold = 1e9;
  auto caches = testing::cfg_branch_caches("teacache", options);
  auto cached = testing::run_denoise_loop(pipeline, 8, &caches);
  EXPECT_EQ(caches[0]->reused_steps(), 6);
  EXPECT_GT(rel_error(cached, baseline), 0);
}

TEST(MochiPipeline, Fp8QuantizesAttentionProjectionsAndMlpsOnly) {
  c10::InferenceMode guard;
  MochiPipeline pipeline(tiny_spec());
  auto names = apply_quantization(pipeline.transformer_module(), QuantMode::fp8_dynamic,
                                  pipeline.quant_include(), pipeline.quant_exclude());
  // Block 0: to_q/k/v, add_q/k/v_proj, to_out.0, to_add_out, ff (2), ff_context (2) = 12; the
  // last block has neither to_add_out nor ff_context = 9.
  EXPECT_EQ(names.size(), 12u + 9u);
  for (const auto& name : names) {
    EXPECT_EQ(name.rfind("transformer_blocks.", 0), 0u) << name;
    EXPECT_EQ(name.find("norm"), std::string::npos) << name;
  }
  // The quantized model still runs (CPU emulation) and stays close to the unquantized one.
  MochiPipeline reference(tiny_spec());
  auto quantized = testing::run_denoise_loop(pipeline, 2);
  EXPECT_LT(rel_error(quantized, testing::run_denoise_loop(reference, 2)), 0.1);
}

// Runs the tiny transformer on `ranks` in-process ranks (Ulysses degree `ulysses`, ring degree
// `ring`) and compares every rank's output and the gathered TeaCache signal with one rank.
void expect_context_parallel_matches_single_rank(int ranks, int ulysses, int ring) {
  c10::InferenceMode guard;
  auto config = mochi_preset("mochi-tiny");
  config.num_attention_heads = 4;  // Ulysses over 4 ranks needs 4 heads
  config.attention_head_dim = 8;
  MochiTransformer3DModel model(config, at::TensorOptions().dtype(at::kFloat));
  random_init(*model, 5);
  at::manual_seed(3);
  TransformerInputs in;
  in.latents = at::randn({2, 12, 3, 6, 6});  // 27 image tokens: padding on 2 and 4 ranks
  in.timestep = at::tensor({0.0f, 612.0f});
  in.prompt.embeds = at::randn({2, 5, config.text_embed_dim});
  in.prompt.attention_mask = at::tensor({1, 1, 1, 0, 0, 1, 1, 1, 1, 1}).reshape({2, 5});
  const auto expected = model->forward(in);
  BlockState single = model->prepare(in);
  const auto expected_signal = model->teacache_signal(single);
  const auto r =
      testing::run_on_ranks(*model, in, config.num_attention_heads, ranks, ulysses, ring);
  testing::expect_outputs_match(r, expected);
  testing::expect_signals_join(r, expected_signal);
}

TEST(MochiContextParallel, UlyssesOn2RanksMatchesOneRank) {
  expect_context_parallel_matches_single_rank(2, 2, 1);
}

TEST(MochiContextParallel, RingOn2RanksMatchesOneRank) {
  expect_context_parallel_matches_single_rank(2, 1, 2);
}

TEST(MochiContextParallel, UspOn2x2RanksMatchesOneRank) {
  expect_context_parallel_matches_single_rank(4, 2, 2);
}

}  // namespace
}  // namespace ditbench
