// Wan 2.1 transformer against diffusers: the shared fp32 fixture (output and first block),
// references generated with diffusers (tests/data/wan/transformer_refs.safetensors: the bf16 load
// with its float32-kept modules, and an fp32 batch of two), key sets, presets and config errors.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include <map>
#include <string>

#include "model_test_util.h"
#include "models/checkpoint/checkpoint.h"
#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"
#include "models/wan/config.h"
#include "models/wan/transformer.h"

namespace ditbench {
namespace {

using testing::inputs_from;
using testing::rel_error;
using testing::TensorMap;

std::string fixture_dir() { return testing::diffusers_fixture("wan"); }

const TensorMap& fixture_io() { return testing::fixture_io("wan"); }
const TensorMap& generated_refs() { return testing::test_data("wan/transformer_refs.safetensors"); }

WanTransformer3DModel load_fixture_model(at::ScalarType dtype) {
  return testing::load_fixture_model<WanTransformer3DModel>(
      fixture_dir(), WanConfig::from_file(fixture_dir() + "/model"), dtype);
}

TEST(WanTransformer, ParameterKeysAndShapesEqualTheFixtureCheckpoint) {
  WanTransformer3DModel model(WanConfig::from_file(fixture_dir() + "/model/config.json"),
                              at::TensorOptions().device(at::kMeta));
  EXPECT_EQ(testing::parameter_shapes(*model),
            testing::checkpoint_shapes(Checkpoint::open(fixture_dir() + "/model")));
  EXPECT_TRUE(model->named_buffers().is_empty());  // RoPE tables are computed, not loaded
}

TEST(WanTransformer, Fp32OutputAndFirstBlockMatchDiffusers) {
  c10::InferenceMode inference;
  auto model = load_fixture_model(at::kFloat);
  const auto& io = fixture_io();
  auto state = model->prepare(inputs_from(io, "input."));
  model->run_block(0, state);
  EXPECT_LE(rel_error(state.hidden, io.at("output.first_block_out0")), 1e-4);
  for (int64_t i = 1; i < model->num_blocks(); ++i) model->run_block(i, state);
  EXPECT_LE(rel_error(model->finish(state), io.at("output.sample")), 1e-4);
}

TEST(WanTransformer, BatchOfTwoWithZeroPaddedTextMatchesDiffusers) {
  c10::InferenceMode inference;
  auto model = load_fixture_model(at::kFloat);
  const auto& refs = generated_refs();
  auto out = model->forward(inputs_from(refs, "b2.input."));
  EXPECT_LE(rel_error(out, refs.at("b2.output.sample")), 1e-4);
}

TEST(WanTransformer, Bf16KeepsDiffusersFloat32ModulesAndMatchesItsOutput) {
  c10::InferenceMode inference;
  auto model = load_fixture_model(at::kBFloat16);
  EXPECT_EQ(model->scale_shift_table.scalar_type(), at::kFloat);
  EXPECT_EQ(model->blocks[0]->scale_shift_table.scalar_type(), at::kFloat);
  EXPECT_EQ(model->blocks[0]->norm2->weight.scalar_type(), at::kFloat);
  EXPECT_EQ(model->condition_embedder->time_embedder->linear_1->weight.scalar_type(), at::kFloat);
  EXPECT_EQ(model->condition_embedder->time_proj->weight.scalar_type(), at::kBFloat16);
  const auto& refs = generated_refs();
  auto out = model->forward(inputs_from(refs, "bf16.input."));
  ASSERT_EQ(out.scalar_type(), at::kBFloat16);
  // Same ops in the same dtypes as diffusers: only kernel summation order differs.
  EXPECT_LE(rel_error(out, refs.at("bf16.output.sample")), 1e-2);
}

TEST(WanTransformer, ReleasedPresetsHaveTheReleasedParameterCounts) {
  auto count = [](const std::string& preset) {
    WanTransformer3DModel model(wan_preset(preset), at::TensorOptions().device(at::kMeta));
    int64_t n = 0;
    for (const auto& p : model->parameters()) n += p.numel();
    return n;
  };
  // diffusers WanTransformer3DModel with the released configs, counted on the meta device.
  EXPECT_EQ(count("wan2.1-t2v-14b"), 14288491584);
  EXPECT_EQ(count("wan2.1-t2v-1.3b"), 1418996800);
  const auto tiny = wan_preset("wan-tiny");
  EXPECT_EQ(tiny.rope_axes_dim(), (std::vector<int64_t>{8, 4, 4}));
  EXPECT_EQ(wan_preset("wan2.1-t2v-14b").rope_axes_dim(), (std::vector<int64_t>{44, 42, 42}));
  EXPECT_NE(testing::input_error_of([] { wan_preset("wan-huge"); }).find("wan2.1-t2v-1.3b"),
            std::string::npos);
}

TEST(WanTransformer, ConfigErrorsNameTheKeyAndImageToVideoIsUnsupported) {
  auto msg = testing::input_error_of([] {
    WanConfig::from_json({{"num_layers", "forty"}}, "cfg.json");
  });
  EXPECT_NE(msg.find("cfg.json"), std::string::npos);
  EXPECT_NE(msg.find("num_layers"), std::string::npos);
  msg = testing::input_error_of([] { WanConfig::from_json({{"patch_size", {1, 2}}}, "cfg.json"); });
  EXPECT_NE(msg.find("patch_size"), std::string::npos);
  EXPECT_THROW(WanConfig::from_json({{"image_dim", 1280}, {"added_kv_proj_dim", 5120}}, "i2v"),
               Unsupported);
  EXPECT_THROW(WanConfig::from_json({{"qk_norm", "rms_norm"}}, "cfg"), Unsupported);
  // null image parts are text-to-video
  EXPECT_NO_THROW(WanConfig::from_json({{"image_dim", nullptr}}, "cfg"));
}

TEST(WanTransformer, BadInputsNameTheTensor) {
  c10::InferenceMode inference;
  WanTransformer3DModel model(wan_preset("wan-tiny"), at::TensorOptions().dtype(at::kFloat));
  random_init(*model, 1);
  TransformerInputs in;
  in.latents = at::randn({1, 4, 2, 4, 4});
  in.timestep = at::tensor({999});
  in.prompt.embeds = at::randn({1, 5, 31});
  EXPECT_NE(testing::input_error_of([&] { model->prepare(in); }).find("prompt.embeds"),
            std::string::npos);
  in.prompt.embeds = at::randn({1, 5, 32});
  in.latents = at::randn({1, 4, 2, 5, 4});
  EXPECT_NE(testing::input_error_of([&] { model->prepare(in); }).find("latents"),
            std::string::npos);
  in.latents = at::randn({1, 4, 2, 4, 4});
  in.timestep = at::tensor({1, 2, 3});
  EXPECT_NE(testing::input_error_of([&] { model->prepare(in); }).find("timestep"),
            std::string::npos);
}

}  // namespace
}  // namespace ditbench
