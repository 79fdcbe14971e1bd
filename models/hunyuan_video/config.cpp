#include "models/hunyuan_video/config.h"

#include <filesystem>
#include <numeric>

#include "models/common/error.h"
#include "models/common/json_config.h"

namespace ditbench {

HunyuanVideoConfig HunyuanVideoConfig::from_json(const nlohmann::json& j,
                                                 const std::string& source) {
  require_config_object(j, source);
  HunyuanVideoConfig c;
  read_config_int(j, source, "in_channels", c.in_channels);
  // out_channels: null means "same as in_channels".
  c.out_channels = c.in_channels;
  read_config_nullable_int(j, source, "out_channels", c.out_channels);
  read_config_ints(j, source,
                   {{"num_attention_heads", &c.num_attention_heads},
                    {"attention_head_dim", &c.attention_head_dim},
                    {"num_layers", &c.num_layers},
                    {"num_single_layers", &c.num_single_layers},
                    {"num_refiner_layers", &c.num_refiner_layers}});
  read_config_double(j, source, "mlp_ratio", c.mlp_ratio);
  read_config_ints(j, source, {{"patch_size", &c.patch_size}, {"patch_size_t", &c.patch_size_t}});
  read_config_string(j, source, "qk_norm", c.qk_norm);
  read_config_bool(j, source, "guidance_embeds", c.guidance_embeds);
  read_config_ints(
      j, source,
      {{"text_embed_dim", &c.text_embed_dim}, {"pooled_projection_dim", &c.pooled_projection_dim}});
  read_config_double(j, source, "rope_theta", c.rope_theta);
  read_config_string(j, source, "image_condition_type", c.image_condition_type);
  read_config_list(j, source, "rope_axes_dim", c.rope_axes_dim);
  if (c.rope_axes_dim.size() != 3) {
    bad_config_key(source, "rope_axes_dim", "a list of 3 integers", j.at("rope_axes_dim"));
  }
  c.validate(source);
  return c;
}

HunyuanVideoConfig HunyuanVideoConfig::from_file(const std::string& path) {
  return config_from_file<HunyuanVideoConfig>(path);
}

void HunyuanVideoConfig::validate(const std::string& source) const {
  auto non_negative = [&](const char* key, int64_t v) { require_non_negative(source, key, v); };
  require_positive(source, {{"in_channels", in_channels},
                            {"out_channels", out_channels},
                            {"num_attention_heads", num_attention_heads},
                            {"attention_head_dim", attention_head_dim}});
  non_negative("num_layers", num_layers);
  non_negative("num_single_layers", num_single_layers);
  non_negative("num_refiner_layers", num_refiner_layers);
  require_positive(source, {{"patch_size", patch_size},
                            {"patch_size_t", patch_size_t},
                            {"text_embed_dim", text_embed_dim},
                            {"pooled_projection_dim", pooled_projection_dim}});
  if (!(mlp_ratio > 0)) {
    throw InputError(source + ": key 'mlp_ratio' must be positive, got " +
                     std::to_string(mlp_ratio));
  }
  if (!(rope_theta > 0)) {
    throw InputError(source + ": key 'rope_theta' must be positive, got " +
                     std::to_string(rope_theta));
  }
  const int64_t rope_sum = std::accumulate(rope_axes_dim.begin(), rope_axes_dim.end(), int64_t{0});
  bool rope_even = true;
  for (int64_t d : rope_axes_dim) rope_even = rope_even && d > 0 && d % 2 == 0;
  if (rope_axes_dim.size() != 3 || !rope_even || rope_sum != attention_head_dim) {
    throw InputError(source + ": key 'rope_axes_dim' must be 3 positive even sizes summing to " +
                     "attention_head_dim (" + std::to_string(attention_head_dim) + "), got sum " +
                     std::to_string(rope_sum));
  }
  if (qk_norm != "rms_norm") {
    throw Unsupported(source + ": qk_norm '" + qk_norm + "' is not implemented (only 'rms_norm')");
  }
  if (!image_condition_type.empty()) {
    throw Unsupported(source + ": image_condition_type '" + image_condition_type +
                      "' (image-to-video) is not implemented");
  }
}

std::vector<std::string> hunyuan_video_preset_names() {
  return {"hunyuan-video", "hunyuan-video-tiny"};
}

HunyuanVideoConfig hunyuan_video_preset(const std::string& name) {
  if (name == "hunyuan-video") return HunyuanVideoConfig{};
  if (name == "hunyuan-video-tiny") {
    HunyuanVideoConfig c;
    c.in_channels = 4;
    c.out_channels = 4;
    c.num_attention_heads = 2;
    c.attention_head_dim = 16;
    c.num_layers = 2;
    c.num_single_layers = 2;
    c.num_refiner_layers = 1;
    c.text_embed_dim = 32;
    c.pooled_projection_dim = 16;
    c.rope_axes_dim = {4, 6, 6};
    return c;
  }
  unknown_preset("HunyuanVideo", name, hunyuan_video_preset_names());
}

}  // namespace ditbench
