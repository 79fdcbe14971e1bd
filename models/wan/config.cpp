#include "models/wan/config.h"

#include <algorithm>
#include <filesystem>

#include "models/common/error.h"
#include "models/common/json_config.h"

namespace ditbench {

std::vector<int64_t> WanConfig::rope_axes_dim() const {
  const int64_t hw = 2 * (attention_head_dim / 6);
  return {attention_head_dim - 2 * hw, hw, hw};
}

WanConfig WanConfig::from_json(const nlohmann::json& j, const std::string& source) {
  require_config_object(j, source);
  WanConfig c;
  std::vector<int64_t> patch(c.patch_size.begin(), c.patch_size.end());
  read_config_list(j, source, "patch_size", patch);
  if (patch.size() != 3)
    bad_config_key(source, "patch_size", "a list of 3 integers", j.at("patch_size"));
  std::copy(patch.begin(), patch.end(), c.patch_size.begin());
  read_config_ints(j, source,
                   {{"num_attention_heads", &c.num_attention_heads},
                    {"attention_head_dim", &c.attention_head_dim},
                    {"in_channels", &c.in_channels}});
  // out_channels: null means "same as in_channels".
  c.out_channels = c.in_channels;
  read_config_nullable_int(j, source, "out_channels", c.out_channels);
  read_config_ints(j, source,
                   {{"text_dim", &c.text_dim},
                    {"freq_dim", &c.freq_dim},
                    {"ffn_dim", &c.ffn_dim},
                    {"num_layers", &c.num_layers}});
  read_config_bool(j, source, "cross_attn_norm", c.cross_attn_norm);
  read_config_string(j, source, "qk_norm", c.qk_norm);
  read_config_double(j, source, "eps", c.eps);
  read_config_int(j, source, "rope_max_seq_len", c.rope_max_seq_len);
  // Nullable integers: null (text-to-video) reads as 0.
  read_config_nullable_int(j, source, "image_dim", c.image_dim);
  read_config_nullable_int(j, source, "added_kv_proj_dim", c.added_kv_proj_dim);
  read_config_nullable_int(j, source, "pos_embed_seq_len", c.pos_embed_seq_len);
  c.validate(source);
  return c;
}

WanConfig WanConfig::from_file(const std::string& path) {
  return config_from_file<WanConfig>(path);
}

void WanConfig::validate(const std::string& source) const {
  for (int64_t p : patch_size) require_positive(source, "patch_size", p);
  require_positive(source, {{"num_attention_heads", num_attention_heads},
                            {"attention_head_dim", attention_head_dim},
                            {"in_channels", in_channels},
                            {"out_channels", out_channels},
                            {"text_dim", text_dim},
                            {"freq_dim", freq_dim},
                            {"ffn_dim", ffn_dim},
                            {"rope_max_seq_len", rope_max_seq_len}});
  require_non_negative(source, "num_layers", num_layers);
  if (!(eps > 0)) throw InputError(source + ": key 'eps' must be positive");
  const auto axes = rope_axes_dim();
  if (attention_head_dim % 2 || axes[1] == 0 || axes[0] <= 0 || axes[0] % 2) {
    throw InputError(source + ": key 'attention_head_dim' " + std::to_string(attention_head_dim) +
                     " cannot be split into even RoPE parts for (t, h, w)");
  }
  if (qk_norm != "rms_norm_across_heads") {
    throw Unsupported(source + ": qk_norm '" + qk_norm +
                      "' is not implemented (only 'rms_norm_across_heads')");
  }
  if (image_dim || added_kv_proj_dim || pos_embed_seq_len) {
    throw Unsupported(source +
                      ": image_dim / added_kv_proj_dim / pos_embed_seq_len are set: the "
                      "image-to-video variant is not implemented");
  }
}

std::vector<std::string> wan_preset_names() {
  return {"wan2.1-t2v-14b", "wan2.1-t2v-1.3b", "wan-tiny"};
}

WanConfig wan_preset(const std::string& name) {
  if (name == "wan2.1-t2v-14b") return WanConfig{};
  if (name == "wan2.1-t2v-1.3b") {
    WanConfig c;
    c.num_attention_heads = 12;  // D = 1536
    c.ffn_dim = 8960;
    c.num_layers = 30;
    return c;
  }
  if (name == "wan-tiny") {
    WanConfig c;
    c.num_attention_heads = 2;
    c.attention_head_dim = 16;  // RoPE (t, h, w) = (8, 4, 4)
    c.in_channels = 4;
    c.out_channels = 4;
    c.text_dim = 32;
    c.freq_dim = 32;
    c.ffn_dim = 64;
    c.num_layers = 2;
    return c;
  }
  unknown_preset("Wan", name, wan_preset_names());
}

}  // namespace ditbench
