#pragma once
// The 2-D AutoencoderKL of FLUX.1 (16 latent channels, 8x), decoder side only: `post_quant_conv`
// (when the config has one) and `decoder.*` under diffusers' key names, so the decoder part of a
// full AutoencoderKL checkpoint loads by name; diffusers' tiled decoding (enable_tiling()).
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "models/hunyuan_video/vae_layers.h"

namespace ditbench {

// diffusers' AutoencoderKL config. Defaults are FLUX.1-dev's vae/config.json.
struct AutoencoderKLConfig {
  int64_t in_channels = 3;  // encoder side; kept for completeness of the parsed config
  int64_t out_channels = 3;
  int64_t latent_channels = 16;
  std::vector<int64_t> block_out_channels = {128, 256, 512, 512};
  int64_t layers_per_block = 2;  // the decoder's up blocks hold layers_per_block + 1 resnets
  int64_t norm_num_groups = 32;
  int64_t sample_size = 1024;      // tile size of tiled decoding, in pixels
  double scaling_factor = 0.3611;  // the pipeline decodes latents / scaling_factor + shift_factor
  double shift_factor = 0.1159;    // null in config.json reads as 0
  bool use_post_quant_conv = false;
  bool mid_block_add_attention = true;

  // 2^(number of blocks - 1): 8 for the released VAE.
  int64_t spatial_compression_ratio() const {
    return int64_t{1} << (static_cast<int64_t>(block_out_channels.size()) - 1);
  }

  // Reads a diffusers vae/config.json (missing keys keep the defaults above, a null shift_factor
  // is 0). InputError names `source` and the key of a bad value; block types or activations other
  // than UpDecoderBlock2D / silu throw Unsupported.
  static AutoencoderKLConfig from_json(const nlohmann::json& json, const std::string& source);
  static AutoencoderKLConfig from_file(const std::string& path);
  void validate(const std::string& source) const;
};

// nn.Conv2d with `weight` [out, in, k, k] and `bias` [out], stride 1, zero padding k / 2.
class Conv2dImpl : public torch::nn::Module {
 public:
  Conv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel,
             const at::TensorOptions& options);
  // x: [B, C_in, H, W] -> [B, C_out, H, W]
  at::Tensor forward(const at::Tensor& x);

  at::Tensor weight, bias;

 private:
  int64_t padding_;
};
TORCH_MODULE(Conv2d);

// diffusers ResnetBlock2D (no time embedding): norm1 -> SiLU -> conv1 -> norm2 -> SiLU -> conv2,
// plus the input (through a 1x1 `conv_shortcut` when the channel count changes).
class ResnetBlock2DImpl : public torch::nn::Module {
 public:
  ResnetBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t groups, double eps,
                    const at::TensorOptions& options);
  // x: [B, C_in, H, W] -> [B, C_out, H, W]
  at::Tensor forward(const at::Tensor& x);

  GroupNorm norm1{nullptr}, norm2{nullptr};
  Conv2d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};
};
TORCH_MODULE(ResnetBlock2D);

// diffusers Upsample2D(use_conv=True): nearest 2x, then a 3x3 conv (key `conv`).
class Upsample2DImpl : public torch::nn::Module {
 public:
  Upsample2DImpl(int64_t channels, const at::TensorOptions& options);
  // x: [B, C, H, W] -> [B, C, 2H, 2W]
  at::Tensor forward(const at::Tensor& x);

  Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample2D);

// diffusers Decoder (prefix `decoder.`): conv_in, mid_block (resnets.0, attentions.0, resnets.1),
// up_blocks (UpDecoderBlock2D: resnets, upsamplers.0 except the last), conv_norm_out, SiLU,
// conv_out.
class AutoencoderKLDecoder2DImpl : public torch::nn::Module {
 public:
  AutoencoderKLDecoder2DImpl(const AutoencoderKLConfig& config, const at::TensorOptions& options);
  // z: [B, C_lat, h, w] -> [B, C_out, s h, s w]
  at::Tensor forward(const at::Tensor& z);

  Conv2d conv_in{nullptr}, conv_out{nullptr};
  GroupNorm conv_norm_out{nullptr};

 private:
  std::vector<ResnetBlock2D> mid_resnets_;
  std::vector<CausalFrameAttention> mid_attentions_;  // one frame: plain 2-D self-attention
  struct UpBlock {
    std::vector<ResnetBlock2D> resnets;
    Upsample2D upsampler{nullptr};
  };
  std::vector<UpBlock> up_blocks_;
};
TORCH_MODULE(AutoencoderKLDecoder2D);

class AutoencoderKLDecoderImpl : public torch::nn::Module {
 public:
  // Builds the decoder with uninitialised parameters created with `options` (device, dtype).
  AutoencoderKLDecoderImpl(const AutoencoderKLConfig& config,
                           const at::TensorOptions& options = {});

  // Decodes latents as given (no scaling: callers apply scaling_factor and shift_factor first).
  // z: [B, C_lat, h, w] -> [B, C_out, s h, s w], values about [-1, 1], in the parameters' dtype
  // and device. With tiling on, latents larger than a tile are decoded as diffusers'
  // AutoencoderKL.tiled_decode does (tiles of sample_size / s latents, 1/4 overlap, linear
  // blending of the overlaps).
  at::Tensor decode(const at::Tensor& z);
  void set_tiling(bool enabled) { tiling_ = enabled; }
  bool tiling() const { return tiling_; }
  const AutoencoderKLConfig& config() const { return config_; }

  Conv2d post_quant_conv{nullptr};  // absent unless use_post_quant_conv
  AutoencoderKLDecoder2D decoder{nullptr};

 private:
  at::Tensor decode_tile(const at::Tensor& z);
  at::Tensor tiled_decode(const at::Tensor& z);

  AutoencoderKLConfig config_;
  bool tiling_ = false;
};
TORCH_MODULE(AutoencoderKLDecoder);

// Builds the decoder from a diffusers `vae/` folder (config.json and the full VAE's safetensors,
// whose encoder.* and quant_conv.* keys are skipped). InputError names the file at fault.
AutoencoderKLDecoder load_autoencoder_kl_decoder(const std::string& vae_dir,
                                                 const at::TensorOptions& options = {});

}  // namespace ditbench
