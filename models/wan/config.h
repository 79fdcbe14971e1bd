#pragma once
// Wan 2.1 transformer configuration: diffusers' WanTransformer3DModel config.json, with the
// released Wan2.1-T2V-14B values as defaults (models.md §6.1).
#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace ditbench {

struct WanConfig {
  std::array<int64_t, 3> patch_size = {1, 2, 2};  // (t, h, w)
  int64_t num_attention_heads = 40;
  int64_t attention_head_dim = 128;  // D = heads * head_dim = 5120
  int64_t in_channels = 16;
  int64_t out_channels = 16;
  int64_t text_dim = 4096;  // UMT5-XXL hidden states
  int64_t freq_dim = 256;   // sinusoidal timestep channels
  int64_t ffn_dim = 13824;
  int64_t num_layers = 40;
  bool cross_attn_norm = true;  // norm2 (affine FP32LayerNorm) before the cross-attention
  std::string qk_norm = "rms_norm_across_heads";
  double eps = 1e-6;
  int64_t rope_max_seq_len = 1024;  // longest patch-grid axis the RoPE tables cover
  // Image-to-video parts (image_dim, added_kv_proj_dim, pos_embed_seq_len): 0 = null.
  int64_t image_dim = 0;
  int64_t added_kv_proj_dim = 0;
  int64_t pos_embed_seq_len = 0;

  int64_t inner_dim() const { return num_attention_heads * attention_head_dim; }
  int64_t patch_volume() const { return patch_size[0] * patch_size[1] * patch_size[2]; }
  // RoPE split of the head dim over (t, h, w): h = w = 2 * (head_dim / 6), t takes the rest.
  std::vector<int64_t> rope_axes_dim() const;

  // Reads a diffusers config.json object; keys starting with "_" and unknown keys are ignored. A
  // wrong type or an impossible value throws InputError naming `source` and the key; a valid
  // configuration this build does not run (image-to-video, another qk_norm) throws Unsupported.
  static WanConfig from_json(const nlohmann::json& j, const std::string& source);
  // Reads `path` (a config.json file, or a folder holding one).
  static WanConfig from_file(const std::string& path);

  void validate(const std::string& source) const;
};

// Named configurations: "wan2.1-t2v-14b" and "wan2.1-t2v-1.3b" (the released models) and
// "wan-tiny" (a few thousand parameters, for CPU tests). InputError lists the known names.
WanConfig wan_preset(const std::string& name);
std::vector<std::string> wan_preset_names();

}  // namespace ditbench
