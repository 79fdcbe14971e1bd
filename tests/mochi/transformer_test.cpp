// Mochi transformer against diffusers: the fixture checkpoint (fp32 output and both streams of the
// first block), references generated with diffusers (tests/data/mochi/transformer_refs.safetensors,
// scripts/refdata/mochi/transformer.py) for bf16 and for a batch of two with different text masks,
// the released key set by hand (models.md §5.3), and bad inputs.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include <map>
#include <string>

#include "model_test_util.h"
#include "models/checkpoint/checkpoint.h"
#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"
#include "models/mochi/config.h"
#include "models/mochi/transformer.h"
#include "models/pipeline.h"

namespace ditbench {
namespace {

using testing::inputs_from;
using testing::rel_error;
using testing::TensorMap;

std::string fixture_dir() { return testing::diffusers_fixture("mochi"); }

const TensorMap& fixture_io() { return testing::fixture_io("mochi"); }
const TensorMap& generated_refs() {
  return testing::test_data("mochi/transformer_refs.safetensors");
}

MochiTransformer3DModel load_fixture_model(at::ScalarType dtype) {
  return testing::load_fixture_model<MochiTransformer3DModel>(
      fixture_dir(), MochiConfig::from_file(fixture_dir() + "/model"), dtype);
}

TEST(MochiTransformer, FixtureOutputAndFirstBlockMatchDiffusers) {
  c10::InferenceMode guard;
  auto model = load_fixture_model(at::kFloat);
  const auto& io = fixture_io();
  BlockState s = model->prepare(inputs_from(io, "input."));
  model->run_block(0, s);
  EXPECT_LT(rel_error(s.hidden, io.at("output.first_block_out0")), 1e-4);
  // Padded text rows included: diffusers gives them the to_add_out bias as attention output.
  EXPECT_LT(rel_error(s.context, io.at("output.first_block_out1")), 1e-4);
  for (int64_t i = 1; i < model->num_blocks(); ++i) model->run_block(i, s);
  auto out = model->finish(s);
  ASSERT_EQ(out.sizes(), io.at("output.sample").sizes());
  EXPECT_LT(rel_error(out, io.at("output.sample")), 1e-4);
}

TEST(MochiTransformer, FixtureParityThroughTheRegistry) {
  auto result = run_fixture_parity(fixture_dir());
  EXPECT_EQ(result.model_class, "MochiTransformer3DModel");
  EXPECT_LT(result.rel_error, 1e-4);
  ASSERT_EQ(result.first_block_errors.size(), 2u);
  for (double e : result.first_block_errors) EXPECT_LT(e, 1e-4);
}

TEST(MochiTransformer, BatchOfTwoDropsEachSamplesPaddedText) {
  c10::InferenceMode guard;
  auto model = load_fixture_model(at::kFloat);
  const auto& refs = generated_refs();
  auto out = model->forward(inputs_from(refs, "b2.input."));
  EXPECT_LT(rel_error(out, refs.at("b2.output.sample")), 1e-4);
  // Each sample alone gives its row of the batch: masks do not leak across samples.
  auto in = inputs_from(refs, "b2.input.");
  TransformerInputs second;
  second.latents = in.latents.narrow(0, 1, 1);
  second.timestep = in.timestep.narrow(0, 1, 1);
  second.prompt.embeds = in.prompt.embeds.narrow(0, 1, 1);
  second.prompt.attention_mask = in.prompt.attention_mask.narrow(0, 1, 1);
  EXPECT_LT(rel_error(model->forward(second), refs.at("b2.output.sample").narrow(0, 1, 1)), 1e-5);
}

TEST(MochiTransformer, Bf16MatchesDiffusersBf16) {
  c10::InferenceMode guard;
  auto model = load_fixture_model(at::kBFloat16);
  const auto& refs = generated_refs();
  auto out = model->forward(inputs_from(refs, "bf16.input."));
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  // Same ops in the same dtypes: what remains is the order of a few bf16 reductions.
  EXPECT_LT(rel_error(out, refs.at("bf16.output.sample")), 1e-2);
}

TEST(MochiTransformer, ReleasedKeySetAndShapes) {
  MochiTransformer3DModel model(mochi_preset("mochi-1-preview"),
                                at::TensorOptions().device(at::kMeta));
  std::map<std::string, std::vector<int64_t>> shapes;
  int64_t total = 0;
  for (const auto& p : model->named_parameters()) {
    shapes[p.key()] = p.value().sizes().vec();
    total += p.value().numel();
  }
  const std::map<std::string, std::vector<int64_t>> expected = {
      {"patch_embed.proj.weight", {3072, 12, 2, 2}},
      {"time_embed.timestep_embedder.linear_1.weight", {3072, 256}},
      {"time_embed.pooler.to_kv.weight", {8192, 4096}},
      {"time_embed.pooler.to_q.weight", {4096, 4096}},
      {"time_embed.pooler.to_out.weight", {3072, 4096}},
      {"time_embed.caption_proj.weight", {1536, 4096}},
      {"pos_frequencies", {3, 24, 64}},
      {"transformer_blocks.0.norm1.linear.weight", {12288, 3072}},
      {"transformer_blocks.0.norm1_context.linear.weight", {6144, 3072}},
      {"transformer_blocks.47.norm1_context.linear_1.weight", {1536, 3072}},
      {"transformer_blocks.0.attn1.norm_added_k.weight", {128}},
      {"transformer_blocks.0.attn1.add_q_proj.weight", {3072, 1536}},
      {"transformer_blocks.47.attn1.add_q_proj.weight", {3072, 1536}},
      {"transformer_blocks.0.attn1.to_out.0.bias", {3072}},
      {"transformer_blocks.0.attn1.to_add_out.weight", {1536, 3072}},
      {"transformer_blocks.0.ff.net.0.proj.weight", {16384, 3072}},
      {"transformer_blocks.0.ff.net.2.weight", {3072, 8192}},
      {"transformer_blocks.0.ff_context.net.0.proj.weight", {8192, 1536}},
      {"transformer_blocks.0.ff_context.net.2.weight", {1536, 4096}},
      {"norm_out.linear.weight", {6144, 3072}},
      {"proj_out.weight", {48, 3072}},
  };
  for (const auto& [key, shape] : expected) {
    ASSERT_TRUE(shapes.count(key)) << key;
    EXPECT_EQ(shapes[key], shape) << key;
  }
  // No biases on the attention projections and MLPs; the last block has no text outputs.
  for (const char* absent :
       {"transformer_blocks.0.attn1.to_q.bias", "transformer_blocks.0.attn1.add_k_proj.bias",
        "transformer_blocks.0.ff.net.2.bias", "transformer_blocks.47.attn1.to_add_out.weight",
        "transformer_blocks.47.ff_context.net.0.proj.weight",
        "transformer_blocks.47.norm1_context.linear.weight"}) {
    EXPECT_FALSE(shapes.count(absent)) << absent;
  }
  // Mochi-1-preview: 10.0B parameters.
  EXPECT_GT(total, 9'900'000'000);
  EXPECT_LT(total, 10'100'000'000);
}

TEST(MochiTransformer, TeaCacheSignalIsBlockZerosModulatedInput) {
  c10::InferenceMode guard;
  auto model = load_fixture_model(at::kFloat);
  BlockState s = model->prepare(inputs_from(fixture_io(), "input."));
  auto signal = model->teacache_signal(s);
  EXPECT_EQ(signal.sizes(), s.hidden.sizes());
  auto expected = model->transformer_blocks[0]->norm1(s.hidden, s.temb).x;
  EXPECT_TRUE(at::equal(signal, expected));
}

TEST(MochiTransformer, BadInputsNameTheTensor) {
  c10::InferenceMode guard;
  auto model = load_fixture_model(at::kFloat);
  auto in = inputs_from(fixture_io(), "input.");
  auto bad = in;
  bad.latents = at::zeros({1, 5, 3, 8, 8});
  EXPECT_NE(testing::input_error_of([&] { model->prepare(bad); }).find("latents"),
            std::string::npos);
  bad = in;
  bad.latents = at::zeros({1, 4, 3, 7, 8});
  EXPECT_NE(testing::input_error_of([&] { model->prepare(bad); }).find("patch"), std::string::npos);
  bad = in;
  bad.prompt.embeds = at::zeros({1, 7, 23});
  EXPECT_NE(testing::input_error_of([&] { model->prepare(bad); }).find("prompt.embeds"),
            std::string::npos);
  bad = in;
  bad.prompt.attention_mask = at::ones({1, 6}, at::kBool);
  EXPECT_NE(testing::input_error_of([&] { model->prepare(bad); }).find("attention_mask"),
            std::string::npos);
  bad = in;
  bad.timestep = at::zeros({3});
  EXPECT_NE(testing::input_error_of([&] { model->prepare(bad); }).find("timestep"),
            std::string::npos);
}

TEST(MochiConfig, ReadsDiffusersConfigAndRejectsBadValues) {
  auto c = MochiConfig::from_file(fixture_dir() + "/model/config.json");
  EXPECT_EQ(c.in_channels, 4);
  EXPECT_EQ(c.out_channels, 4);  // null: same as in_channels
  EXPECT_EQ(c.text_embed_dim, 24);
  EXPECT_EQ(c.time_embed_dim, 8);
  EXPECT_NE(testing::input_error_of([] {
              MochiConfig::from_json(nlohmann::json{{"num_layers", "two"}}, "cfg.json");
            }).find("num_layers"),
            std::string::npos);
  EXPECT_THROW(MochiConfig::from_json(nlohmann::json{{"activation_fn", "gelu"}}, "cfg.json"),
               Unsupported);
  EXPECT_THROW(mochi_preset("mochi-2"), InputError);
  const auto released = mochi_preset("mochi-1-preview");
  EXPECT_EQ(released.inner_dim(), 3072);
  EXPECT_EQ(released.ff_inner_dim(), 8192);
  EXPECT_EQ(released.ff_context_inner_dim(), 4096);
}

}  // namespace
}  // namespace ditbench
