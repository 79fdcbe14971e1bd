// FLUX.1 transformer against the diffusers fixture (fp32, CPU): first block and full output, the
// checkpoint's key set, the released size's parameter count, bad inputs.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include <algorithm>

#include "models/checkpoint/checkpoint.h"
#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"
#include "models/flux/config.h"
#include "models/flux/parity.h"
#include "models/flux/transformer.h"
#include "models/pipeline.h"
#include "test_util.h"

namespace ditbench {
namespace {

using ditbench::testing::fixtures_dir;
using ditbench::testing::input_error_of;
using ditbench::testing::rel_error;

std::string fixture() { return fixtures_dir() + "/diffusers/flux"; }

TEST(FluxTransformer, MatchesDiffusersFixture) {
  const auto result = flux_transformer_parity(fixture());
  EXPECT_EQ(result.model_class, "FluxTransformer2DModel");
  ASSERT_EQ(result.first_block_errors.size(), 2u);
  EXPECT_LT(result.first_block_errors[0], 1e-5) << "first block, text stream";
  EXPECT_LT(result.first_block_errors[1], 1e-5) << "first block, image stream";
  EXPECT_LT(result.rel_error, 1e-4);
}

TEST(FluxTransformer, ParityDispatchesOnTheClassName) {
  const auto result = run_fixture_parity(fixture());
  EXPECT_EQ(result.model_class, "FluxTransformer2DModel");
  EXPECT_LT(result.rel_error, 1e-4);
}

TEST(FluxTransformer, ParametersAreTheCheckpointKeys) {
  const auto config = FluxConfig::from_file(fixture() + "/model");
  FluxTransformer2DModel model(config, at::TensorOptions().dtype(at::kFloat));
  auto ckpt = Checkpoint::open(fixture() + "/model");
  std::vector<std::string> names;
  for (const auto& p : model->named_parameters()) names.push_back(p.key());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, ckpt.keys());
}

TEST(FluxTransformer, ReleasedSizeHasTheDevParameterCount) {
  // FLUX.1-dev: 11,901,408,320 parameters (guidance embedder included); schnell lacks the
  // guidance embedder's 256*3072 + 3072 + 3072*3072 + 3072.
  FluxTransformer2DModel dev(flux_preset("flux-dev"), at::TensorOptions().device(at::kMeta));
  int64_t n = 0;
  for (const auto& p : dev->parameters()) n += p.numel();
  EXPECT_EQ(n, 11901408320);
  FluxTransformer2DModel schnell(flux_preset("flux-schnell"),
                                 at::TensorOptions().device(at::kMeta));
  int64_t m = 0;
  for (const auto& p : schnell->parameters()) m += p.numel();
  EXPECT_EQ(n - m, 256 * 3072 + 3072 + 3072 * 3072 + 3072);
}

TEST(FluxTransformer, TextIdsDefaultToZeros) {
  c10::InferenceMode guard;
  auto io = load_safetensors(fixture() + "/io.safetensors");
  FluxTransformer2DModel model(FluxConfig::from_file(fixture() + "/model"),
                               at::TensorOptions().dtype(at::kFloat));
  load_module(*model, Checkpoint::open(fixture() + "/model"));
  TransformerInputs in;
  in.latents = io.at("input.hidden_states");
  in.timestep = io.at("input.timestep");
  in.guidance = io.at("input.guidance");
  in.prompt.embeds = io.at("input.encoder_hidden_states");
  in.prompt.pooled = io.at("input.pooled_projections");
  in.image_ids = io.at("input.img_ids").unsqueeze(0);  // the deprecated batched form
  EXPECT_LT(rel_error(model->forward(in), io.at("output.sample")), 1e-4);
}

TEST(FluxTransformer, BadInputsNameTheTensor) {
  c10::InferenceMode guard;
  FluxTransformer2DModel model(flux_preset("flux-tiny"), at::TensorOptions().dtype(at::kFloat));
  random_init(*model, 1);
  TransformerInputs good;
  good.latents = at::randn({1, 4, 16});
  good.timestep = at::tensor({0.5f});
  good.guidance = at::tensor({3.5f});
  good.prompt.embeds = at::randn({1, 3, 24});
  good.prompt.pooled = at::randn({1, 12});
  good.image_ids = at::zeros({4, 3});
  EXPECT_EQ(model->forward(good).sizes(), good.latents.sizes());
  auto expect_error = [&](TransformerInputs bad, const std::string& name) {
    const auto message = input_error_of([&] { model->forward(bad); });
    EXPECT_NE(message.find(name), std::string::npos) << message;
  };
  auto bad = good;
  bad.latents = at::randn({1, 16, 2, 2});
  expect_error(bad, "latents");
  bad = good;
  bad.prompt.embeds = at::randn({1, 3, 8});
  expect_error(bad, "prompt.embeds");
  bad = good;
  bad.prompt.pooled = at::Tensor();
  expect_error(bad, "prompt.pooled");
  bad = good;
  bad.image_ids = at::Tensor();
  expect_error(bad, "image_ids");
  bad = good;
  bad.text_ids = at::zeros({2, 3});
  expect_error(bad, "text_ids");
  bad = good;
  bad.guidance = at::Tensor();
  expect_error(bad, "guidance");
  bad = good;
  bad.timestep = at::ones({3});
  expect_error(bad, "timestep");
}

TEST(FluxConfig, ReadsTheFixtureAndRejectsBadValues) {
  const auto c = FluxConfig::from_file(fixture() + "/model");
  EXPECT_EQ(c.in_channels, 16);
  EXPECT_EQ(c.out_channels, 16);
  EXPECT_TRUE(c.guidance_embeds);
  EXPECT_EQ(c.axes_dims_rope, (std::vector<int64_t>{4, 6, 6}));
  auto message = input_error_of([] {
    FluxConfig::from_json(nlohmann::json{{"num_layers", "two"}}, "cfg.json");
  });
  EXPECT_NE(message.find("num_layers"), std::string::npos) << message;
  message = input_error_of([] {
    FluxConfig::from_json(nlohmann::json{{"axes_dims_rope", {16, 56}}}, "cfg.json");
  });
  EXPECT_NE(message.find("axes_dims_rope"), std::string::npos) << message;
  EXPECT_THROW(FluxConfig::from_json(nlohmann::json{{"patch_size", 2}}, "cfg.json"), Unsupported);
  message = input_error_of([] { flux_preset("flux-pro"); });
  EXPECT_NE(message.find("flux-dev"), std::string::npos) << message;
}

}  // namespace
}  // namespace ditbench
