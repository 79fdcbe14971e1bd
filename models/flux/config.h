#pragma once
// FLUX.1 transformer configuration: diffusers' FluxTransformer2DModel config.json, with the
// released FLUX.1-dev values as defaults (models.md §3.1).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace ditbench {

struct FluxConfig {
  int64_t patch_size = 1;               // the pipeline packs 2x2; the model never patchifies
  int64_t in_channels = 64;             // 16 latent channels x 2x2 packing
  int64_t out_channels = 64;            // null in config.json: same as in_channels
  int64_t num_layers = 19;              // dual-stream blocks
  int64_t num_single_layers = 38;       // single-stream blocks
  int64_t attention_head_dim = 128;     //
  int64_t num_attention_heads = 24;     // D = 3072
  int64_t joint_attention_dim = 4096;   // T5-XXL hidden states
  int64_t pooled_projection_dim = 768;  // CLIP-L pooled
  bool guidance_embeds = true;          // dev: embedded guidance; schnell: none
  std::vector<int64_t> axes_dims_rope = {16, 56, 56};  // sums to head_dim
  double rope_theta = 10000.0;                         // fixed in diffusers (not in config.json)
  double mlp_ratio = 4.0;                              // fixed in diffusers (not in config.json)

  int64_t inner_dim() const { return num_attention_heads * attention_head_dim; }
  int64_t mlp_dim() const {
    return static_cast<int64_t>(static_cast<double>(inner_dim()) * mlp_ratio);
  }
  // Latent channels of the VAE before the 2x2 packing.
  int64_t latent_channels() const { return in_channels / 4; }

  // Reads a diffusers config.json object; keys starting with "_" and unknown keys are ignored. A
  // wrong type or an invalid value throws InputError naming `source` and the key; a patch size
  // other than 1 throws Unsupported.
  static FluxConfig from_json(const nlohmann::json& j, const std::string& source);
  // Reads `path` (a config.json file, or a folder holding one).
  static FluxConfig from_file(const std::string& path);
  void validate(const std::string& source) const;
};

// Named configurations: "flux-dev" (FLUX.1-dev, 11.9B parameters), "flux-schnell" (no guidance
// embedder) and "flux-tiny" (a few thousand parameters, for CPU tests). InputError lists the
// known names.
FluxConfig flux_preset(const std::string& name);
std::vector<std::string> flux_preset_names();

}  // namespace ditbench
