// CogVideoX VAE decoder against diffusers: the fixture (one frame batch), and the reference
// decodes of scripts/refdata/cogvideox_vae.py (several frame batches with the causal caches
// carried across them; spatial tiles).
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include "model_test_util.h"
#include "models/checkpoint/safetensors.h"
#include "models/cogvideox/parity.h"
#include "models/cogvideox/vae.h"
#include "models/common/error.h"

namespace ditbench {
namespace {

using ditbench::testing::input_error_of;
using ditbench::testing::rel_error;

std::string vae_dir() { return testing::diffusers_fixture("vae_cogvideox") + "/model"; }

const testing::TensorMap& refs() { return testing::test_data("cogvideox/vae_decode.safetensors"); }

TEST(CogVideoXVAE, FixtureParity) {
  auto r = cogvideox_vae_parity(testing::diffusers_fixture("vae_cogvideox"));
  EXPECT_LT(r.rel_error, 1e-4);
}

TEST(CogVideoXVAE, FrameBatchesCarryTheCausalCaches) {
  c10::InferenceMode guard;
  auto vae = load_cogvideox_vae_decoder(vae_dir(), at::TensorOptions().dtype(at::kFloat));
  auto out = vae->decode(refs().at("batched.latents"));  // 5 latent frames: batches of 3 and 2
  ASSERT_EQ(out.sizes(), refs().at("batched.frames").sizes());
  EXPECT_EQ(out.size(2), 17);
  EXPECT_LT(rel_error(out, refs().at("batched.frames")), 1e-4);
}

TEST(CogVideoXVAE, TiledDecodeMatches) {
  c10::InferenceMode guard;
  auto vae = load_cogvideox_vae_decoder(vae_dir(), at::TensorOptions().dtype(at::kFloat));
  vae->set_tiling(true);
  vae->set_tile_size(48, 40);
  auto out = vae->decode(refs().at("tiled.latents"));  // 8 x 7 latents: 2 x 2 tiles
  ASSERT_EQ(out.sizes(), refs().at("tiled.frames").sizes());
  EXPECT_LT(rel_error(out, refs().at("tiled.frames")), 1e-4);
  // Tiles whose blend diffusers computes differently are refused.
  EXPECT_NE(input_error_of([&] { vae->set_tile_size(16, 16); }).find("tile"), std::string::npos);
}

TEST(CogVideoXVAE, ReleasedConfigKeysAndTiles) {
  CogVideoXVAEConfig config;
  AutoencoderKLCogVideoXDecoder vae(config, at::TensorOptions().device(at::kMeta));
  std::set<std::string> keys;
  for (const auto& p : vae->named_parameters()) keys.insert(p.key());
  for (const char* k :
       {"decoder.conv_in.conv.weight", "decoder.mid_block.resnets.1.norm2.conv_b.conv.bias",
        "decoder.up_blocks.0.resnets.3.conv2.conv.weight",
        "decoder.up_blocks.1.resnets.0.conv_shortcut.weight",
        "decoder.up_blocks.2.upsamplers.0.conv.weight", "decoder.norm_out.norm_layer.weight",
        "decoder.conv_out.conv.bias"}) {
    EXPECT_TRUE(keys.count(k)) << k;
  }
  EXPECT_FALSE(keys.count("decoder.up_blocks.3.upsamplers.0.conv.weight"));
  // 480x720 video: 60 x 90 latents are larger than a 30 x 45 latent tile.
  EXPECT_EQ(config.spatial_compression_ratio(), 8);
  EXPECT_NO_THROW(vae->set_tile_size(240, 360));
}

TEST(CogVideoXVAE, BadConfigAndLatents) {
  nlohmann::json j = {{"block_out_channels", {8, 10}}, {"norm_num_groups", 4}};
  EXPECT_NE(input_error_of([&] {
              CogVideoXVAEConfig::from_json(j, "vae.json");
            }).find("block_out_channels"),
            std::string::npos);
  j = {{"up_block_types", {"UpDecoderBlock2D"}}};
  EXPECT_THROW(CogVideoXVAEConfig::from_json(j, "vae.json"), Unsupported);
  c10::InferenceMode guard;
  auto vae = load_cogvideox_vae_decoder(vae_dir(), at::TensorOptions().dtype(at::kFloat));
  EXPECT_NE(input_error_of([&] {
              vae->decode(at::zeros({1, 16, 1, 4, 4}));
            }).find("latents"),
            std::string::npos);
}

}  // namespace
}  // namespace ditbench
