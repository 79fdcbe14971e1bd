#pragma once
// CogVideoX's causal 3-D VAE, decoder side (diffusers AutoencoderKLCogVideoX: `decoder.*` and the
// optional `post_quant_conv`, under diffusers' key names). Decoding runs over batches of latent
// frames (the first batch takes the odd frame: 13 latent frames -> 3, 2, 2, 2, 2, 2), each causal
// convolution carrying its last input frames from one batch to the next, with diffusers' spatial
// tiling for the released sizes. Every normalisation is a spatial norm conditioned on the latents.
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <string>
#include <unordered_map>
#include <vector>

#include "models/cogvideox/config.h"
#include "models/cogvideox/transformer.h"
#include "models/common/vae_tiling.h"
#include "models/hunyuan_video/vae_layers.h"

namespace ditbench {

// Each causal convolution's last (kernel_t - 1) input frames from the previous frame batch.
using CogVideoXConvCache = std::unordered_map<const void*, at::Tensor>;

// Conv3d (submodule `conv`) whose time axis is padded in front with the cached frames of the
// previous batch, or with copies of the first frame at the start; zeros pad height and width.
class CogVideoXCausalConv3dImpl : public torch::nn::Module {
 public:
  CogVideoXCausalConv3dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel,
                            const at::TensorOptions& options);
  // x: [B, C_in, F, H, W] -> [B, C_out, F, H, W]; updates cache.
  at::Tensor forward(const at::Tensor& x, CogVideoXConvCache& cache);

  Conv3d conv{nullptr};
};
TORCH_MODULE(CogVideoXCausalConv3d);

// CogVideoXSpatialNorm3D: GroupNorm(f) * conv_y(zq) + conv_b(zq), zq the latents resized
// (nearest) to f's size, the first frame of an odd-length clip resized on its own.
class CogVideoXSpatialNorm3DImpl : public torch::nn::Module {
 public:
  CogVideoXSpatialNorm3DImpl(int64_t f_channels, int64_t zq_channels, int64_t groups,
                             const at::TensorOptions& options);
  // f: [B, C, F, H, W], zq: [B, C_z, F', H', W'] -> [B, C, F, H, W]
  at::Tensor forward(const at::Tensor& f, const at::Tensor& zq, CogVideoXConvCache& cache);

  GroupNorm norm_layer{nullptr};
  CogVideoXCausalConv3d conv_y{nullptr}, conv_b{nullptr};
};
TORCH_MODULE(CogVideoXSpatialNorm3D);

// CogVideoXResnetBlock3D of the decoder (spatial norms, no time embedding).
class CogVideoXResnetBlock3DImpl : public torch::nn::Module {
 public:
  CogVideoXResnetBlock3DImpl(int64_t in_channels, int64_t out_channels, int64_t zq_channels,
                             int64_t groups, const at::TensorOptions& options);
  // x: [B, C_in, F, H, W] -> [B, C_out, F, H, W]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& zq, CogVideoXConvCache& cache);

  CogVideoXSpatialNorm3D norm1{nullptr}, norm2{nullptr};
  CogVideoXCausalConv3d conv1{nullptr}, conv2{nullptr};
  Conv3d conv_shortcut{nullptr};  // 1x1x1, only when the channel count changes
};
TORCH_MODULE(CogVideoXResnetBlock3D);

// CogVideoXUpsample3D: nearest 2x in space (and in time when compress_time, the first frame of
// an odd-length clip kept single), then a per-frame Conv2d `conv` (3x3, padding 1).
class CogVideoXUpsample3DImpl : public torch::nn::Module {
 public:
  CogVideoXUpsample3DImpl(int64_t channels, bool compress_time, const at::TensorOptions& options);
  // x: [B, C, F, H, W] -> [B, C, F' , 2H, 2W], F' = F, 2F, or 1 + 2 (F - 1)
  at::Tensor forward(const at::Tensor& x);

  CogVideoXConv2d conv{nullptr};

 private:
  bool compress_time_;
};
TORCH_MODULE(CogVideoXUpsample3D);

// A mid block (resnets only) or an up block (resnets, then `upsamplers.0` when it has one).
class CogVideoXBlock3DImpl : public torch::nn::Module {
 public:
  CogVideoXBlock3DImpl(int64_t in_channels, int64_t out_channels, int64_t num_layers,
                       int64_t zq_channels, int64_t groups, bool add_upsample, bool compress_time,
                       const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& zq, CogVideoXConvCache& cache);

  std::vector<CogVideoXResnetBlock3D> resnets;
  CogVideoXUpsample3D upsampler{nullptr};
};
TORCH_MODULE(CogVideoXBlock3D);

// CogVideoXDecoder3D (prefix `decoder.`).
class CogVideoXDecoder3DImpl : public torch::nn::Module {
 public:
  CogVideoXDecoder3DImpl(const CogVideoXVAEConfig& config, const at::TensorOptions& options);
  // One frame batch. z: [B, C_lat, F', H', W'] -> [B, C_out, F, 8 H', 8 W']
  at::Tensor forward(const at::Tensor& z, CogVideoXConvCache& cache);

  CogVideoXCausalConv3d conv_in{nullptr}, conv_out{nullptr};
  CogVideoXBlock3D mid_block{nullptr};
  std::vector<CogVideoXBlock3D> up_blocks;
  CogVideoXSpatialNorm3D norm_out{nullptr};
};
TORCH_MODULE(CogVideoXDecoder3D);

class AutoencoderKLCogVideoXDecoderImpl : public torch::nn::Module {
 public:
  AutoencoderKLCogVideoXDecoderImpl(const CogVideoXVAEConfig& config,
                                    const at::TensorOptions& options = {});

  // Decodes latents as given (callers divide by scaling_factor first), tiled when tiling is on
  // and the latents are larger than a tile. z: [B, C_lat, F', H', W'] ->
  // [B, C_out, 1 + t (F' - 1), s H', s W'] in the parameters' dtype and device.
  at::Tensor decode(const at::Tensor& z);
  // diffusers' enable_tiling() / disable_tiling(): tiles of half the sample size, overlapping by
  // 1/6 of a tile vertically and 1/5 horizontally.
  void set_tiling(bool enabled) { tiling_ = enabled; }
  // Tile size in pixels (diffusers' enable_tiling(tile_sample_min_height, tile_sample_min_width);
  // default half the config's sample size). The blend over a tile's overlap is as wide as the
  // tile minus its stride, which is diffusers' int(tile * overlap factor) for the released tile
  // (240 x 360) and any size where the two agree; other sizes throw InputError.
  void set_tile_size(int64_t height, int64_t width);
  // Whether the current tile size blends as diffusers does (see set_tile_size).
  bool tiles_match_diffusers() const;
  bool tiling() const { return tiling_; }
  const CogVideoXVAEConfig& config() const { return config_; }

  Conv3d post_quant_conv{nullptr};
  CogVideoXDecoder3D decoder{nullptr};

 private:
  // Frame batches of 2 latent frames with the convolution caches carried along.
  at::Tensor decode_frames(const at::Tensor& z);
  SpatialTiles tiles() const;

  CogVideoXVAEConfig config_;
  bool tiling_ = false;
  int64_t tile_height_ = 0, tile_width_ = 0;
};
TORCH_MODULE(AutoencoderKLCogVideoXDecoder);

// Reads a diffusers `vae/` folder's config.json.
CogVideoXVAEConfig cogvideox_vae_config_from_dir(const std::string& vae_dir);
// Builds the decoder from a diffusers `vae/` folder (encoder.* and quant_conv.* keys skipped).
AutoencoderKLCogVideoXDecoder load_cogvideox_vae_decoder(const std::string& vae_dir,
                                                         const at::TensorOptions& options = {});

}  // namespace ditbench
