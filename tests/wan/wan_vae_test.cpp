// Wan VAE decoder against diffusers: the shared fp32 fixture (causal frame-by-frame decode with the
// feature cache), and references generated with diffusers (tests/data/wan/vae_refs.safetensors):
// a spatially tiled decode on small tiles and the bf16 decode.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include <map>
#include <string>

#include "model_test_util.h"
#include "models/checkpoint/checkpoint.h"
#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"
#include "models/common/json_config.h"
#include "models/wan/parity.h"
#include "models/wan/vae.h"

namespace ditbench {
namespace {

using testing::rel_error;

std::string fixture_dir() { return testing::fixtures_dir() + "/diffusers/vae_wan"; }

AutoencoderKLWanDecoder load_fixture_vae(at::ScalarType dtype) {
  return testing::load_fixture_model<AutoencoderKLWanDecoder>(
      fixture_dir(), WanVAEConfig::from_file(fixture_dir() + "/model"), dtype,
      {"encoder.", "quant_conv."});
}

const testing::TensorMap& refs() { return testing::test_data("wan/vae_refs.safetensors"); }

TEST(WanVae, Fp32DecodeMatchesTheDiffusersFixture) {
  c10::InferenceMode inference;
  auto vae = load_fixture_vae(at::kFloat);
  const auto io = load_safetensors(fixture_dir() + "/io.safetensors");
  auto frames = vae->decode(io.at("input.latents"));  // 3 latent frames -> 1 + 4 * 2 frames
  ASSERT_EQ(frames.sizes(), io.at("output.frames").sizes());
  EXPECT_LE(rel_error(frames, io.at("output.frames")), 1e-4);
  // The same through `ditbench parity`'s entry point.
  EXPECT_LE(wan_vae_parity(fixture_dir()).rel_error, 1e-4);
}

TEST(WanVae, TiledDecodeMatchesDiffusersTiling) {
  c10::InferenceMode inference;
  auto vae = load_fixture_vae(at::kFloat);
  SpatialTiles tiles;
  tiles.min_height = tiles.min_width = 64;
  tiles.stride_height = tiles.stride_width = 48;
  vae->set_tiling(tiles);
  auto frames = vae->decode(refs().at("tiled.latents"));
  ASSERT_EQ(frames.sizes(), refs().at("tiled.frames").sizes());
  EXPECT_LE(rel_error(frames, refs().at("tiled.frames")), 1e-4);
  // Tiling with the default 256-pixel tiles leaves this small video untiled, i.e. unchanged.
  auto default_tiles = load_fixture_vae(at::kFloat), untiled = load_fixture_vae(at::kFloat);
  default_tiles->set_tiling(true);
  const auto z = refs().at("tiled.latents").narrow(2, 0, 1);
  EXPECT_TRUE(at::equal(default_tiles->decode(z), untiled->decode(z)));
}

TEST(WanVae, Bf16DecodeMatchesDiffusers) {
  c10::InferenceMode inference;
  auto vae = load_fixture_vae(at::kBFloat16);
  const auto io = load_safetensors(fixture_dir() + "/io.safetensors");
  auto frames = vae->decode(io.at("input.latents"));
  ASSERT_EQ(frames.scalar_type(), at::kBFloat16);
  EXPECT_LE(rel_error(frames, refs().at("bf16.frames")), 2e-2);
}

TEST(WanVae, ReleasedConfigBuildsTheReleasedDecoder) {
  AutoencoderKLWanDecoder vae(WanVAEConfig{}, at::TensorOptions().device(at::kMeta));
  int64_t n = 0;
  for (const auto& p : vae->parameters()) n += p.numel();
  // diffusers AutoencoderKLWan(): decoder + post_quant_conv parameters.
  EXPECT_EQ(n, 73295603);
}

TEST(WanVae, ConfigErrorsNameTheKey) {
  auto msg = testing::input_error_of([] {
    WanVAEConfig::from_json({{"latents_std", {1.0, 2.0}}}, "vae.json");
  });
  EXPECT_NE(msg.find("latents_std"), std::string::npos);
  EXPECT_NE(msg.find("vae.json"), std::string::npos);
  EXPECT_THROW(WanVAEConfig::from_json({{"is_residual", true}}, "vae.json"), Unsupported);
}

}  // namespace
}  // namespace ditbench
