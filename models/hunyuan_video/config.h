#pragma once
// HunyuanVideo transformer configuration: diffusers' HunyuanVideoTransformer3DModel config.json,
// with the released 12.8B model's values as defaults (models.md §2.1).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace ditbench {

struct HunyuanVideoConfig {
  int64_t in_channels = 16;
  int64_t out_channels = 16;
  int64_t num_attention_heads = 24;
  int64_t attention_head_dim = 128;     // D = heads * head_dim = 3072
  int64_t num_layers = 20;              // dual-stream blocks
  int64_t num_single_layers = 40;       // single-stream blocks
  int64_t num_refiner_layers = 2;       // token-refiner blocks
  double mlp_ratio = 4.0;               // MLP width = int(D * mlp_ratio)
  int64_t patch_size = 2;               // spatial
  int64_t patch_size_t = 1;             // temporal
  std::string qk_norm = "rms_norm";     // the only one the released model uses
  bool guidance_embeds = true;          // distilled guidance (the pipeline passes g*1000)
  int64_t text_embed_dim = 4096;        // LLaVA-Llama-3-8B hidden states
  int64_t pooled_projection_dim = 768;  // CLIP-L pooled
  double rope_theta = 256.0;
  std::vector<int64_t> rope_axes_dim = {16, 56, 56};  // (t, h, w); sums to head_dim
  std::string image_condition_type;  // "" = null (text-to-video); I2V variants are not built

  int64_t inner_dim() const { return num_attention_heads * attention_head_dim; }
  int64_t mlp_dim() const {
    return static_cast<int64_t>(static_cast<double>(inner_dim()) * mlp_ratio);
  }

  // Reads a diffusers config.json object. Keys starting with "_" and keys this build does not use
  // are ignored; a wrong type or an invalid value throws InputError naming `source` and the key.
  // A valid configuration this build cannot run (I2V conditioning, another qk_norm) throws
  // Unsupported.
  static HunyuanVideoConfig from_json(const nlohmann::json& j, const std::string& source);
  // Reads `path` (a config.json file, or a folder holding one).
  static HunyuanVideoConfig from_file(const std::string& path);

  // Throws InputError (naming `source`) when the values cannot form a model.
  void validate(const std::string& source) const;
};

// Named configurations: "hunyuan-video" (released, 12.8B parameters) and "hunyuan-video-tiny"
// (about 0.2M parameters, for CPU tests). Throws InputError listing the known names.
HunyuanVideoConfig hunyuan_video_preset(const std::string& name);
std::vector<std::string> hunyuan_video_preset_names();

}  // namespace ditbench
