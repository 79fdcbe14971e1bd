#pragma once
// Wan 2.1's causal 3-D VAE, decoder side only (`post_quant_conv` and `decoder.*` under diffusers'
// AutoencoderKLWan key names, so the decoder part of a full checkpoint loads by name). Decoding
// runs one latent frame at a time with diffusers' feature cache (each causal conv keeps the last
// two input frames of the previous chunk), with diffusers' spatial tiling.
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "models/common/vae_tiling.h"
#include "models/hunyuan_video/vae_layers.h"

namespace ditbench {

// diffusers' AutoencoderKLWan config; defaults are the released Wan2.1 VAE (Wan-AI/*-Diffusers
// vae/config.json, equal to the class defaults).
struct WanVAEConfig {
  int64_t base_dim = 96;
  int64_t decoder_base_dim = 0;  // 0 (null): base_dim
  int64_t z_dim = 16;
  std::vector<int64_t> dim_mult = {1, 2, 4, 4};
  int64_t num_res_blocks = 2;
  std::vector<bool> temperal_downsample = {false, true, true};  // diffusers' spelling
  std::vector<double> latents_mean = {-0.7571, -0.7089, -0.9113, 0.1075,  -0.1745, 0.9653,
                                      -0.1517, 1.5508,  0.4134,  -0.0715, 0.5517,  -0.3632,
                                      -0.1922, -0.9497, 0.2503,  -0.2921};
  std::vector<double> latents_std = {2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708,
                                     2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579,
                                     1.6382, 1.1253, 2.8251, 1.9160};
  int64_t out_channels = 3;
  int64_t scale_factor_temporal = 4;
  int64_t scale_factor_spatial = 8;
  bool is_residual = false;  // true in Wan 2.2's VAE (not built)
  int64_t patch_size = 0;    // 0 (null); Wan 2.2 patchifies (not built)

  int64_t decoder_dim() const { return decoder_base_dim > 0 ? decoder_base_dim : base_dim; }

  // Reads a diffusers vae/config.json; missing keys keep the defaults. InputError names `source`
  // and the key; Wan 2.2's residual / patchified VAE is Unsupported.
  static WanVAEConfig from_json(const nlohmann::json& j, const std::string& source);
  // A config.json file or a folder holding one.
  static WanVAEConfig from_file(const std::string& path);
  void validate(const std::string& source) const;
};

// The causal convs' feature cache of one decode pass (diffusers' feat_map / feat_idx): one slot per
// cached conv in call order, emptied before each video (or tile); `index` restarts at every chunk.
struct WanFeatureCache {
  struct Slot {
    at::Tensor frames;    // the last input frames of the previous chunk, or undefined
    bool repeat = false;  // upsample3d's first-chunk marker (diffusers' "Rep")
  };
  std::vector<Slot> slots;
  size_t index = 0;
  // The slot of the conv being called (created empty on first use); advances the index.
  Slot& next();
};

// diffusers WanCausalConv3d: an nn.Conv3d (keys `weight`, `bias`) whose time padding is causal
// (2·pad_t frames in front) and is replaced by cached frames of the previous chunk when given.
class WanCausalConv3dImpl : public Conv3dImpl {
 public:
  WanCausalConv3dImpl(int64_t in_channels, int64_t out_channels, Int3 kernel, Int3 padding,
                      const at::TensorOptions& options, Int3 stride = {1, 1, 1});
  // x: [B, C, T, H, W], cache: [B, C, t', H, W] or undefined -> [B, C_out, T', H, W]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cache = {});
  // A cached conv step: forward with the slot's frames, then the slot keeps the last two frames of
  // x (with the previous slot's last frame in front when x has only one).
  at::Tensor forward_cached(const at::Tensor& x, WanFeatureCache& cache);

 private:
  Int3 padding_;
};
TORCH_MODULE(WanCausalConv3d);

// diffusers WanRMS_norm: F.normalize over channels (float32 for half inputs) * sqrt(C) * gamma.
class WanRMSNormImpl : public torch::nn::Module {
 public:
  WanRMSNormImpl(int64_t dim, bool images, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x);  // x: [B, C, ...]
  at::Tensor gamma;                         // [C, 1, 1, 1] (video) or [C, 1, 1] (images)
};
TORCH_MODULE(WanRMSNorm);

class WanResidualBlockImpl : public torch::nn::Module {
 public:
  WanResidualBlockImpl(int64_t in_dim, int64_t out_dim, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x, WanFeatureCache& cache);

  WanRMSNorm norm1{nullptr}, norm2{nullptr};
  WanCausalConv3d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};
};
TORCH_MODULE(WanResidualBlock);

// Single-head self-attention over each frame's pixels (mid block).
class WanAttentionBlockImpl : public torch::nn::Module {
 public:
  WanAttentionBlockImpl(int64_t dim, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x);  // [B, C, T, H, W]

  WanRMSNorm norm{nullptr};
  at::Tensor to_qkv_weight, to_qkv_bias, proj_weight, proj_bias;  // 1x1 Conv2d
};
TORCH_MODULE(WanAttentionBlock);

// Nearest-exact 2x spatial upsampling and a 3x3 Conv2d to dim / 2 (`resample.1`), with (upsample3d)
// a causal time conv doubling the frames (`time_conv`) after the first chunk.
class WanResampleImpl : public torch::nn::Module {
 public:
  WanResampleImpl(int64_t dim, bool temporal, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x, WanFeatureCache& cache);

  at::Tensor conv_weight, conv_bias;   // resample.1: Conv2d(dim, dim / 2, 3, padding 1)
  WanCausalConv3d time_conv{nullptr};  // upsample3d only
};
TORCH_MODULE(WanResample);

class WanDecoder3dImpl : public torch::nn::Module {
 public:
  WanDecoder3dImpl(const WanVAEConfig& config, const at::TensorOptions& options);
  // One chunk (one latent frame) through the decoder with the feature cache.
  at::Tensor forward(const at::Tensor& x, WanFeatureCache& cache);

  WanCausalConv3d conv_in{nullptr}, conv_out{nullptr};
  std::vector<WanResidualBlock> mid_resnets;
  WanAttentionBlock mid_attention{nullptr};
  std::vector<std::vector<WanResidualBlock>> up_resnets;
  std::vector<WanResample> upsamplers;  // null where a block does not upsample
  WanRMSNorm norm_out{nullptr};
};
TORCH_MODULE(WanDecoder3d);

class AutoencoderKLWanDecoderImpl : public torch::nn::Module {
 public:
  AutoencoderKLWanDecoderImpl(const WanVAEConfig& config, const at::TensorOptions& options = {});

  // Decodes latents as given (no mean/std: the pipeline applies them first), clamped to [-1, 1].
  // z: [B, z_dim, F', H', W'] -> [B, 3, 1 + 4 (F' − 1), 8 H', 8 W'] in the parameters' dtype.
  at::Tensor decode(const at::Tensor& z);

  // diffusers' enable_tiling() with its default tile sizes (256 px tiles, stride 192): only frames
  // larger than a tile are tiled, so small videos decode exactly as untiled.
  void set_tiling(bool enabled) { tiling_ = enabled; }
  // Tiling on with other tile sizes (pixels, multiples of the spatial ratio; InputError otherwise).
  void set_tiling(const SpatialTiles& tiles);
  const WanVAEConfig& config() const { return config_; }

  WanCausalConv3d post_quant_conv{nullptr};
  WanDecoder3d decoder{nullptr};

 private:
  // Frame-by-frame decode of z (one tile) with a fresh feature cache, unclamped.
  at::Tensor decode_frames(const at::Tensor& z);

  WanVAEConfig config_;
  bool tiling_ = false;
  SpatialTiles tiles_;
};
TORCH_MODULE(AutoencoderKLWanDecoder);

}  // namespace ditbench
