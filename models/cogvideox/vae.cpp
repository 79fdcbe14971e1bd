#include "models/cogvideox/vae.h"

#include <nlohmann/json.hpp>

#include <filesystem>

#include "models/checkpoint/checkpoint.h"
#include "models/common/error.h"
#include "models/common/json_config.h"
#include "models/common/layers.h"
#include "models/common/vae_tiling.h"

namespace ditbench {
namespace {

constexpr double kSpatialNormEps = 1e-6;  // diffusers fixes it, whatever the config's norm_eps
constexpr int64_t kLatentFrameBatch = 2;  // diffusers' num_latent_frames_batch_size

// Nearest resize of a [B, C, F, H, W] tensor to (F, H, W), as F.interpolate(size=...).
at::Tensor resize_nearest(const at::Tensor& x, int64_t frames, int64_t height, int64_t width) {
  return at::upsample_nearest3d(x, {frames, height, width}, std::nullopt, std::nullopt,
                                std::nullopt);
}

}  // namespace

// ---- layers ----

CogVideoXCausalConv3dImpl::CogVideoXCausalConv3dImpl(int64_t in_channels, int64_t out_channels,
                                                     int64_t kernel,
                                                     const at::TensorOptions& options) {
  conv = register_module("conv", Conv3d(in_channels, out_channels, Int3{kernel, kernel, kernel},
                                        Int3{1, 1, 1}, options));
}

at::Tensor CogVideoXCausalConv3dImpl::forward(const at::Tensor& x, CogVideoXConvCache& cache) {
  const auto& k = conv->kernel;
  at::Tensor input = x;
  if (k[0] > 1) {
    // [cached frames | x], or (kt - 1) copies of the first frame at the start of the clip.
    auto it = cache.find(this);
    at::Tensor front =
        it != cache.end() ? it->second : x.narrow(2, 0, 1).expand({-1, -1, k[0] - 1, -1, -1});
    input = at::cat({front, x}, 2);  // [B, C, F + kt - 1, H, W]
    cache[this] = input.narrow(2, input.size(2) - (k[0] - 1), k[0] - 1).clone();
  }
  return at::conv3d(input, conv->weight, conv->bias, {1, 1, 1}, {0, k[1] / 2, k[2] / 2});
}

CogVideoXSpatialNorm3DImpl::CogVideoXSpatialNorm3DImpl(int64_t f_channels, int64_t zq_channels,
                                                       int64_t groups,
                                                       const at::TensorOptions& options) {
  norm_layer =
      register_module("norm_layer", GroupNorm(groups, f_channels, kSpatialNormEps, options));
  conv_y = register_module("conv_y", CogVideoXCausalConv3d(zq_channels, f_channels, 1, options));
  conv_b = register_module("conv_b", CogVideoXCausalConv3d(zq_channels, f_channels, 1, options));
}

at::Tensor CogVideoXSpatialNorm3DImpl::forward(const at::Tensor& f, const at::Tensor& zq,
                                               CogVideoXConvCache& cache) {
  const int64_t frames = f.size(2), h = f.size(3), w = f.size(4);
  at::Tensor z;
  if (frames > 1 && frames % 2 == 1) {
    z = at::cat({resize_nearest(zq.narrow(2, 0, 1), 1, h, w),
                 resize_nearest(zq.narrow(2, 1, zq.size(2) - 1), frames - 1, h, w)},
                2);
  } else {
    z = resize_nearest(zq, frames, h, w);
  }
  return norm_layer(f) * conv_y(z, cache) + conv_b(z, cache);
}

CogVideoXResnetBlock3DImpl::CogVideoXResnetBlock3DImpl(int64_t in_channels, int64_t out_channels,
                                                       int64_t zq_channels, int64_t groups,
                                                       const at::TensorOptions& options) {
  norm1 =
      register_module("norm1", CogVideoXSpatialNorm3D(in_channels, zq_channels, groups, options));
  conv1 = register_module("conv1", CogVideoXCausalConv3d(in_channels, out_channels, 3, options));
  norm2 =
      register_module("norm2", CogVideoXSpatialNorm3D(out_channels, zq_channels, groups, options));
  conv2 = register_module("conv2", CogVideoXCausalConv3d(out_channels, out_channels, 3, options));
  if (in_channels != out_channels) {
    conv_shortcut = register_module(
        "conv_shortcut", Conv3d(in_channels, out_channels, Int3{1, 1, 1}, Int3{1, 1, 1}, options));
  }
}

at::Tensor CogVideoXResnetBlock3DImpl::forward(const at::Tensor& x, const at::Tensor& zq,
                                               CogVideoXConvCache& cache) {
  auto h = conv1(at::silu(norm1(x, zq, cache)), cache);
  h = conv2(at::silu(norm2(h, zq, cache)), cache);
  return h + (conv_shortcut ? conv_shortcut(x) : x);
}

CogVideoXUpsample3DImpl::CogVideoXUpsample3DImpl(int64_t channels, bool compress_time,
                                                 const at::TensorOptions& options)
    : compress_time_(compress_time) {
  conv = register_module("conv", CogVideoXConv2d(channels, channels, 3, 1, 1, options));
}

at::Tensor CogVideoXUpsample3DImpl::forward(const at::Tensor& x) {
  const int64_t frames = x.size(2), h = x.size(3), w = x.size(4);
  at::Tensor up;
  if (compress_time_ && frames > 1 && frames % 2 == 1) {
    // The first frame is only up-sampled in space: F -> 1 + 2 (F - 1).
    up = at::cat({resize_nearest(x.narrow(2, 0, 1), 1, 2 * h, 2 * w),
                  resize_nearest(x.narrow(2, 1, frames - 1), 2 * (frames - 1), 2 * h, 2 * w)},
                 2);
  } else if (compress_time_ && frames > 1) {
    up = resize_nearest(x, 2 * frames, 2 * h, 2 * w);
  } else {
    up = resize_nearest(x, frames, 2 * h, 2 * w);
  }
  // Per-frame 3x3 convolution: [B, C, F, H, W] -> [B*F, C, H, W] and back.
  const int64_t b = up.size(0), c = up.size(1), f = up.size(2);
  auto y = conv(up.permute({0, 2, 1, 3, 4}).reshape({b * f, c, up.size(3), up.size(4)}));
  return y.reshape({b, f, y.size(1), y.size(2), y.size(3)}).permute({0, 2, 1, 3, 4});
}

CogVideoXBlock3DImpl::CogVideoXBlock3DImpl(int64_t in_channels, int64_t out_channels,
                                           int64_t num_layers, int64_t zq_channels, int64_t groups,
                                           bool add_upsample, bool compress_time,
                                           const at::TensorOptions& options) {
  int64_t in = in_channels;
  resnets = register_module_list<CogVideoXResnetBlock3D>(*this, "resnets", num_layers, [&] {
    auto block = CogVideoXResnetBlock3D(in, out_channels, zq_channels, groups, options);
    in = out_channels;
    return block;
  });
  if (add_upsample) {
    auto list = register_module("upsamplers", std::make_shared<torch::nn::Module>());
    upsampler =
        list->register_module("0", CogVideoXUpsample3D(out_channels, compress_time, options));
  }
}

at::Tensor CogVideoXBlock3DImpl::forward(const at::Tensor& x, const at::Tensor& zq,
                                         CogVideoXConvCache& cache) {
  at::Tensor h = x;
  for (auto& resnet : resnets) h = resnet(h, zq, cache);
  return upsampler ? upsampler(h) : h;
}

CogVideoXDecoder3DImpl::CogVideoXDecoder3DImpl(const CogVideoXVAEConfig& config,
                                               const at::TensorOptions& options) {
  const std::vector<int64_t> channels(config.block_out_channels.rbegin(),
                                      config.block_out_channels.rend());
  const int64_t groups = config.norm_num_groups, zq = config.latent_channels;
  conv_in = register_module("conv_in", CogVideoXCausalConv3d(zq, channels.front(), 3, options));
  mid_block = register_module("mid_block", CogVideoXBlock3D(channels.front(), channels.front(), 2,
                                                            zq, groups, false, false, options));
  int64_t temporal_levels = 0;
  for (int64_t t = config.temporal_compression_ratio; t > 1; t /= 2) ++temporal_levels;
  int64_t in = channels.front();
  size_t i = 0;
  up_blocks = register_module_list<CogVideoXBlock3D>(
      *this, "up_blocks", static_cast<int64_t>(channels.size()), [&] {
        const bool last = i + 1 == channels.size();
        auto block = CogVideoXBlock3D(in, channels[i], config.layers_per_block + 1, zq, groups,
                                      !last, static_cast<int64_t>(i) < temporal_levels, options);
        in = channels[i++];
        return block;
      });
  norm_out =
      register_module("norm_out", CogVideoXSpatialNorm3D(channels.back(), zq, groups, options));
  conv_out = register_module(
      "conv_out", CogVideoXCausalConv3d(channels.back(), config.out_channels, 3, options));
}

at::Tensor CogVideoXDecoder3DImpl::forward(const at::Tensor& z, CogVideoXConvCache& cache) {
  auto h = conv_in(z, cache);
  h = mid_block(h, z, cache);
  for (auto& block : up_blocks) h = block(h, z, cache);
  return conv_out(at::silu(norm_out(h, z, cache)), cache);
}

// ---- the decoder ----

AutoencoderKLCogVideoXDecoderImpl::AutoencoderKLCogVideoXDecoderImpl(
    const CogVideoXVAEConfig& config, const at::TensorOptions& options)
    : config_(config) {
  config_.validate("CogVideoXVAEConfig");
  if (config_.use_post_quant_conv) {
    post_quant_conv =
        register_module("post_quant_conv", Conv3d(config_.latent_channels, config_.latent_channels,
                                                  Int3{1, 1, 1}, Int3{1, 1, 1}, options));
  }
  decoder = register_module("decoder", CogVideoXDecoder3D(config_, options));
}

at::Tensor AutoencoderKLCogVideoXDecoderImpl::decode_frames(const at::Tensor& z) {
  // Batches of 2 latent frames, the first also taking the odd one: [0, 2 + r), [2 + r, 4 + r), ...
  const int64_t frames = z.size(2);
  const int64_t batches = std::max<int64_t>(frames / kLatentFrameBatch, 1);
  const int64_t remainder = frames % kLatentFrameBatch;
  CogVideoXConvCache cache;
  std::vector<at::Tensor> decoded;
  for (int64_t k = 0; k < batches; ++k) {
    const int64_t start = kLatentFrameBatch * k + (k == 0 ? 0 : remainder);
    const int64_t end = std::min(kLatentFrameBatch * (k + 1) + remainder, frames);
    at::Tensor part = z.narrow(2, start, end - start);
    if (post_quant_conv) part = post_quant_conv(part);
    decoded.push_back(decoder(part, cache));
  }
  return at::cat(decoded, 2);
}

at::Tensor AutoencoderKLCogVideoXDecoderImpl::decode(const at::Tensor& z_in) {
  const auto& w = decoder->conv_in->conv->weight;
  if (z_in.dim() != 5 || z_in.size(1) != config_.latent_channels) {
    throw InputError("latents: expected [B, " + std::to_string(config_.latent_channels) +
                     ", F, H, W] for the CogVideoX VAE, got " + c10::str(z_in.sizes()));
  }
  const at::Tensor z = z_in.to(w.device(), w.scalar_type());
  const int64_t s = config_.spatial_compression_ratio();
  const SpatialTiles tiles = this->tiles();
  if (tiling_ && needs_spatial_tiles(z, tiles, s)) {
    return spatial_tiled_decode(z, tiles, s, [&](const at::Tensor& t) { return decode_frames(t); });
  }
  return decode_frames(z);
}

SpatialTiles AutoencoderKLCogVideoXDecoderImpl::tiles() const {
  // diffusers: strides of int(tile_latent * (1 - overlap)) latents, overlap 1/6 high, 1/5 wide.
  const int64_t s = config_.spatial_compression_ratio();
  SpatialTiles tiles;
  tiles.min_height = tile_height_ > 0 ? tile_height_ : config_.sample_height / 2;
  tiles.min_width = tile_width_ > 0 ? tile_width_ : config_.sample_width / 2;
  tiles.stride_height = static_cast<int64_t>(tiles.min_height / s * (1 - 1.0 / 6)) * s;
  tiles.stride_width = static_cast<int64_t>(tiles.min_width / s * (1 - 1.0 / 5)) * s;
  return tiles;
}

bool AutoencoderKLCogVideoXDecoderImpl::tiles_match_diffusers() const {
  // diffusers blends over int(tile * factor) pixels; the shared tiler over tile - stride.
  const SpatialTiles t = tiles();
  return t.stride_height > 0 && t.stride_width > 0 &&
         static_cast<int64_t>(static_cast<double>(t.min_height) / 6) ==
             t.min_height - t.stride_height &&
         static_cast<int64_t>(static_cast<double>(t.min_width) / 5) == t.min_width - t.stride_width;
}

void AutoencoderKLCogVideoXDecoderImpl::set_tile_size(int64_t height, int64_t width) {
  const int64_t old_h = tile_height_, old_w = tile_width_;
  tile_height_ = height;
  tile_width_ = width;
  if (height <= 0 || width <= 0 || !tiles_match_diffusers()) {
    tile_height_ = old_h;
    tile_width_ = old_w;
    throw InputError("CogVideoX VAE tile " + std::to_string(height) + "x" + std::to_string(width) +
                     ": not a tile size whose overlap diffusers blends over (e.g. 240x360, 48x40)");
  }
}

CogVideoXVAEConfig cogvideox_vae_config_from_dir(const std::string& vae_dir) {
  const auto file = (std::filesystem::path(vae_dir) / "config.json").string();
  return CogVideoXVAEConfig::from_json(read_config_file(vae_dir), file);
}

AutoencoderKLCogVideoXDecoder load_cogvideox_vae_decoder(const std::string& vae_dir,
                                                         const at::TensorOptions& options) {
  AutoencoderKLCogVideoXDecoder vae(cogvideox_vae_config_from_dir(vae_dir), options);
  load_module(*vae, Checkpoint::open(vae_dir), {"encoder.", "quant_conv."});
  return vae;
}

}  // namespace ditbench
