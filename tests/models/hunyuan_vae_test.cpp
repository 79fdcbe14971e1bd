// HunyuanVideo VAE decoder: parity with diffusers (untiled, spatially and temporally tiled), the
// trained tiny-shapes VAE, the released config's size, config parsing and causality.
//
// tests/data/hunyuan_vae_tiled.safetensors holds diffusers' AutoencoderKLHunyuanVideo.decode of the
// fixture model (../shared/fixtures/diffusers/vae_hunyuan_video) with tiles of 32x32 pixels at
// stride 24 and 8 frames at stride 4: `spatial.*` (use_tiling, 2 latent frames: spatial tiles
// only), `spatiotemporal.*` (use_tiling and frame-wise tiles) and `temporal.*` (use_tiling off:
// frame-wise tiles only), each as `<case>.latents` and `<case>.frames`.
// tests/data/hunyuan_vae_tiny_shapes.safetensors: diffusers' fp32 decode of seeded latents
// [1, 8, 3, 16, 16] with the tiny-shapes VAE, stored every 4th pixel (`frames_sub4`).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "models/checkpoint/checkpoint.h"
#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"
#include "models/hunyuan_video/vae.h"
#include "optimizations/kernels/fused.h"
#include "test_util.h"

namespace ditbench {
namespace {

using testing::fixtures_dir;
using testing::rel_error;

std::string fixture_dir() { return fixtures_dir() + "/diffusers/vae_hunyuan_video"; }
std::string data_dir() { return testing::source_dir() + "/tests/data"; }

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

AutoencoderKLHunyuanVideoDecoder load_vae(const std::string& dir, at::ScalarType dtype) {
  return load_hunyuan_video_vae_decoder(dir, at::TensorOptions().dtype(dtype));
}

TEST(HunyuanVae, DecodeMatchesDiffusersUntiled) {
  auto vae = load_vae(fixture_dir() + "/model", at::kFloat);
  auto io = load_safetensors(fixture_dir() + "/io.safetensors");
  vae->set_tiling(false);
  at::Tensor frames = vae->decode(io.at("input.latents"));
  ASSERT_EQ(frames.sizes(), io.at("output.frames").sizes());
  EXPECT_LE(rel_error(frames, io.at("output.frames")), 1e-4);
}

// Tile sizes used to generate tests/data/hunyuan_vae_tiled.safetensors.
HunyuanVideoVAETiling small_tiles(bool spatial) {
  HunyuanVideoVAETiling tiling;
  tiling.spatial = spatial;
  tiling.framewise = true;
  tiling.min_height = tiling.min_width = 32;
  tiling.stride_height = tiling.stride_width = 24;
  tiling.min_num_frames = 8;
  tiling.stride_num_frames = 4;
  return tiling;
}

void expect_tiled_parity(const std::string& name, bool spatial) {
  SCOPED_TRACE(name);
  auto vae = load_vae(fixture_dir() + "/model", at::kFloat);
  auto data = load_safetensors(data_dir() + "/hunyuan_vae_tiled.safetensors");
  const at::Tensor& latents = data.at(name + ".latents");
  const at::Tensor& expected = data.at(name + ".frames");

  vae->set_tiling(small_tiles(spatial));
  at::Tensor tiled = vae->decode(latents);
  ASSERT_EQ(tiled.sizes(), expected.sizes());
  EXPECT_LE(rel_error(tiled, expected), 1e-4);

  // The tiles must really have been taken: one whole-clip pass differs (GroupNorm statistics and
  // attention span the whole input there).
  HunyuanVideoVAETiling whole = small_tiles(false);
  whole.framewise = false;
  vae->set_tiling(whole);
  at::Tensor untiled = vae->decode(latents);
  ASSERT_EQ(untiled.sizes(), expected.sizes());
  EXPECT_GT(rel_error(untiled, expected), 1e-3);
}

TEST(HunyuanVae, SpatialTiledDecodeMatchesDiffusers) { expect_tiled_parity("spatial", true); }

TEST(HunyuanVae, SpatioTemporalTiledDecodeMatchesDiffusers) {
  expect_tiled_parity("spatiotemporal", true);
}

// diffusers decodes long clips in overlapping frame windows even with tiling off.
TEST(HunyuanVae, FramewiseDecodeWithoutSpatialTilingMatchesDiffusers) {
  expect_tiled_parity("temporal", false);
}

TEST(HunyuanVae, TinyShapesVaeLoadsAndDecodes) {
  const std::string dir = testing::source_dir() + "/assets/tiny-shapes/vae";
  auto data = load_safetensors(data_dir() + "/hunyuan_vae_tiny_shapes.safetensors");
  const at::Tensor& latents = data.at("latents");  // [1, 8, 3, 16, 16]
  const at::Tensor& expected = data.at("frames_sub4");

  auto vae_bf16 = load_vae(dir, at::kBFloat16);
  EXPECT_EQ(vae_bf16->config().latent_channels, 8);
  at::Tensor frames = vae_bf16->decode(latents);
  ASSERT_EQ(frames.sizes(), (at::IntArrayRef{1, 3, 9, 128, 128}));
  EXPECT_EQ(frames.scalar_type(), at::kBFloat16);
  auto sub4 = [](const at::Tensor& x) {
    return x.slice(3, 0, x.size(3), 4).slice(4, 0, x.size(4), 4);
  };
  // bf16 activations against diffusers' fp32 run of the same weights.
  EXPECT_LE(rel_error(sub4(frames), expected), 3e-2);

  // The same weights upcast to fp32 reproduce diffusers' fp32 decode.
  auto vae_fp32 = load_vae(dir, at::kFloat);
  EXPECT_LE(rel_error(sub4(vae_fp32->decode(latents)), expected), 1e-4);
}

TEST(HunyuanVae, ReleasedConfigOnMetaDeviceHasDecoderParameterCount) {
  HunyuanVideoVAEConfig config;  // defaults = released VAE
  AutoencoderKLHunyuanVideoDecoder vae(config, at::TensorOptions().device(at::kMeta));
  int64_t count = 0;
  for (const auto& p : vae->parameters()) {
    EXPECT_TRUE(p.is_meta());
    count += p.numel();
  }
  // diffusers AutoencoderKLHunyuanVideo() (0.42, class defaults = released config):
  // 246,478,803 parameters in all, encoder 100,341,408, quant_conv 1,056
  // -> decoder 146,136,067 + post_quant_conv 272 = 146,136,339.
  EXPECT_EQ(count, 146136339);
  auto params = vae->named_parameters();
  EXPECT_EQ(params["decoder.conv_in.conv.weight"].sizes(), (at::IntArrayRef{512, 16, 3, 3, 3}));
  EXPECT_EQ(params["decoder.up_blocks.2.resnets.0.conv_shortcut.conv.weight"].sizes(),
            (at::IntArrayRef{256, 512, 1, 1, 1}));
  EXPECT_EQ(params["decoder.mid_block.attentions.0.to_out.0.weight"].sizes(),
            (at::IntArrayRef{512, 512}));
  EXPECT_EQ(params["decoder.conv_out.conv.weight"].sizes(), (at::IntArrayRef{3, 128, 3, 3, 3}));
  // Up-samplers: spatial in blocks 0-2, temporal in blocks 1-2, none in the last block.
  EXPECT_TRUE(params.contains("decoder.up_blocks.2.upsamplers.0.conv.conv.weight"));
  EXPECT_FALSE(params.contains("decoder.up_blocks.3.upsamplers.0.conv.conv.weight"));
}

TEST(HunyuanVae, ConfigFromJsonReadsFixtureAndRejectsBadValues) {
  const std::string path = fixture_dir() + "/model/config.json";
  nlohmann::json json = read_json(path);
  auto config = HunyuanVideoVAEConfig::from_json(json, path);
  EXPECT_EQ(config.block_out_channels, (std::vector<int64_t>{8, 16, 16, 16}));
  EXPECT_EQ(config.latent_channels, 4);
  EXPECT_EQ(config.layers_per_block, 1);
  EXPECT_EQ(config.norm_num_groups, 4);

  auto expect_error = [&](nlohmann::json bad, const std::string& needle) {
    try {
      HunyuanVideoVAEConfig::from_json(bad, path);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  };
  nlohmann::json bad = json;
  bad["block_out_channels"][2] = "wide";
  expect_error(bad, "/block_out_channels/2");
  bad = json;
  bad["norm_num_groups"] = 3;  // 8 channels do not split into 3 groups
  expect_error(bad, "/norm_num_groups");
  bad = json;
  bad["temporal_compression_ratio"] = 8;
  expect_error(bad, "/temporal_compression_ratio");
  bad = json;
  bad["_class_name"] = "AutoencoderKLWan";
  expect_error(bad, "/_class_name");
  bad = json;
  bad["up_block_types"][0] = "UpDecoderBlock2D";
  expect_error(bad, "/up_block_types/0");
}

TEST(HunyuanVae, RejectsBadLatentsAndTileSizes) {
  HunyuanVideoVAEConfig config;
  config.block_out_channels = {8, 8, 8, 8};
  config.norm_num_groups = 4;
  config.latent_channels = 4;
  AutoencoderKLHunyuanVideoDecoder vae(config, at::TensorOptions().device(at::kMeta));
  try {
    vae->decode(at::zeros({1, 16, 2, 4, 4}));
    ADD_FAILURE() << "wrong latent channels accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("latents"), std::string::npos) << e.what();
  }
  HunyuanVideoVAETiling tiling;
  tiling.stride_height = 100;  // not a multiple of 8
  EXPECT_THROW(vae->set_tiling(tiling), InputError);
  tiling = HunyuanVideoVAETiling();
  tiling.stride_num_frames = 20;  // larger than its 16-frame tile
  EXPECT_THROW(vae->set_tiling(tiling), InputError);
}

// A causal conv's output at frame t depends only on input frames <= t.
TEST(HunyuanVaeLayers, CausalConvIgnoresFutureFrames) {
  CausalConv3d conv(2, 3, Int3{3, 3, 3}, Int3{1, 1, 1}, at::TensorOptions().dtype(at::kDouble));
  for (auto& p : conv->parameters()) p.normal_();
  at::Tensor x = at::randn({1, 2, 5, 4, 4}, at::kDouble);
  at::Tensor y = conv(x);
  ASSERT_EQ(y.sizes(), (at::IntArrayRef{1, 3, 5, 4, 4}));
  at::Tensor x_future = x.clone();
  x_future.narrow(2, 3, 2).normal_();
  at::Tensor y_future = conv(x_future);
  EXPECT_TRUE(at::equal(y.narrow(2, 0, 3), y_future.narrow(2, 0, 3)));
  EXPECT_FALSE(at::allclose(y.narrow(2, 3, 2), y_future.narrow(2, 3, 2)));
}

// causal_resample against index lists written out by hand: F = 3 frames up-sampled causally by
// 2 are frames 0, 1, 1, 2, 2, then 2 copies of the first in front; H = 2 rows by 2 with one row of
// replicate padding per side; W = 3 columns likewise. The kernels' index map (VideoResample, on
// the host here) gives the same lists, and a channels-last input the same values.
TEST(HunyuanVaeLayers, CausalResampleMatchesHandIndexing) {
  at::Tensor x = at::randn({2, 3, 3, 2, 3}, at::kDouble);
  CausalResample resample;
  resample.scale = {2, 2, 2};
  resample.pad_frames = 2;
  resample.pad_height = resample.pad_width = 1;
  const std::vector<int64_t> frames = {0, 0, 0, 1, 1, 2, 2}, rows = {0, 0, 0, 1, 1, 1},
                             columns = {0, 0, 0, 1, 1, 2, 2, 2};
  auto index = [](const std::vector<int64_t>& v) { return at::tensor(v, at::kLong); };
  at::Tensor expected =
      x.index_select(2, index(frames)).index_select(3, index(rows)).index_select(4, index(columns));
  at::Tensor y = causal_resample(x, resample);
  ASSERT_EQ(y.sizes(), expected.sizes());
  EXPECT_TRUE(at::equal(y, expected));
  EXPECT_EQ(at::IntArrayRef(resample.output_sizes(x.sizes())), expected.sizes());
  EXPECT_TRUE(at::equal(causal_resample(x.contiguous(at::MemoryFormat::ChannelsLast3d), resample),
                        expected));

  const auto map = video_resample_map(x.sizes(), resample);
  ASSERT_TRUE(map.has_value());
  ASSERT_EQ(map->out_frames(), 7);
  ASSERT_EQ(map->out_height(), 6);
  ASSERT_EQ(map->out_width(), 8);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(map->source_frame(i), frames[i]) << i;
  for (int i = 0; i < 6; ++i) EXPECT_EQ(map->source_row(i), rows[i]) << i;
  for (int i = 0; i < 8; ++i) EXPECT_EQ(map->source_column(i), columns[i]) << i;

  // A causal conv's padding alone: 2 frames in front, one row and column per side.
  CausalConv3d conv(3, 4, Int3{3, 3, 3}, Int3{1, 1, 1}, at::TensorOptions().dtype(at::kDouble));
  const CausalResample pad = conv->padding();
  at::Tensor padded = causal_resample(x, pad);
  EXPECT_TRUE(at::equal(padded, x.index_select(2, index({0, 0, 0, 1, 2}))
                                    .index_select(3, index({0, 0, 1, 1}))
                                    .index_select(4, index({0, 0, 1, 2, 2}))));
  EXPECT_TRUE(causal_resample(x, CausalResample{}).is_same(x));
  EXPECT_FALSE(video_resample_map({1, 8, int64_t{1} << 31, 4, 4}, pad).has_value());
}

// The decoder in channels-last activations (the GPU default) computes what it computes in ATen's
// default layout: every layer takes either, and the output comes back contiguous.
TEST(HunyuanVae, ChannelsLastDecodeMatchesTheDefaultLayout) {
  auto vae = load_vae(fixture_dir() + "/model", at::kFloat);
  auto io = load_safetensors(fixture_dir() + "/io.safetensors");
  vae->set_tiling(false);
  vae->decoder->channels_last = false;
  at::Tensor reference = vae->decode(io.at("input.latents"));
  vae->decoder->channels_last = true;
  at::Tensor frames = vae->decode(io.at("input.latents"));
  EXPECT_TRUE(vae->decoder->conv_in->conv->weight.is_contiguous(at::MemoryFormat::ChannelsLast3d));
  EXPECT_TRUE(frames.is_contiguous());
  ASSERT_EQ(frames.sizes(), reference.sizes());
  EXPECT_LE(rel_error(frames, reference), 1e-5);
  EXPECT_LE(rel_error(frames, io.at("output.frames")), 1e-4);
  vae->decoder->channels_last = false;  // the weights go back on the next decode
  EXPECT_LE(rel_error(vae->decode(io.at("input.latents")), reference), 1e-6);
  EXPECT_TRUE(vae->decoder->conv_in->conv->weight.is_contiguous());
}

// The mid-block attention against a direct evaluation of diffusers' formula: GroupNorm, one head
// of width C, an explicit frame-causal mask (a token sees tokens of its own and earlier frames),
// output projection, residual.
TEST(HunyuanVaeLayers, MidBlockAttentionIsFrameCausal) {
  CausalFrameAttention attn(8, 2, 1e-6, at::TensorOptions().dtype(at::kDouble));
  for (auto& p : attn->parameters()) p.normal_();
  at::Tensor x = at::randn({1, 8, 3, 2, 2}, at::kDouble);
  at::Tensor y = attn(x);
  at::Tensor n = at::group_norm(x, 2, attn->group_norm->weight, attn->group_norm->bias, 1e-6);
  at::Tensor tokens = n.flatten(2).transpose(1, 2);  // [1, 12, 8]
  at::Tensor q = at::linear(tokens, attn->to_q->weight, attn->to_q->bias);
  at::Tensor k = at::linear(tokens, attn->to_k->weight, attn->to_k->bias);
  at::Tensor v = at::linear(tokens, attn->to_v->weight, attn->to_v->bias);
  at::Tensor frame = at::arange(3, at::kLong).repeat_interleave(4);  // token -> frame
  at::Tensor allowed = frame.unsqueeze(1) >= frame.unsqueeze(0);     // query frame >= key frame
  at::Tensor scores = at::matmul(q, k.transpose(1, 2)) / std::sqrt(8.0);
  scores = scores.masked_fill(allowed.logical_not(), -INFINITY);
  at::Tensor out = at::matmul(at::softmax(scores, -1), v);
  out = at::linear(out, attn->out_proj->weight, attn->out_proj->bias);
  at::Tensor expected = out.transpose(1, 2).reshape(x.sizes()) + x;
  EXPECT_LE(rel_error(y, expected), 1e-12);
  // The output keeps the input's memory format (the decoder's layout holds through the block).
  EXPECT_TRUE(y.is_contiguous());
  at::Tensor y_cl = attn(x.contiguous(at::MemoryFormat::ChannelsLast3d));
  EXPECT_TRUE(y_cl.is_contiguous(at::MemoryFormat::ChannelsLast3d));
  EXPECT_LE(rel_error(y_cl, expected), 1e-12);
}

#ifdef DITBENCH_HAS_CUDA
// On the GPU in bf16, tiled and untiled decoding both stay within bf16 error of the fp32 CPU
// reference (see ../shared/fixtures/README.md: about 1e-2).
TEST(HunyuanVaeCuda, Bf16DecodeMatchesFixture) {
  if (!at::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto vae = load_hunyuan_video_vae_decoder(
      fixture_dir() + "/model", at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA));
  auto io = load_safetensors(fixture_dir() + "/io.safetensors");
  at::Tensor frames = vae->decode(io.at("input.latents").to(at::kCUDA));
  EXPECT_TRUE(frames.is_cuda());
  EXPECT_LE(rel_error(frames.cpu(), io.at("output.frames")), 2e-2);

  auto data = load_safetensors(data_dir() + "/hunyuan_vae_tiled.safetensors");
  vae->set_tiling(small_tiles(true));
  at::Tensor tiled = vae->decode(data.at("spatiotemporal.latents").to(at::kCUDA));
  EXPECT_LE(rel_error(tiled.cpu(), data.at("spatiotemporal.frames")), 2e-2);
}

// In float32 on the GPU, where the fused GroupNorm (+ SiLU) kernels serve every norm, the decode
// keeps the CPU's diffusers parity; the ATen path on the same GPU agrees with it.
TEST(HunyuanVaeCuda, Fp32DecodeWithFusedGroupNormMatchesDiffusers) {
  if (!at::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto vae = load_hunyuan_video_vae_decoder(
      fixture_dir() + "/model", at::TensorOptions().dtype(at::kFloat).device(at::kCUDA));
  auto io = load_safetensors(fixture_dir() + "/io.safetensors");
  vae->set_tiling(false);
  // Full float32 convolutions: TF32 rounds their inputs to 10 mantissa bits, where a last-bit
  // difference of a norm's output becomes one of 5e-4.
  const bool tf32 = at::globalContext().allowTF32CuDNN();
  at::globalContext().setAllowTF32CuDNN(false);
  const at::Tensor latents = io.at("input.latents").to(at::kCUDA);
  at::Tensor fused = vae->decode(latents).cpu();  // channels-last, the GPU default
  EXPECT_LE(rel_error(fused, io.at("output.frames")), 1e-4);
  vae->decoder->channels_last = false;
  at::Tensor fused_ncdhw = vae->decode(latents).cpu();
  set_fused_kernels_enabled(false);
  at::Tensor aten = vae->decode(latents).cpu();
  vae->decoder->channels_last = true;
  at::Tensor aten_channels_last = vae->decode(latents).cpu();
  set_fused_kernels_enabled(true);
  vae->decoder->channels_last.reset();
  at::globalContext().setAllowTF32CuDNN(tf32);
  EXPECT_LE(rel_error(fused_ncdhw, io.at("output.frames")), 1e-4);
  EXPECT_LE(rel_error(fused, aten), 1e-5);
  EXPECT_LE(rel_error(fused, fused_ncdhw), 1e-5);
  EXPECT_LE(rel_error(fused, aten_channels_last), 1e-5);
}

// The released decoder at HunyuanVideo's default 720x1280x129 with diffusers' default tiles in
// bf16 must fit an 80 GB card, in channels-last activations (the GPU default) and in ATen's
// default layout, which agree to bf16 precision; the times are printed. Minutes of GPU work:
// runs only with DITBENCH_LARGE_TESTS=1.
TEST(HunyuanVaeCuda, Released720pTiledDecodeFitsIn80GB) {
  if (!at::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const char* large = std::getenv("DITBENCH_LARGE_TESTS");
  if (!large || std::string(large) != "1") GTEST_SKIP() << "set DITBENCH_LARGE_TESTS=1";
  const auto options = at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA);
  AutoencoderKLHunyuanVideoDecoder vae(HunyuanVideoVAEConfig{}, options);
  random_init(*vae, 0);
  vae->set_tiling(true);
  // latents: [1, 16, (129 - 1) / 4 + 1, 720 / 8, 1280 / 8]
  at::Tensor latents = at::randn({1, 16, 33, 90, 160}, options);
  at::Tensor first;
  // Each layout twice: the first decode in a layout meets each tile shape's convolutions for the
  // first time (cuDNN's plans), the second is the steady state.
  for (bool channels_last : {true, false, true, false}) {
    vae->decoder->channels_last = channels_last;
    c10::cuda::CUDACachingAllocator::emptyCache();
    c10::cuda::CUDACachingAllocator::resetPeakStats(0);
    const auto start = std::chrono::steady_clock::now();
    at::Tensor frames = vae->decode(latents);
    at::cuda::getCurrentCUDAStream().synchronize();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
    const int64_t peak = stats.reserved_bytes[0].peak;  // aggregate over pools
    std::cout << "[ info ] 720x1280x129 bf16 tiled decode, "
              << (channels_last ? "channels-last" : "NCDHW") << ": " << seconds
              << " s, peak reserved " << peak / (1 << 20) << " MiB on "
              << at::cuda::getCurrentDeviceProperties()->name << "\n";
    ASSERT_EQ(frames.sizes(), (at::IntArrayRef{1, 3, 129, 720, 1280}));
    EXPECT_TRUE(at::isfinite(frames).all().item<bool>());
    EXPECT_LT(peak, int64_t{80} * 1000 * 1000 * 1000);
    if (!first.defined()) {
      first = frames;
    } else {
      EXPECT_LE(rel_error(frames.to(at::kFloat), first.to(at::kFloat)), 2e-2);
    }
  }
}
#endif

}  // namespace
}  // namespace ditbench
