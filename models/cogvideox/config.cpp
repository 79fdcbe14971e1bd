#include "models/cogvideox/config.h"

#include <nlohmann/json.hpp>

#include "models/common/error.h"
#include "models/common/json_config.h"

namespace ditbench {

CogVideoXConfig CogVideoXConfig::from_json(const nlohmann::json& j, const std::string& source) {
  require_config_object(j, source);
  CogVideoXConfig c;
  read_config_int(j, source, "in_channels", c.in_channels);
  c.out_channels = c.in_channels;  // null means "same as in_channels"
  read_config_nullable_int(j, source, "out_channels", c.out_channels);
  read_config_ints(j, source,
                   {{"num_attention_heads", &c.num_attention_heads},
                    {"attention_head_dim", &c.attention_head_dim},
                    {"num_layers", &c.num_layers},
                    {"time_embed_dim", &c.time_embed_dim},
                    {"text_embed_dim", &c.text_embed_dim},
                    {"max_text_seq_length", &c.max_text_seq_length}});
  read_config_bool(j, source, "flip_sin_to_cos", c.flip_sin_to_cos);
  read_config_int(j, source, "freq_shift", c.freq_shift);
  read_config_bool(j, source, "attention_bias", c.attention_bias);
  read_config_bool(j, source, "patch_bias", c.patch_bias);
  read_config_ints(j, source,
                   {{"sample_width", &c.sample_width},
                    {"sample_height", &c.sample_height},
                    {"sample_frames", &c.sample_frames},
                    {"patch_size", &c.patch_size}});
  read_config_nullable_int(j, source, "patch_size_t", c.patch_size_t);  // null: 0
  read_config_int(j, source, "temporal_compression_ratio", c.temporal_compression_ratio);
  read_config_string(j, source, "activation_fn", c.activation_fn);
  read_config_string(j, source, "timestep_activation_fn", c.timestep_activation_fn);
  read_config_bool(j, source, "norm_elementwise_affine", c.norm_elementwise_affine);
  read_config_double(j, source, "norm_eps", c.norm_eps);
  read_config_double(j, source, "spatial_interpolation_scale", c.spatial_interpolation_scale);
  read_config_double(j, source, "temporal_interpolation_scale", c.temporal_interpolation_scale);
  read_config_bool(j, source, "use_rotary_positional_embeddings",
                   c.use_rotary_positional_embeddings);
  read_config_bool(j, source, "use_learned_positional_embeddings",
                   c.use_learned_positional_embeddings);
  read_config_nullable_int(j, source, "ofs_embed_dim", c.ofs_embed_dim);  // null: 0
  double dropout = 0;
  read_config_double(j, source, "dropout", dropout);  // identity at inference
  c.validate(source);
  return c;
}

CogVideoXConfig CogVideoXConfig::from_file(const std::string& path) {
  return config_from_file<CogVideoXConfig>(path);
}

void CogVideoXConfig::validate(const std::string& source) const {
  require_positive(source, {{"in_channels", in_channels},
                            {"out_channels", out_channels},
                            {"num_attention_heads", num_attention_heads},
                            {"attention_head_dim", attention_head_dim},
                            {"time_embed_dim", time_embed_dim},
                            {"text_embed_dim", text_embed_dim},
                            {"max_text_seq_length", max_text_seq_length},
                            {"sample_width", sample_width},
                            {"sample_height", sample_height},
                            {"sample_frames", sample_frames},
                            {"patch_size", patch_size},
                            {"temporal_compression_ratio", temporal_compression_ratio}});
  if (num_layers < 0) {
    throw InputError(source + ": key 'num_layers' must be >= 0, got " + std::to_string(num_layers));
  }
  if (!(norm_eps > 0)) throw InputError(source + ": key 'norm_eps' must be positive");
  if (!(spatial_interpolation_scale > 0) || !(temporal_interpolation_scale > 0)) {
    throw InputError(source + ": the interpolation scales must be positive");
  }
  if (!use_rotary_positional_embeddings && inner_dim() % 4 != 0) {
    throw InputError(source +
                     ": sin-cos positions need num_attention_heads * attention_head_dim (" +
                     std::to_string(inner_dim()) + ") divisible by 4");
  }
  if (use_rotary_positional_embeddings && attention_head_dim % 16 != 0) {
    // t gets head_dim / 4, h and w 3 head_dim / 8 each, all of them even.
    throw InputError(source + ": rotary positions need attention_head_dim divisible by 16, got " +
                     std::to_string(attention_head_dim));
  }
  if (activation_fn != "gelu-approximate") {
    throw Unsupported(source + ": activation_fn '" + activation_fn +
                      "' is not implemented (only 'gelu-approximate')");
  }
  if (timestep_activation_fn != "silu") {
    throw Unsupported(source + ": timestep_activation_fn '" + timestep_activation_fn +
                      "' is not implemented (only 'silu')");
  }
  if (!norm_elementwise_affine) {
    throw Unsupported(source + ": norm_elementwise_affine false is not implemented");
  }
  if (!attention_bias || !patch_bias) {
    throw Unsupported(source + ": attention_bias and patch_bias false are not implemented");
  }
  if (patch_size_t != 0) {
    throw Unsupported(source + ": patch_size_t " + std::to_string(patch_size_t) +
                      " (CogVideoX 1.5) is not implemented");
  }
  if (use_learned_positional_embeddings) {
    throw Unsupported(source +
                      ": use_learned_positional_embeddings (image-to-video) is not implemented");
  }
  if (ofs_embed_dim != 0) {
    throw Unsupported(source + ": ofs_embed_dim (CogVideoX 1.5 image-to-video) is not implemented");
  }
}

std::vector<std::string> cogvideox_preset_names() {
  return {"cogvideox-2b", "cogvideox-5b", "cogvideox-tiny"};
}

CogVideoXConfig cogvideox_preset(const std::string& name) {
  if (name == "cogvideox-2b") return CogVideoXConfig{};
  if (name == "cogvideox-5b") {
    CogVideoXConfig c;
    c.num_attention_heads = 48;
    c.num_layers = 42;
    c.use_rotary_positional_embeddings = true;
    return c;
  }
  if (name == "cogvideox-tiny") {
    CogVideoXConfig c;
    c.in_channels = 4;
    c.out_channels = 4;
    c.num_attention_heads = 2;
    c.attention_head_dim = 16;
    c.num_layers = 2;
    c.time_embed_dim = 8;
    c.text_embed_dim = 24;
    c.max_text_seq_length = 7;
    c.sample_width = 8;
    c.sample_height = 8;
    c.sample_frames = 9;
    return c;
  }
  unknown_preset("CogVideoX", name, cogvideox_preset_names());
}

CogVideoXVAEConfig CogVideoXVAEConfig::from_json(const nlohmann::json& j,
                                                 const std::string& source) {
  require_config_object(j, source);
  CogVideoXVAEConfig c;
  read_config_ints(j, source,
                   {{"in_channels", &c.in_channels},
                    {"out_channels", &c.out_channels},
                    {"latent_channels", &c.latent_channels}});
  read_config_list(j, source, "block_out_channels", c.block_out_channels);
  read_config_ints(
      j, source,
      {{"layers_per_block", &c.layers_per_block}, {"norm_num_groups", &c.norm_num_groups}});
  read_config_double(j, source, "norm_eps", c.norm_eps);
  read_config_string(j, source, "act_fn", c.act_fn);
  // diffusers types it as a float; released configs write 4 or 4.0.
  double temporal = static_cast<double>(c.temporal_compression_ratio);
  read_config_double(j, source, "temporal_compression_ratio", temporal);
  c.temporal_compression_ratio = static_cast<int64_t>(temporal);
  if (static_cast<double>(c.temporal_compression_ratio) != temporal) {
    bad_config_key(source, "temporal_compression_ratio", "a power of two",
                   j.at("temporal_compression_ratio"));
  }
  read_config_ints(j, source,
                   {{"sample_height", &c.sample_height}, {"sample_width", &c.sample_width}});
  read_config_double(j, source, "scaling_factor", c.scaling_factor);
  read_config_bool(j, source, "use_post_quant_conv", c.use_post_quant_conv);
  read_config_bool(j, source, "invert_scale_latents", c.invert_scale_latents);
  if (j.contains("up_block_types")) {
    const auto& types = j.at("up_block_types");
    if (!types.is_array()) bad_config_key(source, "up_block_types", "a list of strings", types);
    for (const auto& t : types) {
      if (t != "CogVideoXUpBlock3D") {
        throw Unsupported(source + ": up_block_types entry " + t.dump() +
                          " is not implemented (only CogVideoXUpBlock3D)");
      }
    }
    if (types.size() != c.block_out_channels.size()) {
      bad_config_key(source, "up_block_types", "as long as block_out_channels", types);
    }
  }
  c.validate(source);
  return c;
}

void CogVideoXVAEConfig::validate(const std::string& source) const {
  require_positive(source, {{"out_channels", out_channels},
                            {"latent_channels", latent_channels},
                            {"layers_per_block", layers_per_block},
                            {"norm_num_groups", norm_num_groups},
                            {"sample_height", sample_height},
                            {"sample_width", sample_width}});
  if (block_out_channels.empty()) {
    throw InputError(source + ": key 'block_out_channels' must not be empty");
  }
  for (int64_t ch : block_out_channels) {
    if (ch <= 0 || ch % norm_num_groups != 0) {
      throw InputError(source +
                       ": key 'block_out_channels' entries must be positive multiples of "
                       "norm_num_groups (" +
                       std::to_string(norm_num_groups) + "), got " + std::to_string(ch));
    }
  }
  const int64_t t = temporal_compression_ratio;
  if (t < 1 || (t & (t - 1)) != 0 || t > spatial_compression_ratio()) {
    throw InputError(source + ": key 'temporal_compression_ratio' must be a power of two up to " +
                     std::to_string(spatial_compression_ratio()) + ", got " + std::to_string(t));
  }
  if (!(scaling_factor > 0)) throw InputError(source + ": key 'scaling_factor' must be positive");
  if (act_fn != "silu") {
    throw Unsupported(source + ": act_fn '" + act_fn + "' is not implemented (only 'silu')");
  }
  if (invert_scale_latents) {
    throw Unsupported(source + ": invert_scale_latents (CogVideoX 1.5 I2V) is not implemented");
  }
}

}  // namespace ditbench
