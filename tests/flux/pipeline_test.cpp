// FluxPipeline against diffusers (tests/data/flux, scripts/refdata/flux_pipeline.py): the
// FLUX.1-dev schedule at 1024x1024 (mu from the token count, sigmas, the bf16 model timestep),
// packing, and a whole 4-step fp32 generation of the fixture models (latents and image).
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include <filesystem>
#include <fstream>

#include "model_test_util.h"
#include "models/checkpoint/safetensors.h"
#include "models/flux/pipeline.h"
#include "models/pipeline.h"
#include "optimizations/cache/cache_policy.h"

namespace ditbench {
namespace {

namespace fs = std::filesystem;
using ditbench::testing::fixtures_dir;
using ditbench::testing::input_error_of;
using ditbench::testing::rel_error;
using ditbench::testing::source_dir;
using ditbench::testing::TempDir;

struct Generated {
  at::Tensor latents, frames;
};

// The harness's denoising loop (harness/generate.cpp) without its timers: one branch, one cache.
Generated generate(DiffusionPipeline& pipe, CachePolicy& cache, int64_t seed, int steps) {
  c10::InferenceMode guard;
  const auto prompt = pipe.encode_prompt(seed);
  auto latents = pipe.prepare_latents(seed);
  const int n = pipe.set_timesteps(steps);
  for (int i = 0; i < n; ++i) {
    auto inputs = pipe.step_inputs(latents, i, prompt);
    latents =
        pipe.scheduler_step({cache.forward(pipe.transformer(), inputs.at(0), i, n)}, i, latents);
  }
  return {latents, pipe.postprocess(pipe.decode(latents))};
}

std::map<std::string, at::Tensor> refs() {
  return load_safetensors(source_dir() + "/tests/data/flux/flux_refs.safetensors");
}

PipelineSpec tiny_spec() {
  auto spec = testing::tiny_cpu_spec("flux", "flux-tiny", 32, 48, 1);
  spec.decode = true;
  spec.steps = 3;
  spec.guidance = 3.5;
  spec.synthetic_tokens = 8;
  return spec;
}

TEST(FluxPipeline, DevScheduleAt1024MatchesDiffusers) {
  auto r = refs();
  auto spec = tiny_spec();
  spec.decode = false;
  spec.height = spec.width = 1024;
  FluxPipeline pipe(spec);
  EXPECT_NEAR(pipe.mu(), r.at("dev1024.mu").item<double>(), 1e-12);
  EXPECT_NEAR(pipe.mu(), 1.15, 1e-12);  // 4096 tokens: the maximum shift
  ASSERT_EQ(pipe.set_timesteps(28), 28);
  EXPECT_LT(rel_error(pipe.scheduler().timesteps(), r.at("dev1024.timesteps")), 1e-6);
  EXPECT_LT(rel_error(pipe.scheduler().sigmas(), r.at("dev1024.sigmas")), 1e-6);
  // bf16 latents: the model gets bf16(t) / 1000 rounded in bf16.
  auto latents = at::zeros({1, 4096, 16}, at::kBFloat16);
  PromptEmbeds prompt;
  prompt.embeds = at::zeros({1, 8, 24});
  for (int i = 0; i < 28; ++i) {
    auto in = pipe.step_inputs(latents, i, prompt);
    ASSERT_EQ(in.size(), 1u);
    EXPECT_EQ(in[0].timestep.scalar_type(), at::kBFloat16);
    EXPECT_EQ(in[0].timestep.item<float>(), r.at("dev1024.model_timestep")[i].item<float>())
        << "step " << i;
    EXPECT_EQ(in[0].guidance.item<float>(), 3.5f);
    EXPECT_EQ(in[0].guidance.scalar_type(), at::kFloat);
  }
}

TEST(FluxPipeline, PacksAndIdsAsThePipeline) {
  auto x = at::arange(2 * 4 * 6, at::kFloat).reshape({1, 2, 4, 6});
  auto packed = pack_flux_latents(x);  // [1, 6, 8]
  ASSERT_EQ(packed.sizes(), (std::vector<int64_t>{1, 6, 8}));
  // Token (row 0, col 1), features (c, ph, pw): channel 0 rows 0-1 cols 2-3, then channel 1.
  EXPECT_TRUE(at::equal(packed[0][1], at::tensor({2.f, 3.f, 8.f, 9.f, 26.f, 27.f, 32.f, 33.f})));
  EXPECT_TRUE(at::equal(unpack_flux_latents(packed, 4, 6), x));
  auto ids = flux_image_ids(2, 3, at::TensorOptions().dtype(at::kBFloat16));
  EXPECT_TRUE(
      at::equal(ids.to(at::kFloat), at::tensor({0.f, 0.f, 0.f, 0.f, 0.f, 1.f, 0.f, 0.f, 2.f, 0.f,
                                                1.f, 0.f, 0.f, 1.f, 1.f, 0.f, 1.f, 2.f})
                                        .reshape({6, 3})));
}

// A diffusers-style checkpoint folder of the fixture models, the VAE with FLUX's latent scaling.
std::string fixture_checkpoint(const TempDir& dir) {
  const fs::path root = dir.path() / "ckpt";
  const fs::path flux = fs::path(fixtures_dir()) / "diffusers" / "flux" / "model";
  const fs::path vae = fs::path(fixtures_dir()) / "diffusers" / "vae_flux" / "model";
  fs::create_directories(root / "transformer");
  fs::create_directories(root / "vae");
  for (const char* f : {"config.json", "diffusion_pytorch_model.safetensors"}) {
    fs::create_symlink(flux / f, root / "transformer" / f);
  }
  fs::create_symlink(vae / "diffusion_pytorch_model.safetensors",
                     root / "vae" / "diffusion_pytorch_model.safetensors");
  auto config = nlohmann::json::parse(std::ifstream(vae / "config.json"));
  config["scaling_factor"] = 0.3611;
  config["shift_factor"] = 0.1159;
  std::ofstream(root / "vae" / "config.json") << config.dump();
  return root.string();
}

TEST(FluxPipeline, FourStepGenerationMatchesDiffusers) {
  auto r = refs();
  TempDir dir("flux_pipeline");
  save_safetensors(dir.file("prompt.safetensors"),
                   {{"prompt_embeds", r.at("pipe.prompt_embeds")},
                    {"pooled_prompt_embeds", r.at("pipe.pooled_prompt_embeds")}});
  PipelineSpec spec;
  spec.model = "flux";
  spec.checkpoint = fixture_checkpoint(dir);
  spec.dtype = at::kFloat;
  spec.height = 48;
  spec.width = 32;
  spec.frames = 1;
  spec.steps = 4;
  spec.guidance = 3.5;
  spec.prompt_file = dir.file("prompt.safetensors");
  auto pipe = create_pipeline(spec);
  auto g = generate(*pipe, *make_cache_policy("none", {}), 0, 4);
  auto& flux = dynamic_cast<FluxPipeline&>(*pipe);
  EXPECT_LT(rel_error(flux.scheduler().timesteps(), r.at("pipe.timesteps")), 1e-6);
  EXPECT_LT(rel_error(g.latents, r.at("pipe.latents")), 1e-4);
  ASSERT_EQ(g.frames.sizes(), r.at("pipe.image").sizes());  // [1, 48, 32, 3]
  EXPECT_LT(rel_error(g.frames, r.at("pipe.image")), 1e-4);
}

TEST(FluxPipeline, TinyPresetRunsWithCachesAndRejectsBadSizes) {
  auto pipe = create_pipeline(tiny_spec());
  EXPECT_FALSE(pipe->uses_cfg());
  EXPECT_EQ(pipe->teacache_coefficients(), "flux");
  CacheOptions options;
  options.threshold = 0.5;
  options.teacache_coefficients = pipe->teacache_coefficients();
  auto cache = make_cache_policy("teacache", options);
  auto g = generate(*pipe, *cache, 0, 3);
  ASSERT_EQ(g.frames.sizes(), (std::vector<int64_t>{1, 32, 48, 3}));
  EXPECT_GE(g.frames.min().item<float>(), 0.f);
  EXPECT_LE(g.frames.max().item<float>(), 1.f);
  EXPECT_EQ(cache->records().size(), 3u);

  auto bad = tiny_spec();
  bad.height = 40;
  EXPECT_NE(input_error_of([&] { create_pipeline(bad); }).find("multiples of 16"),
            std::string::npos);
  bad = tiny_spec();
  bad.frames = 5;
  EXPECT_THROW(create_pipeline(bad), Unsupported);
}

}  // namespace
}  // namespace ditbench
