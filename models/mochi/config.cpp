#include "models/mochi/config.h"

#include "models/common/error.h"
#include "models/common/json_config.h"

namespace ditbench {
namespace {

int64_t product(const std::vector<int64_t>& v) {
  int64_t p = 1;
  for (int64_t x : v) p *= x;
  return p;
}

}  // namespace

MochiConfig MochiConfig::from_json(const nlohmann::json& j, const std::string& source) {
  require_config_object(j, source);
  MochiConfig c;
  read_config_ints(j, source,
                   {{"patch_size", &c.patch_size},
                    {"num_attention_heads", &c.num_attention_heads},
                    {"attention_head_dim", &c.attention_head_dim},
                    {"num_layers", &c.num_layers},
                    {"pooled_projection_dim", &c.pooled_projection_dim},
                    {"in_channels", &c.in_channels}});
  c.out_channels = c.in_channels;
  read_config_nullable_int(j, source, "out_channels", c.out_channels);
  read_config_string(j, source, "qk_norm", c.qk_norm);
  read_config_ints(j, source,
                   {{"text_embed_dim", &c.text_embed_dim}, {"time_embed_dim", &c.time_embed_dim}});
  read_config_string(j, source, "activation_fn", c.activation_fn);
  read_config_int(j, source, "max_sequence_length", c.max_sequence_length);
  c.validate(source);
  return c;
}

MochiConfig MochiConfig::from_file(const std::string& path) {
  return config_from_file<MochiConfig>(path);
}

void MochiConfig::validate(const std::string& source) const {
  require_positive(source, {{"patch_size", patch_size},
                            {"num_attention_heads", num_attention_heads},
                            {"attention_head_dim", attention_head_dim},
                            {"num_layers", num_layers},
                            {"pooled_projection_dim", pooled_projection_dim},
                            {"in_channels", in_channels},
                            {"out_channels", out_channels},
                            {"text_embed_dim", text_embed_dim},
                            {"time_embed_dim", time_embed_dim},
                            {"max_sequence_length", max_sequence_length}});
  if (attention_head_dim % 2) {
    throw InputError(source + ": key 'attention_head_dim' must be even (RoPE pairs), got " +
                     std::to_string(attention_head_dim));
  }
  if (text_embed_dim % pooler_heads) {
    throw InputError(source + ": key 'text_embed_dim' must be a multiple of the pooler's " +
                     std::to_string(pooler_heads) + " heads, got " +
                     std::to_string(text_embed_dim));
  }
  if (qk_norm != "rms_norm") {
    throw Unsupported(source + ": qk_norm '" + qk_norm + "' is not implemented (only 'rms_norm')");
  }
  if (activation_fn != "swiglu") {
    throw Unsupported(source + ": activation_fn '" + activation_fn +
                      "' is not implemented (only 'swiglu')");
  }
}

std::vector<std::string> mochi_preset_names() { return {"mochi-1-preview", "mochi-tiny"}; }

MochiConfig mochi_preset(const std::string& name) {
  if (name == "mochi-1-preview") return MochiConfig{};
  if (name == "mochi-tiny") {
    MochiConfig c;
    c.num_attention_heads = 2;
    c.attention_head_dim = 16;
    c.num_layers = 2;
    c.pooled_projection_dim = 16;
    c.text_embed_dim = 32;
    c.time_embed_dim = 32;
    c.max_sequence_length = 16;
    return c;
  }
  unknown_preset("Mochi", name, mochi_preset_names());
}

// ---- VAE ----

int64_t MochiVAEConfig::spatial_compression_ratio() const { return product(spatial_expansions); }
int64_t MochiVAEConfig::temporal_compression_ratio() const { return product(temporal_expansions); }

MochiVAEConfig MochiVAEConfig::from_json(const nlohmann::json& j, const std::string& source) {
  require_config_object(j, source);
  MochiVAEConfig c;
  read_config_ints(j, source,
                   {{"out_channels", &c.out_channels}, {"latent_channels", &c.latent_channels}});
  read_config_list(j, source, "decoder_block_out_channels", c.decoder_block_out_channels);
  read_config_list(j, source, "layers_per_block", c.layers_per_block);
  read_config_list(j, source, "temporal_expansions", c.temporal_expansions);
  read_config_list(j, source, "spatial_expansions", c.spatial_expansions);
  read_config_string(j, source, "act_fn", c.act_fn);
  read_config_double(j, source, "scaling_factor", c.scaling_factor);
  // null mean/std: the pipeline only divides by scaling_factor.
  for (auto [key, values] :
       {std::pair{"latents_mean", &c.latents_mean}, std::pair{"latents_std", &c.latents_std}}) {
    if (j.contains(key) && j.at(key).is_null()) {
      values->clear();
    } else {
      read_config_list(j, source, key, *values);
    }
  }
  c.validate(source);
  return c;
}

MochiVAEConfig MochiVAEConfig::from_file(const std::string& path) {
  return config_from_file<MochiVAEConfig>(path);
}

void MochiVAEConfig::validate(const std::string& source) const {
  require_positive(source, {{"out_channels", out_channels}, {"latent_channels", latent_channels}});
  const size_t blocks = decoder_block_out_channels.size();
  if (blocks < 1) throw InputError(source + ": key 'decoder_block_out_channels' is empty");
  for (int64_t ch : decoder_block_out_channels) {
    require_positive(source, "decoder_block_out_channels", ch);
    if (ch % 32) {
      throw InputError(source + ": key 'decoder_block_out_channels' must be multiples of 32 " +
                       "(GroupNorm with 32 groups), got " + std::to_string(ch));
    }
  }
  if (layers_per_block.size() != blocks + 1) {
    throw InputError(source + ": key 'layers_per_block' needs " + std::to_string(blocks + 1) +
                     " entries (one per decoder block and one for block_in), got " +
                     std::to_string(layers_per_block.size()));
  }
  if (temporal_expansions.size() != blocks - 1 || spatial_expansions.size() != blocks - 1) {
    throw InputError(source + ": keys 'temporal_expansions' and 'spatial_expansions' need " +
                     std::to_string(blocks - 1) + " entries (one per up block)");
  }
  for (int64_t v : layers_per_block) require_positive(source, "layers_per_block", v);
  for (int64_t v : temporal_expansions) require_positive(source, "temporal_expansions", v);
  for (int64_t v : spatial_expansions) require_positive(source, "spatial_expansions", v);
  const auto channels = static_cast<size_t>(latent_channels);
  if ((!latents_mean.empty() || !latents_std.empty()) &&
      (latents_mean.size() != channels || latents_std.size() != channels)) {
    throw InputError(source + ": keys 'latents_mean' and 'latents_std' need " +
                     std::to_string(latent_channels) + " values each (latent_channels)");
  }
  if (!(scaling_factor > 0)) {
    throw InputError(source + ": key 'scaling_factor' must be positive, got " +
                     std::to_string(scaling_factor));
  }
  if (act_fn != "silu" && act_fn != "swish") {
    throw Unsupported(source + ": act_fn '" + act_fn + "' is not implemented (only 'silu')");
  }
}

}  // namespace ditbench
