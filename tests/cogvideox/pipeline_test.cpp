// CogVideoXPipeline against diffusers' CogVideoXPipeline
// (tests/data/cogvideox/pipeline.safetensors, made by scripts/refdata/cogvideox_pipeline.py): whole
// generations with the fixture transformer and VAE under the DDIM and the DPM scheduler; then the
// tiny preset under the caches, FP8, and context and CFG parallelism on in-process ranks.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include <filesystem>
#include <fstream>
#include <mutex>

#include "cp_agreement.h"
#include "model_test_util.h"
#include "models/checkpoint/checkpoint.h"
#include "models/checkpoint/safetensors.h"
#include "models/cogvideox/pipeline.h"
#include "models/common/error.h"
#include "models/pipeline.h"
#include "optimizations/attention/attention.h"
#include "optimizations/cache/cache_policy.h"
#include "optimizations/parallel/context_parallel.h"
#include "optimizations/parallel/parallel_context.h"
#include "optimizations/parallel/sequence_shard.h"
#include "optimizations/quant/quant.h"
#include "pipeline_loop.h"

namespace ditbench {
namespace {

using testing::rel_error;

std::string refs_file() {
  return testing::source_dir() + "/tests/data/cogvideox/pipeline.safetensors";
}

PipelineSpec tiny_spec() {
  auto spec = testing::tiny_cpu_spec("cogvideox", "cogvideox-tiny", 32, 48, 9);
  spec.guidance = 6.0;
  spec.synthetic_tokens = 7;
  spec.synthetic_valid = 5;
  return spec;
}

// A diffusers-style checkpoint folder of the fixture transformer and VAE and a scheduler config.
PipelineSpec make_checkpoint(const testing::TempDir& dir, const std::string& scheduler_class) {
  namespace fs = std::filesystem;
  auto spec =
      testing::fixture_checkpoint_spec(dir, "cogvideox", "cogvideox", "vae_cogvideox", refs_file());
  fs::create_directory(dir.path() / "scheduler");
  std::ofstream(dir.path() / "scheduler" / "scheduler_config.json")
      << R"({"_class_name": ")" << scheduler_class
      << R"(", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
          "clip_sample": false, "num_train_timesteps": 1000, "prediction_type": "v_prediction",
          "rescale_betas_zero_snr": true, "set_alpha_to_one": true, "snr_shift_scale": 3.0,
          "steps_offset": 0, "timestep_spacing": "trailing", "trained_betas": null})";
  return spec;
}

void expect_generation_matches(const std::string& scheduler_class, const std::string& prefix) {
  c10::InferenceMode guard;
  testing::TempDir dir("cogvideox_ckpt");
  auto spec = make_checkpoint(dir, scheduler_class);
  spec.height = 64;
  spec.width = 64;
  spec.frames = 9;
  spec.guidance = 6.0;
  auto pipeline = create_pipeline(spec);
  auto& cog = dynamic_cast<CogVideoXPipeline&>(*pipeline);
  EXPECT_EQ(cog.uses_dpm(), scheduler_class == "CogVideoXDPMScheduler");
  EXPECT_TRUE(cog.uses_cfg());
  auto refs = load_safetensors(refs_file());
  auto latents = testing::run_denoise_loop(cog, 3);
  ASSERT_EQ(latents.sizes(), refs.at(prefix + ".latents").sizes());  // [1, 3, 4, 8, 8]
  EXPECT_LT(rel_error(latents, refs.at(prefix + ".latents")), 1e-4);
  cog.vae()->set_tiling(false);  // the reference decodes untiled
  auto frames = cog.postprocess(cog.decode(latents));
  ASSERT_EQ(frames.sizes(), refs.at(prefix + ".frames").sizes());  // [9, 64, 64, 3]
  EXPECT_LT(rel_error(frames, refs.at(prefix + ".frames")), 1e-4);
}

TEST(CogVideoXPipeline, DdimGenerationWithFixtureWeightsMatchesDiffusers) {
  expect_generation_matches("CogVideoXDDIMScheduler", "ddim");
}

TEST(CogVideoXPipeline, DpmGenerationWithFixtureWeightsMatchesDiffusers) {
  expect_generation_matches("CogVideoXDPMScheduler", "dpm");
}

TEST(CogVideoXPipeline, RegisteredFamilyAndFixtureDispatch) {
  bool found = false;
  for (const auto& f : model_families()) {
    if (f.name != "cogvideox") continue;
    found = true;
    EXPECT_TRUE(f.uses_cfg);
    EXPECT_EQ(f.spatial_multiple, 16);
    EXPECT_EQ(f.temporal_stride, 4);
  }
  EXPECT_TRUE(found);
  const auto dir = testing::fixtures_dir() + "/diffusers/";
  EXPECT_LT(run_fixture_parity(dir + "cogvideox_rope").rel_error, 1e-4);
  EXPECT_EQ(run_fixture_parity(dir + "vae_cogvideox").model_class, "AutoencoderKLCogVideoX");
}

TEST(CogVideoXPipeline, TinyPresetShapesFramesAndTimesteps) {
  c10::InferenceMode guard;
  auto spec = tiny_spec();
  spec.decode = true;
  CogVideoXPipeline pipeline(spec);
  EXPECT_EQ(pipeline.latent_shape(), (std::vector<int64_t>{1, 3, 4, 4, 6}));
  EXPECT_EQ(pipeline.teacache_coefficients(), "cogvideox-2b");
  auto prompt = pipeline.encode_prompt(0);
  EXPECT_EQ(prompt.embeds.sizes(), (std::vector<int64_t>{2, 7, 24}));  // [uncond; cond]
  auto latents = pipeline.prepare_latents(0);
  pipeline.set_timesteps(2);
  auto inputs = pipeline.step_inputs(latents, 1, prompt);
  ASSERT_EQ(inputs.size(), 2u);
  EXPECT_EQ(inputs[0].timestep.scalar_type(), at::kLong);
  EXPECT_EQ(inputs[0].timestep.item<int64_t>(), 499);
  auto frames = pipeline.postprocess(pipeline.decode(testing::run_denoise_loop(pipeline, 2)));
  EXPECT_EQ(frames.sizes(), (std::vector<int64_t>{9, 32, 48, 3}));
  EXPECT_GE(frames.min().item<float>(), 0.0f);
  EXPECT_LE(frames.max().item<float>(), 1.0f);
  // bf16 latents are drawn in bf16 and stay bf16 through the f32 step.
  spec.dtype = at::kBFloat16;
  spec.decode = false;
  CogVideoXPipeline bf16(spec);
  auto bl = bf16.prepare_latents(0);
  EXPECT_EQ(bl.scalar_type(), at::kBFloat16);
  bf16.set_timesteps(2);
  auto p16 = bf16.encode_prompt(0);
  std::vector<at::Tensor> outs;
  for (auto& in : bf16.step_inputs(bl, 0, p16)) outs.push_back(bf16.transformer().forward(in));
  EXPECT_EQ(bf16.scheduler_step(outs, 0, bl).scalar_type(), at::kBFloat16);
}

TEST(CogVideoXPipeline, PromptFileNeedsTheNegativePromptUnderCfg) {
  testing::TempDir dir("cogvideox_prompt");
  const auto file = dir.file("prompt.safetensors");
  save_safetensors(file, {{"prompt_embeds", at::zeros({1, 7, 24})}});
  auto spec = tiny_spec();
  spec.prompt_file = file;
  CogVideoXPipeline pipeline(spec);
  EXPECT_NE(
      testing::input_error_of([&] { pipeline.encode_prompt(0); }).find("negative_prompt_embeds"),
      std::string::npos);
  spec.guidance = 1.0;  // no CFG: one branch
  CogVideoXPipeline single(spec);
  auto prompt = single.encode_prompt(0);
  single.set_timesteps(2);
  EXPECT_EQ(single.step_inputs(single.prepare_latents(0), 0, prompt).size(), 1u);
}

TEST(CogVideoXPipeline, CachesWithThresholdZeroChangeNothingAndTeaCacheReuses) {
  c10::InferenceMode guard;
  CogVideoXPipeline pipeline(tiny_spec());
  const auto baseline = testing::expect_zero_threshold_caches_change_nothing(
      pipeline, 6, [](const std::string& name, const testing::BranchCaches& caches) {
        // Both branches see the same timestep embedding: TeaCache's signals agree.
        if (name == "teacache") {
          EXPECT_EQ(caches[0]->records()[2].signal, caches[1]->records()[2].signal);
        }
      });
  for (const char* name : {"fbcache", "teacache"}) {
    SCOPED_TRACE(name);
    CacheOptions options;
    options.teacache_coefficients = "cogvideox-2b";
    options.threshold = 1e9;
    auto caches = testing::cfg_branch_caches(name, options);
    auto cached = testing::run_denoise_loop(pipeline, 6, &caches);
    EXPECT_EQ(caches[0]->reused_steps(), std::string(name) == "teacache" ? 4 : 5);
    EXPECT_GT(rel_error(cached, baseline), 0);
  }
}

TEST(CogVideoXPipeline, Fp8QuantizesAttentionProjectionsAndMlpsOnly) {
  c10::InferenceMode guard;
  CogVideoXPipeline pipeline(tiny_spec());
  auto names = apply_quantization(pipeline.transformer_module(), QuantMode::fp8_dynamic,
                                  pipeline.quant_include(), pipeline.quant_exclude());
  // Per block: to_q, to_k, to_v, to_out.0, ff.net.0.proj, ff.net.2.
  EXPECT_EQ(names.size(), 2u * 6u);
  for (const auto& name : names) {
    EXPECT_EQ(name.rfind("transformer_blocks.", 0), 0u) << name;
    EXPECT_EQ(name.find("norm"), std::string::npos) << name;
  }
  CogVideoXPipeline reference(tiny_spec());
  EXPECT_LT(
      rel_error(testing::run_denoise_loop(pipeline, 2), testing::run_denoise_loop(reference, 2)),
      0.1);
}

// The tiny transformer (2b sin-cos or 5b rotary positions) on `ranks` in-process ranks against
// one rank; 27 image and 5 text tokens, so the shards carry padding.
void expect_context_parallel_matches_single_rank(bool rotary, int ranks, int ulysses, int ring) {
  c10::InferenceMode guard;
  auto config = cogvideox_preset("cogvideox-tiny");
  config.num_attention_heads = 4;  // Ulysses over 4 ranks needs 4 heads
  config.attention_head_dim = 16;
  config.use_rotary_positional_embeddings = rotary;
  CogVideoXTransformer3DModel model(config, at::TensorOptions().dtype(at::kFloat));
  random_init(*model, 5);
  at::manual_seed(3);
  TransformerInputs in;
  in.latents = at::randn({2, 3, 4, 6, 6});  // [B, F, C, H, W]: 3 x 3 x 3 = 27 image tokens
  in.timestep = at::tensor({999, 412});
  in.prompt.embeds = at::randn({2, 5, config.text_embed_dim});
  const auto expected = model->forward(in);
  const auto r =
      testing::run_on_ranks(*model, in, config.num_attention_heads, ranks, ulysses, ring);
  testing::expect_outputs_match(r, expected);
  // The shards' real rows, in shard order, are the embedded image tokens.
  EXPECT_LT(rel_error(testing::joined_real_rows(r), model->prepare(in).hidden), 1e-6);
}

TEST(CogVideoXContextParallel, UlyssesAndRingOn2RanksMatchOneRank) {
  for (bool rotary : {false, true}) {
    SCOPED_TRACE(rotary ? "rotary" : "sin-cos");
    expect_context_parallel_matches_single_rank(rotary, 2, 2, 1);
    expect_context_parallel_matches_single_rank(rotary, 2, 1, 2);
  }
}

TEST(CogVideoXContextParallel, UspOn2x2RanksMatchesOneRank) {
  expect_context_parallel_matches_single_rank(true, 4, 2, 2);
}

TEST(CogVideoXContextParallel, CfgParallelPairMatchesOneRank) {
  // Each rank of a CFG pair runs one branch and the pair exchanges outputs before the step.
  c10::InferenceMode guard;
  CogVideoXPipeline reference(tiny_spec());
  const auto expected = testing::run_denoise_loop(reference, 3);
  std::vector<at::Tensor> results(2);
  std::mutex mutex;
  launch_ranks(2, [&](int rank, Communicator& world) {
    c10::InferenceMode inference;
    ParallelGroups groups = make_parallel_groups(world, 2, 1, 1);
    ParallelScope parallel_scope(&groups);
    CogVideoXPipeline pipeline(tiny_spec());
    auto prompt = pipeline.encode_prompt(0);
    auto latents = pipeline.prepare_latents(0);
    const int n = pipeline.set_timesteps(3);
    for (int i = 0; i < n; ++i) {
      auto inputs = pipeline.step_inputs(latents, i, prompt);
      auto mine = pipeline.transformer().forward(inputs[static_cast<size_t>(groups.cfg->rank())]);
      auto both = cfg_gather(mine, *groups.cfg).chunk(2, 0);
      latents = pipeline.scheduler_step({both[0], both[1]}, i, latents);
    }
    std::lock_guard<std::mutex> lock(mutex);
    results[rank] = latents;
  });
  for (int r = 0; r < 2; ++r) EXPECT_LT(rel_error(results[r], expected), 1e-5) << "rank " << r;
}

}  // namespace
}  // namespace ditbench
