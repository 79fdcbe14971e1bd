#pragma once
// Mochi's VAE (diffusers AutoencoderKLMochi), decoder side only (`decoder.*` under diffusers' key
// names, so the decoder part of a full checkpoint loads by name): causal 3-D resnets with
// per-frame GroupNorm, linear depth-to-space upsampling in time and space, diffusers' spatial
// tiling, and the dropped leading frames of the original implementation.
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "models/common/vae_tiling.h"
#include "models/hunyuan_video/vae_layers.h"
#include "models/mochi/config.h"
#include "optimizations/quant/linear.h"

namespace ditbench {

// MochiChunkedGroupNorm3D: GroupNorm(32, C) applied to every frame on its own ("norm_layer").
class MochiFrameGroupNormImpl : public torch::nn::Module {
 public:
  MochiFrameGroupNormImpl(int64_t channels, const at::TensorOptions& options);
  // x: [B, C, F, H, W] -> [B, C, F, H, W]
  at::Tensor forward(const at::Tensor& x);

  GroupNorm norm_layer{nullptr};
};
TORCH_MODULE(MochiFrameGroupNorm);

// MochiResnetBlock3D: norm1, SiLU, conv1, norm2, SiLU, conv2 (causal, replicate-padded), plus x.
class MochiResnetBlock3DImpl : public torch::nn::Module {
 public:
  MochiResnetBlock3DImpl(int64_t channels, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x);  // [B, C, F, H, W]

  MochiFrameGroupNorm norm1{nullptr}, norm2{nullptr};
  CausalConv3d conv1{nullptr}, conv2{nullptr};
};
TORCH_MODULE(MochiResnetBlock3D);

// MochiMidBlock3D without attention (the decoder's block_in and block_out): resnets only.
class MochiMidBlock3DImpl : public torch::nn::Module {
 public:
  MochiMidBlock3DImpl(int64_t channels, int64_t num_layers, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x);  // [B, C, F, H, W]

  std::vector<MochiResnetBlock3D> resnets;
};
TORCH_MODULE(MochiMidBlock3D);

// MochiUpBlock3D: resnets, then a per-voxel Linear to out * st * sh * sw channels unfolded into
// time and space.
class MochiUpBlock3DImpl : public torch::nn::Module {
 public:
  MochiUpBlock3DImpl(int64_t in_channels, int64_t out_channels, int64_t num_layers,
                     int64_t temporal_expansion, int64_t spatial_expansion,
                     const at::TensorOptions& options);
  // x: [B, C_in, F, H, W] -> [B, C_out, st F, s H, s W]
  at::Tensor forward(const at::Tensor& x);

  std::vector<MochiResnetBlock3D> resnets;
  Linear proj{nullptr};

 private:
  int64_t temporal_, spatial_;
};
TORCH_MODULE(MochiUpBlock3D);

// MochiDecoder3D (prefix `decoder.`).
class MochiDecoder3DImpl : public torch::nn::Module {
 public:
  MochiDecoder3DImpl(const MochiVAEConfig& config, const at::TensorOptions& options);
  // z: [B, C_lat, F', H', W'] -> [B, C_out, t F', s H', s W']
  at::Tensor forward(const at::Tensor& z);

  Conv3d conv_in{nullptr};
  MochiMidBlock3D block_in{nullptr}, block_out{nullptr};
  std::vector<MochiUpBlock3D> up_blocks;
  Linear proj_out{nullptr};
};
TORCH_MODULE(MochiDecoder3D);

class AutoencoderKLMochiDecoderImpl : public torch::nn::Module {
 public:
  // Parameters uninitialised with `options`; the meta device gives the tree without memory.
  AutoencoderKLMochiDecoderImpl(const MochiVAEConfig& config,
                                const at::TensorOptions& options = {});

  // Decodes latents as given (callers denormalise with latents_mean/std first).
  // z: [B, C_lat, F', H', W'] -> [B, C_out, t (F' - 1) + 1, s H', s W'] (the first t - 1 decoded
  // frames are dropped, as diffusers' drop_last_temporal_frames does), values about [-1, 1], in
  // the parameters' dtype and device. Spatially tiled when tiling is on and a tile is exceeded.
  at::Tensor decode(const at::Tensor& z);

  // diffusers' enable_tiling(...) / disable_tiling() (off by default, as in diffusers). Tile
  // sizes must be positive multiples of the spatial ratio with strides no larger than the tiles
  // (InputError otherwise).
  void set_tiling(bool enabled, const SpatialTiles& tiles = {});
  bool tiling() const { return tiling_; }
  const SpatialTiles& tiles() const { return tiles_; }
  const MochiVAEConfig& config() const { return config_; }

  MochiDecoder3D decoder{nullptr};

 private:
  at::Tensor decode_tile(const at::Tensor& z);

  MochiVAEConfig config_;
  bool tiling_ = false;
  SpatialTiles tiles_;
};
TORCH_MODULE(AutoencoderKLMochiDecoder);

}  // namespace ditbench
