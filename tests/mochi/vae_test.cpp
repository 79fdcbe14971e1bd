// Mochi VAE decoder against diffusers' AutoencoderKLMochi: the fixture (fp32, untiled), references
// generated with diffusers (tests/data/mochi/vae_refs.safetensors, scripts/refdata/mochi/vae.py)
// for tiled decoding with blended tiles and for bf16, the released key set, and bad tilings.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include <map>
#include <string>

#include "model_test_util.h"
#include "models/checkpoint/checkpoint.h"
#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"
#include "models/mochi/vae.h"
#include "models/pipeline.h"

namespace ditbench {
namespace {

using testing::rel_error;

std::string fixture_dir() { return testing::fixtures_dir() + "/diffusers/vae_mochi"; }

AutoencoderKLMochiDecoder load_fixture_vae(at::ScalarType dtype) {
  return testing::load_fixture_model<AutoencoderKLMochiDecoder>(
      fixture_dir(), MochiVAEConfig::from_file(fixture_dir() + "/model"), dtype, {"encoder."});
}

const testing::TensorMap& generated_refs() {
  return testing::test_data("mochi/vae_refs.safetensors");
}

TEST(MochiVAE, FixtureDecodeMatchesDiffusers) {
  c10::InferenceMode guard;
  auto vae = load_fixture_vae(at::kFloat);
  auto io = load_safetensors(fixture_dir() + "/io.safetensors");
  auto frames = vae->decode(io.at("input.latents"));
  // 3 latent frames: 18 decoded, the first 5 dropped.
  ASSERT_EQ(frames.sizes(), io.at("output.frames").sizes());
  EXPECT_LT(rel_error(frames, io.at("output.frames")), 1e-4);
  // Tiling on with the default 256-pixel tiles changes nothing at 32 x 32.
  vae->set_tiling(true);
  EXPECT_TRUE(at::equal(vae->decode(io.at("input.latents")), frames));
}

TEST(MochiVAE, FixtureParityThroughTheRegistry) {
  auto result = run_fixture_parity(fixture_dir());
  EXPECT_EQ(result.model_class, "AutoencoderKLMochi");
  EXPECT_LT(result.rel_error, 1e-4);
}

TEST(MochiVAE, TiledDecodeBlendsLikeDiffusers) {
  c10::InferenceMode guard;
  auto vae = load_fixture_vae(at::kFloat);
  vae->set_tiling(true, SpatialTiles{24, 24, 16, 16});
  const auto& refs = generated_refs();
  auto frames = vae->decode(refs.at("tiled.input.latents"));
  ASSERT_EQ(frames.sizes(), refs.at("tiled.output.frames").sizes());
  EXPECT_LT(rel_error(frames, refs.at("tiled.output.frames")), 1e-4);
  // The tiles are visible: untiled decoding differs.
  vae->set_tiling(false);
  EXPECT_GT(rel_error(vae->decode(refs.at("tiled.input.latents")), refs.at("tiled.output.frames")),
            1e-3);
}

TEST(MochiVAE, Bf16MatchesDiffusersBf16) {
  c10::InferenceMode guard;
  auto vae = load_fixture_vae(at::kBFloat16);
  const auto& refs = generated_refs();
  auto frames = vae->decode(refs.at("bf16.input.latents"));
  EXPECT_EQ(frames.scalar_type(), at::kBFloat16);
  EXPECT_LT(rel_error(frames, refs.at("bf16.output.frames")), 1e-2);
}

TEST(MochiVAE, ReleasedDecoderKeysAndCompression) {
  MochiVAEConfig config;
  EXPECT_EQ(config.spatial_compression_ratio(), 8);
  EXPECT_EQ(config.temporal_compression_ratio(), 6);
  AutoencoderKLMochiDecoder vae(config, at::TensorOptions().device(at::kMeta));
  std::map<std::string, std::vector<int64_t>> shapes;
  int64_t total = 0;
  for (const auto& p : vae->named_parameters()) {
    shapes[p.key()] = p.value().sizes().vec();
    total += p.value().numel();
  }
  const std::map<std::string, std::vector<int64_t>> expected = {
      {"decoder.conv_in.weight", {768, 12, 1, 1, 1}},
      {"decoder.block_in.resnets.2.conv2.conv.weight", {768, 768, 3, 3, 3}},
      {"decoder.block_in.resnets.2.norm1.norm_layer.weight", {768}},
      {"decoder.up_blocks.0.proj.weight", {512 * 3 * 4, 768}},
      {"decoder.up_blocks.0.resnets.5.conv1.conv.weight", {768, 768, 3, 3, 3}},
      {"decoder.up_blocks.1.proj.weight", {256 * 2 * 4, 512}},
      {"decoder.up_blocks.2.proj.weight", {128 * 1 * 4, 256}},
      {"decoder.up_blocks.2.resnets.2.conv1.conv.weight", {256, 256, 3, 3, 3}},
      {"decoder.block_out.resnets.2.conv2.conv.bias", {128}},
      {"decoder.proj_out.weight", {3, 128}},
  };
  for (const auto& [key, shape] : expected) {
    ASSERT_TRUE(shapes.count(key)) << key;
    EXPECT_EQ(shapes[key], shape) << key;
  }
  EXPECT_FALSE(shapes.count("decoder.block_in.resnets.3.conv1.conv.weight"));
  EXPECT_FALSE(shapes.count("decoder.up_blocks.2.resnets.3.conv1.conv.weight"));
  // The released decoder has about 362M parameters.
  EXPECT_GT(total, 300'000'000);
  EXPECT_LT(total, 400'000'000);
}

TEST(MochiVAE, BadConfigAndTilingAreRejected) {
  auto vae = load_fixture_vae(at::kFloat);
  EXPECT_THROW(vae->set_tiling(true, SpatialTiles{20, 24, 16, 16}), InputError);
  EXPECT_THROW(vae->set_tiling(true, SpatialTiles{24, 24, 32, 16}), InputError);
  EXPECT_NE(testing::input_error_of([] {
              MochiVAEConfig::from_json(nlohmann::json{{"layers_per_block", {1, 2}}}, "vae.json");
            }).find("layers_per_block"),
            std::string::npos);
  EXPECT_NE(testing::input_error_of([] {
              MochiVAEConfig::from_json(nlohmann::json{{"latents_mean", {0.0, 1.0}}}, "vae.json");
            }).find("latents_mean"),
            std::string::npos);
}

}  // namespace
}  // namespace ditbench
