#include "models/flux/config.h"

#include <filesystem>
#include <numeric>

#include "models/common/error.h"
#include "models/common/json_config.h"

namespace ditbench {

FluxConfig FluxConfig::from_json(const nlohmann::json& j, const std::string& source) {
  require_config_object(j, source);
  FluxConfig c;
  read_config_ints(j, source, {{"patch_size", &c.patch_size}, {"in_channels", &c.in_channels}});
  c.out_channels = c.in_channels;  // null (or absent) means "same as in_channels"
  read_config_nullable_int(j, source, "out_channels", c.out_channels);
  read_config_ints(j, source,
                   {{"num_layers", &c.num_layers},
                    {"num_single_layers", &c.num_single_layers},
                    {"attention_head_dim", &c.attention_head_dim},
                    {"num_attention_heads", &c.num_attention_heads},
                    {"joint_attention_dim", &c.joint_attention_dim},
                    {"pooled_projection_dim", &c.pooled_projection_dim}});
  // diffusers' class default is false; FLUX.1-dev's config says true.
  c.guidance_embeds = false;
  read_config_bool(j, source, "guidance_embeds", c.guidance_embeds);
  read_config_list(j, source, "axes_dims_rope", c.axes_dims_rope);
  c.validate(source);
  return c;
}

FluxConfig FluxConfig::from_file(const std::string& path) {
  return config_from_file<FluxConfig>(path);
}

void FluxConfig::validate(const std::string& source) const {
  require_positive(
      source,
      {{"patch_size", patch_size}, {"in_channels", in_channels}, {"out_channels", out_channels}});
  require_non_negative(source, "num_layers", num_layers);
  require_non_negative(source, "num_single_layers", num_single_layers);
  require_positive(source, {{"attention_head_dim", attention_head_dim},
                            {"num_attention_heads", num_attention_heads},
                            {"joint_attention_dim", joint_attention_dim},
                            {"pooled_projection_dim", pooled_projection_dim}});
  const int64_t rope_sum =
      std::accumulate(axes_dims_rope.begin(), axes_dims_rope.end(), int64_t{0});
  bool rope_even = true;
  for (int64_t d : axes_dims_rope) rope_even = rope_even && d > 0 && d % 2 == 0;
  if (axes_dims_rope.size() != 3 || !rope_even || rope_sum != attention_head_dim) {
    throw InputError(source + ": key 'axes_dims_rope' must be 3 positive even sizes summing to " +
                     "attention_head_dim (" + std::to_string(attention_head_dim) + "), got sum " +
                     std::to_string(rope_sum));
  }
  if (patch_size != 1) {
    throw Unsupported(source + ": patch_size " + std::to_string(patch_size) +
                      " is not implemented (FLUX packs 2x2 in the pipeline; only 1)");
  }
}

std::vector<std::string> flux_preset_names() { return {"flux-dev", "flux-schnell", "flux-tiny"}; }

FluxConfig flux_preset(const std::string& name) {
  if (name == "flux-dev") return FluxConfig{};
  if (name == "flux-schnell") {
    FluxConfig c;
    c.guidance_embeds = false;
    return c;
  }
  if (name == "flux-tiny") {
    // The fixture's shape: 4 latent channels, two blocks of each kind, D = 32.
    FluxConfig c;
    c.in_channels = 16;
    c.out_channels = 16;
    c.num_layers = 2;
    c.num_single_layers = 2;
    c.attention_head_dim = 16;
    c.num_attention_heads = 2;
    c.joint_attention_dim = 24;
    c.pooled_projection_dim = 12;
    c.axes_dims_rope = {4, 6, 6};
    return c;
  }
  unknown_preset("FLUX", name, flux_preset_names());
}

}  // namespace ditbench
