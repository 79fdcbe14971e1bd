#pragma once
// CogVideoX configurations: diffusers' CogVideoXTransformer3DModel and AutoencoderKLCogVideoX
// config.json, with the released CogVideoX-2b values as defaults (models.md §4.1, §4.7).
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace ditbench {

struct CogVideoXConfig {
  int64_t in_channels = 16;
  int64_t out_channels = 16;
  int64_t num_attention_heads = 30;
  int64_t attention_head_dim = 64;  // D = heads * head_dim = 1920
  int64_t num_layers = 30;
  int64_t time_embed_dim = 512;
  int64_t text_embed_dim = 4096;      // T5-XXL hidden states
  int64_t max_text_seq_length = 226;  // text rows of the joint sequence (zero positional rows)
  bool flip_sin_to_cos = true;
  int64_t freq_shift = 0;
  bool attention_bias = true;
  bool patch_bias = true;
  int64_t sample_width = 90;  // latent size the positional tables are centred on
  int64_t sample_height = 60;
  int64_t sample_frames = 49;
  int64_t patch_size = 2;
  int64_t patch_size_t = 0;  // 0 = null (1.0 checkpoints); CogVideoX 1.5 is not built
  int64_t temporal_compression_ratio = 4;
  std::string activation_fn = "gelu-approximate";
  std::string timestep_activation_fn = "silu";
  bool norm_elementwise_affine = true;
  double norm_eps = 1e-5;
  double spatial_interpolation_scale = 1.875;
  double temporal_interpolation_scale = 1.0;
  bool use_rotary_positional_embeddings = false;   // true for CogVideoX-5b
  bool use_learned_positional_embeddings = false;  // true only for the 5b image-to-video model
  int64_t ofs_embed_dim = 0;                       // 0 = null (1.5 I2V only)

  int64_t inner_dim() const { return num_attention_heads * attention_head_dim; }

  // Reads a diffusers config.json object; missing keys keep the defaults above, a wrong type or
  // value throws InputError naming `source` and the key, and a valid configuration this build
  // cannot run (patch_size_t, learned positions, ofs embedding) throws Unsupported.
  static CogVideoXConfig from_json(const nlohmann::json& j, const std::string& source);
  // Reads `path` (a config.json file, or a folder holding one).
  static CogVideoXConfig from_file(const std::string& path);
  void validate(const std::string& source) const;
};

// Named configurations: "cogvideox-2b" and "cogvideox-5b" (released), "cogvideox-tiny" (a few
// thousand parameters, 2b-style sin-cos positions, for CPU tests). InputError lists the names.
CogVideoXConfig cogvideox_preset(const std::string& name);
std::vector<std::string> cogvideox_preset_names();

// diffusers' AutoencoderKLCogVideoX config (decoder side). Defaults are the released VAE
// (THUDM/CogVideoX-2b vae/config.json; 5b differs only in scaling_factor 0.7).
struct CogVideoXVAEConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  int64_t latent_channels = 16;
  std::vector<int64_t> block_out_channels = {128, 256, 256, 512};
  int64_t layers_per_block = 3;  // the decoder's up blocks hold layers_per_block + 1 resnets
  int64_t norm_num_groups = 32;
  double norm_eps = 1e-6;
  std::string act_fn = "silu";
  int64_t temporal_compression_ratio = 4;
  int64_t sample_height = 480;  // tiles are half of these (diffusers' tile_sample_min_*)
  int64_t sample_width = 720;
  double scaling_factor = 1.15258426;
  bool use_post_quant_conv = false;
  bool invert_scale_latents = false;

  int64_t spatial_compression_ratio() const {
    return int64_t{1} << (block_out_channels.size() - 1);
  }

  static CogVideoXVAEConfig from_json(const nlohmann::json& j, const std::string& source);
  void validate(const std::string& source) const;
};

}  // namespace ditbench
