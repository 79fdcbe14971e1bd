// CogVideoX transformer against the diffusers fixtures (2b sin-cos positions and 5b rotary
// positions), key names, presets and bad inputs.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include <set>

#include "models/checkpoint/checkpoint.h"
#include "models/checkpoint/safetensors.h"
#include "models/cogvideox/config.h"
#include "models/cogvideox/parity.h"
#include "models/cogvideox/transformer.h"
#include "models/common/error.h"
#include "test_util.h"

namespace ditbench {
namespace {

using ditbench::testing::fixtures_dir;
using ditbench::testing::input_error_of;
using ditbench::testing::rel_error;

std::string fixture(const std::string& name) { return fixtures_dir() + "/diffusers/" + name; }

TEST(CogVideoXTransformer, SinCosFixtureParity) {
  auto r = cogvideox_transformer_parity(fixture("cogvideox"));
  ASSERT_EQ(r.first_block_errors.size(), 2u);
  EXPECT_LT(r.first_block_errors[0], 1e-4);
  EXPECT_LT(r.first_block_errors[1], 1e-4);
  EXPECT_LT(r.rel_error, 1e-4);
}

TEST(CogVideoXTransformer, RotaryFixtureParity) {
  auto r = cogvideox_transformer_parity(fixture("cogvideox_rope"));
  EXPECT_LT(r.first_block_errors[0], 1e-4);
  EXPECT_LT(r.first_block_errors[1], 1e-4);
  EXPECT_LT(r.rel_error, 1e-4);
}

TEST(CogVideoXTransformer, RotaryTablesEqualThePipelines) {
  // The fixture carries the tables CogVideoXPipeline computed for its 3 x 4 x 4 patch grid.
  const auto dir = fixture("cogvideox_rope");
  auto config = CogVideoXConfig::from_file(dir + "/model");
  CogVideoXTransformer3DModel model(config, at::TensorOptions().dtype(at::kFloat));
  auto io = load_safetensors(dir + "/io.safetensors");
  auto [cos, sin] = model->rotary_tables(3, 4, 4, at::kCPU);
  EXPECT_LT(rel_error(cos, io.at("input.image_rotary_emb_cos")), 1e-6);
  EXPECT_LT(rel_error(sin, io.at("input.image_rotary_emb_sin")), 1e-6);
}

TEST(CogVideoXTransformer, RotaryTablesCropToTheSampleAspect) {
  // The released 480x720 grid (30 x 45) covers the sample grid exactly: integer positions.
  CogVideoXTransformer3DModel model(cogvideox_preset("cogvideox-5b"),
                                    at::TensorOptions().device(at::kMeta));
  auto [cos, sin] = model->rotary_tables(2, 30, 45, at::kCPU);
  ASSERT_EQ(cos.sizes(), (std::vector<int64_t>{2 * 30 * 45, 64}));
  // Token (t=1, h=2, w=3): the h pair 0 of the 24 h dims sits at column 16 with angle 2.
  const int64_t token = 1 * 30 * 45 + 2 * 45 + 3;
  EXPECT_NEAR(cos[token][0].item<double>(), std::cos(1.0), 1e-6);
  EXPECT_NEAR(cos[token][16].item<double>(), std::cos(2.0), 1e-6);
  EXPECT_NEAR(sin[token][40].item<double>(), std::sin(3.0), 1e-6);
  // A square 30 x 30 grid is centred in the 30 x 45 sample: w starts at round(7.5) = 8
  // (halves to even), and the last position is 38 * 29 / 30.
  auto [cos_sq, sin_sq] = model->rotary_tables(1, 30, 30, at::kCPU);
  EXPECT_NEAR(sin_sq[0][40].item<double>(), std::sin(8.0), 1e-5);
  EXPECT_NEAR(sin_sq[29][40].item<double>(), std::sin(38.0 * 29 / 30), 1e-5);
}

TEST(CogVideoXTransformer, KeysAreDiffusers) {
  CogVideoXTransformer3DModel model(cogvideox_preset("cogvideox-2b"),
                                    at::TensorOptions().device(at::kMeta));
  std::set<std::string> keys;
  int64_t params = 0;
  for (const auto& p : model->named_parameters()) {
    keys.insert(p.key());
    params += p.value().numel();
  }
  for (const char* k :
       {"patch_embed.proj.weight", "patch_embed.text_proj.weight", "time_embedding.linear_1.weight",
        "time_embedding.linear_2.bias", "transformer_blocks.29.norm1.linear.weight",
        "transformer_blocks.0.norm1.norm.bias", "transformer_blocks.0.attn1.norm_q.weight",
        "transformer_blocks.0.attn1.to_out.0.weight", "transformer_blocks.0.ff.net.0.proj.weight",
        "transformer_blocks.0.ff.net.2.bias", "norm_final.weight", "norm_out.linear.weight",
        "norm_out.norm.bias", "proj_out.weight"}) {
    EXPECT_TRUE(keys.count(k)) << k;
  }
  EXPECT_EQ(model->named_parameters().size(), 4 + 4 + 30 * 24 + 2 + 4 + 2);
  // CogVideoX-2b: 1.69 B parameters.
  EXPECT_NEAR(static_cast<double>(params), 1.69e9, 0.01e9);
  CogVideoXTransformer3DModel big(cogvideox_preset("cogvideox-5b"),
                                  at::TensorOptions().device(at::kMeta));
  int64_t big_params = 0;
  for (const auto& p : big->parameters()) big_params += p.numel();
  EXPECT_NEAR(static_cast<double>(big_params), 5.57e9, 0.02e9);
}

TEST(CogVideoXTransformer, FixtureCheckpointLoadsIntoTheTinyShape) {
  auto config = CogVideoXConfig::from_file(fixture("cogvideox") + "/model");
  auto tiny = cogvideox_preset("cogvideox-tiny");
  EXPECT_EQ(config.inner_dim(), tiny.inner_dim());
  EXPECT_EQ(config.text_embed_dim, tiny.text_embed_dim);
  CogVideoXTransformer3DModel model(tiny, at::TensorOptions().dtype(at::kFloat));
  load_module(*model, Checkpoint::open(fixture("cogvideox") + "/model"));
}

TEST(CogVideoXTransformer, BadInputsNameTheTensor) {
  c10::InferenceMode guard;
  CogVideoXTransformer3DModel model(cogvideox_preset("cogvideox-tiny"),
                                    at::TensorOptions().dtype(at::kFloat));
  random_init(*model, 1);
  TransformerInputs in;
  in.latents = at::randn({1, 4, 2, 8, 8});  // channels-first by mistake
  in.timestep = at::tensor({500});
  in.prompt.embeds = at::randn({1, 7, 24});
  EXPECT_NE(input_error_of([&] { model->prepare(in); }).find("latents"), std::string::npos);
  in.latents = at::randn({1, 2, 4, 8, 8});
  in.prompt.embeds = at::randn({1, 7, 25});
  EXPECT_NE(input_error_of([&] { model->prepare(in); }).find("prompt.embeds"), std::string::npos);
  in.prompt.embeds = at::randn({1, 7, 24});
  in.timestep = at::tensor({1, 2, 3});
  EXPECT_NE(input_error_of([&] { model->prepare(in); }).find("timestep"), std::string::npos);
}

TEST(CogVideoXConfig, PresetsAndUnsupportedVariants) {
  EXPECT_EQ(cogvideox_preset("cogvideox-2b").inner_dim(), 1920);
  EXPECT_EQ(cogvideox_preset("cogvideox-5b").inner_dim(), 3072);
  EXPECT_TRUE(cogvideox_preset("cogvideox-5b").use_rotary_positional_embeddings);
  EXPECT_NE(input_error_of([] { cogvideox_preset("cogvideox-9b"); }).find("cogvideox-tiny"),
            std::string::npos);
  nlohmann::json j = {{"patch_size_t", 2}};
  EXPECT_THROW(CogVideoXConfig::from_json(j, "x.json"), Unsupported);
  j = {{"num_layers", "two"}};
  EXPECT_NE(input_error_of([&] { CogVideoXConfig::from_json(j, "x.json"); }).find("num_layers"),
            std::string::npos);
  j = {{"patch_size_t", nullptr}, {"ofs_embed_dim", nullptr}};
  EXPECT_EQ(CogVideoXConfig::from_json(j, "x.json").patch_size_t, 0);
}

}  // namespace
}  // namespace ditbench
