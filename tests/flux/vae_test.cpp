// FLUX's AutoencoderKL decoder against diffusers (fp32, CPU): the fixture's untiled decode, a
// tiled decode of latents larger than one tile (tests/data/flux, scripts/refdata/flux_pipeline.py;
// on a GPU too, with the fused GroupNorm),
// the key set of a full VAE checkpoint, the released VAE's size.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include "model_test_util.h"
#include "models/checkpoint/checkpoint.h"
#include "models/checkpoint/safetensors.h"
#include "models/flux/parity.h"
#include "models/flux/vae.h"

namespace ditbench {
namespace {

using ditbench::testing::input_error_of;
using ditbench::testing::rel_error;

std::string fixture() { return testing::diffusers_fixture("vae_flux"); }

TEST(FluxVae, MatchesDiffusersFixture) {
  const auto result = flux_vae_parity(fixture());
  EXPECT_EQ(result.model_class, "AutoencoderKL");
  EXPECT_LT(result.rel_error, 1e-4);
  EXPECT_LT(run_fixture_parity(fixture()).rel_error, 1e-4);
}

TEST(FluxVae, TiledDecodeMatchesDiffusers) {
  c10::InferenceMode guard;
  const auto& refs = testing::test_data("flux/flux_refs.safetensors");
  auto vae =
      load_autoencoder_kl_decoder(fixture() + "/model", at::TensorOptions().dtype(at::kFloat));
  vae->set_tiling(true);
  const auto& z = refs.at("vae_tiled.latents");  // [1, 4, 12, 14]: tiles of 8 latents
  auto tiled = vae->decode(z);
  ASSERT_EQ(tiled.sizes(), refs.at("vae_tiled.frames").sizes());
  EXPECT_LT(rel_error(tiled, refs.at("vae_tiled.frames")), 1e-4);
  // Blending changes the frame: the untiled decode is a different image.
  vae->set_tiling(false);
  EXPECT_GT(rel_error(vae->decode(z), refs.at("vae_tiled.frames")), 1e-3);
}

// In float32 on a GPU, where every GroupNorm (+ SiLU) runs as the fused kernel, the tiled decode
// keeps diffusers' parity (convolutions without TF32, which would round their inputs).
TEST(FluxVaeCuda, Fp32TiledDecodeWithFusedGroupNormMatchesDiffusers) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  c10::InferenceMode guard;
  const auto& refs = testing::test_data("flux/flux_refs.safetensors");
  auto vae = load_autoencoder_kl_decoder(fixture() + "/model",
                                         at::TensorOptions().dtype(at::kFloat).device(at::kCUDA));
  vae->set_tiling(true);
  const bool tf32 = at::globalContext().allowTF32CuDNN();
  at::globalContext().setAllowTF32CuDNN(false);
  auto tiled = vae->decode(refs.at("vae_tiled.latents").to(at::kCUDA)).cpu();
  at::globalContext().setAllowTF32CuDNN(tf32);
  EXPECT_LT(rel_error(tiled, refs.at("vae_tiled.frames")), 1e-4);
}

TEST(FluxVae, LoadsTheDecoderKeysOfAFullCheckpoint) {
  auto ckpt = Checkpoint::open(fixture() + "/model");
  AutoencoderKLDecoder vae(AutoencoderKLConfig::from_file(fixture() + "/model"),
                           at::TensorOptions().device(at::kMeta));
  std::vector<std::string> expected;
  for (const auto& k : ckpt.keys()) {
    if (k.rfind("encoder.", 0) != 0 && k.rfind("quant_conv.", 0) != 0) expected.push_back(k);
  }
  std::vector<std::string> names;
  for (const auto& p : vae->named_parameters()) names.push_back(p.key());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, expected);
}

TEST(FluxVae, ReleasedDecoderSize) {
  // FLUX.1-dev's VAE: 16 latent channels, no post_quant_conv, 8x; its decoder holds 49,545,475
  // parameters (diffusers' AutoencoderKL.decoder at that config).
  AutoencoderKLDecoder vae(AutoencoderKLConfig{}, at::TensorOptions().device(at::kMeta));
  int64_t n = 0;
  for (const auto& p : vae->parameters()) n += p.numel();
  EXPECT_EQ(n, 49545475);
  EXPECT_EQ(AutoencoderKLConfig{}.spatial_compression_ratio(), 8);
  EXPECT_TRUE(vae->post_quant_conv.is_empty());
}

TEST(FluxVae, ConfigReadsNullShiftAndRejectsBadValues) {
  const auto c = AutoencoderKLConfig::from_file(fixture() + "/model");
  EXPECT_EQ(c.latent_channels, 4);
  EXPECT_EQ(c.shift_factor, 0.0);
  EXPECT_TRUE(c.use_post_quant_conv);
  auto message = input_error_of([] {
    AutoencoderKLConfig::from_json(nlohmann::json{{"block_out_channels", {8, "x"}}}, "vae.json");
  });
  EXPECT_NE(message.find("block_out_channels"), std::string::npos) << message;
  EXPECT_THROW(
      AutoencoderKLConfig::from_json(nlohmann::json{{"up_block_types", {"AttnUpDecoderBlock2D"}},
                                                    {"block_out_channels", {32}}},
                                     "vae.json"),
      Unsupported);
  message = input_error_of([] {
    AutoencoderKLDecoder vae(AutoencoderKLConfig{}, at::TensorOptions().device(at::kMeta));
    vae->decode(at::zeros({1, 4, 8, 8}));
  });
  EXPECT_NE(message.find("latents"), std::string::npos) << message;
}

}  // namespace
}  // namespace ditbench
