#pragma once
// HunyuanVideo's causal 3-D VAE, decoder side only (`post_quant_conv` and `decoder.*` under
// diffusers' key names, so the decoder part of a full AutoencoderKLHunyuanVideo checkpoint loads
// by name), with diffusers' spatial tiling and frame-wise (temporal) tiled decoding.
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "models/hunyuan_video/vae_layers.h"

namespace ditbench {

// diffusers' AutoencoderKLHunyuanVideo config. Defaults are the released VAE
// (hunyuanvideo-community/HunyuanVideo vae/config.json, equal to the diffusers class defaults).
struct HunyuanVideoVAEConfig {
  int64_t in_channels = 3;  // encoder side; kept for completeness of the parsed config
  int64_t out_channels = 3;
  int64_t latent_channels = 16;
  std::vector<int64_t> block_out_channels = {128, 256, 512, 512};
  int64_t layers_per_block = 2;  // the decoder's up blocks hold layers_per_block + 1 resnets
  int64_t norm_num_groups = 32;
  std::string act_fn = "silu";
  double scaling_factor = 0.476986;  // the pipeline decodes latents / scaling_factor
  int64_t spatial_compression_ratio = 8;
  int64_t temporal_compression_ratio = 4;
  bool mid_block_add_attention = true;

  // Reads a diffusers vae/config.json; missing keys keep the defaults above. Throws InputError
  // naming `source` and the JSON path of a bad value (and of a configuration diffusers rejects).
  static HunyuanVideoVAEConfig from_json(const nlohmann::json& json, const std::string& source);
  // Throws InputError (naming `source`) when the values cannot describe a decoder.
  void validate(const std::string& source) const;
};

// Tiled decoding as diffusers' AutoencoderKLHunyuanVideo does it; sizes are in sample (pixel /
// frame) units. Defaults are diffusers' `enable_tiling()` defaults. `spatial` is diffusers'
// `use_tiling` (off until enabled); `framewise` is `use_framewise_decoding`, which diffusers
// leaves on, so even an untiled decode of more than min_num_frames / 4 latent frames is split
// into overlapping temporal tiles.
struct HunyuanVideoVAETiling {
  bool spatial = false;
  bool framewise = true;
  int64_t min_height = 256, min_width = 256, min_num_frames = 16;
  int64_t stride_height = 192, stride_width = 192, stride_num_frames = 12;
};

// diffusers' HunyuanVideoDecoder3D (prefix `decoder.`): conv_in, mid_block, up_blocks,
// conv_norm_out, SiLU, conv_out.
class HunyuanVideoDecoder3DImpl : public torch::nn::Module {
 public:
  HunyuanVideoDecoder3DImpl(const HunyuanVideoVAEConfig& config, const at::TensorOptions& options);
  // z: [B, C_lat, F', H', W'] -> [B, C_out, 1 + t (F' - 1), s H', s W'] (contiguous)
  at::Tensor forward(const at::Tensor& z);

  // The activations' memory format: channels-last (NDHWC: cuDNN's convolutions run without
  // layout conversions and the GroupNorm and padding kernels read 16-byte channel vectors) when
  // true, ATen's default (NCDHW) when false; unset, channels-last on GPUs unless the environment
  // sets DITBENCH_VAE_CHANNELS_LAST=0. The convolutions' weights follow on the next forward
  // (converted once).
  std::optional<bool> channels_last;

  CausalConv3d conv_in{nullptr}, conv_out{nullptr};
  MidBlock3D mid_block{nullptr};
  torch::nn::ModuleList up_blocks;
  GroupNorm conv_norm_out{nullptr};

 private:
  std::optional<at::MemoryFormat> weights_format_;  // the convolutions' weights' layout
};
TORCH_MODULE(HunyuanVideoDecoder3D);

class AutoencoderKLHunyuanVideoDecoderImpl : public torch::nn::Module {
 public:
  // Builds the decoder with uninitialised parameters created with `options` (device, dtype);
  // the meta device gives the module tree without memory. Throws InputError on a bad config.
  AutoencoderKLHunyuanVideoDecoderImpl(const HunyuanVideoVAEConfig& config,
                                       const at::TensorOptions& options = {});

  // Decodes latents as given (no scaling: callers divide by config().scaling_factor first).
  // z: [B, C_lat, F', H', W'] -> [B, C_out, 1 + t (F' - 1), s H', s W'], values about [-1, 1],
  // in the parameters' dtype and device (z is moved there). Tiled per tiling().
  at::Tensor decode(const at::Tensor& z);

  // Spatial tiling on or off (diffusers' enable_tiling / disable_tiling).
  void set_tiling(bool enabled) { tiling_.spatial = enabled; }
  // Frame-wise (temporal) tiling, on by default as in diffusers.
  void set_framewise_decoding(bool enabled) { tiling_.framewise = enabled; }
  // Replaces tile sizes and flags; throws InputError when a size is not a positive multiple of
  // its compression ratio or a stride exceeds its tile.
  void set_tiling(const HunyuanVideoVAETiling& tiling);
  const HunyuanVideoVAETiling& tiling() const { return tiling_; }
  const HunyuanVideoVAEConfig& config() const { return config_; }

  Conv3d post_quant_conv{nullptr};
  HunyuanVideoDecoder3D decoder{nullptr};

 private:
  at::Tensor decode_untiled(const at::Tensor& z);
  at::Tensor spatial_tiled_decode(const at::Tensor& z);
  at::Tensor temporal_tiled_decode(const at::Tensor& z);

  HunyuanVideoVAEConfig config_;
  HunyuanVideoVAETiling tiling_;
};
TORCH_MODULE(AutoencoderKLHunyuanVideoDecoder);

// Builds the decoder from a diffusers `vae/` folder (config.json and the full VAE's safetensors,
// whose encoder.* and quant_conv.* keys are skipped) with parameters in `options`. Throws
// InputError naming the file at fault.
AutoencoderKLHunyuanVideoDecoder load_hunyuan_video_vae_decoder(
    const std::string& vae_dir, const at::TensorOptions& options = {});

}  // namespace ditbench
