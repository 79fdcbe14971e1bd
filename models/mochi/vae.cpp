#include "models/mochi/vae.h"

#include <torch/nn/modules/container/modulelist.h>

#include <string>
#include <utility>

#include "models/common/error.h"

namespace ditbench {
namespace {

constexpr int64_t kGroups = 32;
constexpr double kGroupNormEps = 1e-5;  // nn.GroupNorm's default

// Registers `count` resnets under "<name>.0", "<name>.1", ... of `parent`.
std::vector<MochiResnetBlock3D> register_resnets(torch::nn::Module& parent, int64_t channels,
                                                 int64_t count, const at::TensorOptions& options) {
  auto list = parent.register_module("resnets", torch::nn::ModuleList());
  std::vector<MochiResnetBlock3D> resnets;
  for (int64_t i = 0; i < count; ++i) {
    resnets.push_back(MochiResnetBlock3D(channels, options));
    list->push_back(resnets.back().ptr());
  }
  return resnets;
}

// A Linear over the channels of [B, C, F, H, W].
at::Tensor channel_linear(Linear& linear, const at::Tensor& x) {
  return linear(x.permute({0, 2, 3, 4, 1})).permute({0, 4, 1, 2, 3});
}

}  // namespace

MochiFrameGroupNormImpl::MochiFrameGroupNormImpl(int64_t channels,
                                                 const at::TensorOptions& options) {
  norm_layer = register_module("norm_layer", GroupNorm(kGroups, channels, kGroupNormEps, options));
}

at::Tensor MochiFrameGroupNormImpl::forward(const at::Tensor& x) {
  const int64_t batch = x.size(0), frames = x.size(2);
  auto frames_first = x.permute({0, 2, 1, 3, 4}).flatten(0, 1);  // [B F, C, H, W]
  return norm_layer(frames_first).unflatten(0, {batch, frames}).permute({0, 2, 1, 3, 4});
}

MochiResnetBlock3DImpl::MochiResnetBlock3DImpl(int64_t channels, const at::TensorOptions& options) {
  norm1 = register_module("norm1", MochiFrameGroupNorm(channels, options));
  conv1 = register_module("conv1",
                          CausalConv3d(channels, channels, Int3{3, 3, 3}, Int3{1, 1, 1}, options));
  norm2 = register_module("norm2", MochiFrameGroupNorm(channels, options));
  conv2 = register_module("conv2",
                          CausalConv3d(channels, channels, Int3{3, 3, 3}, Int3{1, 1, 1}, options));
}

at::Tensor MochiResnetBlock3DImpl::forward(const at::Tensor& x) {
  at::Tensor h = at::silu(norm1(x));  // [B, C, F, H, W]
  h = conv1(h);
  h = at::silu(norm2(h));
  h = conv2(h);
  return h.add_(x);
}

MochiMidBlock3DImpl::MochiMidBlock3DImpl(int64_t channels, int64_t num_layers,
                                         const at::TensorOptions& options) {
  resnets = register_resnets(*this, channels, num_layers, options);
}

at::Tensor MochiMidBlock3DImpl::forward(const at::Tensor& x) {
  at::Tensor h = x;
  for (auto& resnet : resnets) h = resnet(h);
  return h;
}

MochiUpBlock3DImpl::MochiUpBlock3DImpl(int64_t in_channels, int64_t out_channels,
                                       int64_t num_layers, int64_t temporal_expansion,
                                       int64_t spatial_expansion, const at::TensorOptions& options)
    : temporal_(temporal_expansion), spatial_(spatial_expansion) {
  resnets = register_resnets(*this, in_channels, num_layers, options);
  proj = register_module(
      "proj",
      Linear(in_channels, out_channels * temporal_expansion * spatial_expansion * spatial_expansion,
             true, options));
}

at::Tensor MochiUpBlock3DImpl::forward(const at::Tensor& x) {
  at::Tensor h = x;
  for (auto& resnet : resnets) h = resnet(h);
  h = channel_linear(proj, h);  // [B, C_out st s s, F, H, W], channels (C_out, st, sh, sw)
  const int64_t batch = h.size(0), frames = h.size(2), height = h.size(3), width = h.size(4);
  const int64_t st = temporal_, s = spatial_;
  return h.view({batch, -1, st, s, s, frames, height, width})
      .permute({0, 1, 5, 2, 6, 3, 7, 4})  // [B, C_out, F, st, H, sh, W, sw]
      .reshape({batch, -1, frames * st, height * s, width * s});
}

MochiDecoder3DImpl::MochiDecoder3DImpl(const MochiVAEConfig& config,
                                       const at::TensorOptions& options) {
  const auto& ch = config.decoder_block_out_channels;
  const auto& layers = config.layers_per_block;
  const auto blocks = static_cast<int64_t>(ch.size());
  conv_in = register_module(
      "conv_in", Conv3d(config.latent_channels, ch.back(), Int3{1, 1, 1}, Int3{1, 1, 1}, options));
  block_in = register_module("block_in", MochiMidBlock3D(ch.back(), layers.back(), options));
  auto list = register_module("up_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i + 1 < blocks; ++i) {
    // Up block i goes from ch[-i-1] to ch[-i-2] with the expansions listed last-first.
    const int64_t exp = static_cast<int64_t>(config.temporal_expansions.size()) - 1 - i;
    up_blocks.push_back(MochiUpBlock3D(ch[blocks - 1 - i], ch[blocks - 2 - i],
                                       layers[blocks - 1 - i], config.temporal_expansions[exp],
                                       config.spatial_expansions[exp], options));
    list->push_back(up_blocks.back().ptr());
  }
  block_out = register_module("block_out", MochiMidBlock3D(ch.front(), layers.front(), options));
  proj_out = register_module("proj_out", Linear(ch.front(), config.out_channels, true, options));
}

at::Tensor MochiDecoder3DImpl::forward(const at::Tensor& z) {
  at::Tensor h = block_in(conv_in(z));  // [B, C_max, F', H', W']
  for (auto& up : up_blocks) h = up(h);
  h = at::silu(block_out(h));          // [B, C_min, t F', s H', s W']
  return channel_linear(proj_out, h);  // [B, C_out, t F', s H', s W']
}

AutoencoderKLMochiDecoderImpl::AutoencoderKLMochiDecoderImpl(const MochiVAEConfig& config,
                                                             const at::TensorOptions& options)
    : config_(config) {
  config_.validate("MochiVAEConfig");
  decoder = register_module("decoder", MochiDecoder3D(config_, options));
}

void AutoencoderKLMochiDecoderImpl::set_tiling(bool enabled, const SpatialTiles& tiles) {
  const int64_t s = config_.spatial_compression_ratio();
  for (auto [size, stride] : {std::pair{tiles.min_height, tiles.stride_height},
                              std::pair{tiles.min_width, tiles.stride_width}}) {
    if (size <= 0 || stride <= 0 || size % s || stride % s || stride > size) {
      throw InputError("Mochi VAE tiling: tile " + std::to_string(size) + " and stride " +
                       std::to_string(stride) + " must be positive multiples of " +
                       std::to_string(s) + " with the stride no larger than the tile");
    }
  }
  tiling_ = enabled;
  tiles_ = tiles;
}

at::Tensor AutoencoderKLMochiDecoderImpl::decode_tile(const at::Tensor& z) {
  at::Tensor out = decoder(z);  // [B, C_out, t F', H, W]
  // The original implementation keeps frames t - 1 onwards: 1 + t (F' - 1) frames.
  const int64_t t = config_.temporal_compression_ratio();
  if (out.size(2) >= t) out = out.narrow(2, t - 1, out.size(2) - (t - 1));
  return out;
}

at::Tensor AutoencoderKLMochiDecoderImpl::decode(const at::Tensor& z) {
  const auto& w = decoder->proj_out->weight;
  const at::Tensor latents = z.to(w.device(), w.scalar_type());
  const int64_t s = config_.spatial_compression_ratio();
  if (tiling_ && needs_spatial_tiles(latents, tiles_, s)) {
    return spatial_tiled_decode(latents, tiles_, s,
                                [this](const at::Tensor& tile) { return decode_tile(tile); });
  }
  return decode_tile(latents);
}

}  // namespace ditbench
