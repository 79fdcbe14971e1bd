#pragma once
// Mochi-1 configurations: diffusers' MochiTransformer3DModel and AutoencoderKLMochi config.json,
// with the released genmo/mochi-1-preview values as defaults (models.md §5).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace ditbench {

struct MochiConfig {
  int64_t patch_size = 2;
  int64_t num_attention_heads = 24;
  int64_t attention_head_dim = 128;      // visual width D = heads * head_dim = 3072
  int64_t num_layers = 48;               // the last block is context_pre_only
  int64_t pooled_projection_dim = 1536;  // text-stream width
  int64_t in_channels = 12;
  int64_t out_channels = 12;             // null in config.json = in_channels
  std::string qk_norm = "rms_norm";      // the only one diffusers builds
  int64_t text_embed_dim = 4096;         // T5-XXL hidden states
  int64_t time_embed_dim = 256;          // sinusoid width
  std::string activation_fn = "swiglu";  // the only one the released model uses
  int64_t max_sequence_length = 256;     // T5 tokens the pipeline pads to
  int64_t pooler_heads = 8;              // MochiAttentionPool heads (fixed in diffusers)

  int64_t inner_dim() const { return num_attention_heads * attention_head_dim; }
  // SwiGLU inner widths: (4 * dim * 2) // 3 for each stream.
  int64_t ff_inner_dim() const { return (4 * inner_dim() * 2) / 3; }
  int64_t ff_context_inner_dim() const { return (4 * pooled_projection_dim * 2) / 3; }

  // Reads a diffusers config.json object; unknown and "_" keys are ignored. A wrong type or value
  // throws InputError naming `source` and the key; a valid configuration this build cannot run
  // (another qk_norm or activation) throws Unsupported.
  static MochiConfig from_json(const nlohmann::json& j, const std::string& source);
  // Reads `path` (a config.json file, or a folder holding one).
  static MochiConfig from_file(const std::string& path);
  void validate(const std::string& source) const;
};

// Named configurations: "mochi-1-preview" (released, 10B parameters) and "mochi-tiny" (a few
// hundred thousand parameters, for CPU runs). Throws InputError listing the known names.
MochiConfig mochi_preset(const std::string& name);
std::vector<std::string> mochi_preset_names();

// diffusers' AutoencoderKLMochi config, decoder side. Defaults are the released VAE.
struct MochiVAEConfig {
  int64_t out_channels = 3;
  int64_t latent_channels = 12;
  std::vector<int64_t> decoder_block_out_channels = {128, 256, 512, 768};
  std::vector<int64_t> layers_per_block = {3, 3, 4, 6, 3};
  std::vector<int64_t> temporal_expansions = {1, 2, 3};
  std::vector<int64_t> spatial_expansions = {2, 2, 2};
  std::string act_fn = "silu";
  // The pipeline decodes latents * std / scaling_factor + mean (per channel).
  std::vector<double> latents_mean = {
      -0.06730895953510081, -0.038011381506090416, -0.07477820912866141,  -0.05565264470995561,
      0.012767231469026969, -0.04703542746246419,  0.043896967884726704,  -0.09346305707025976,
      -0.09918314763016893, -0.008729793427399178, -0.011931556316503654, -0.0321993391887285};
  std::vector<double> latents_std = {0.9263795028493863, 0.9248894543193766, 0.9393059390890617,
                                     0.959253732819592,  0.8244560132752793, 0.917259975397747,
                                     0.9294154431013696, 1.3720942357788521, 0.881393668867029,
                                     0.9168315692124348, 0.9185249279345552, 0.9274757570805041};
  double scaling_factor = 1.0;

  int64_t spatial_compression_ratio() const;   // product of spatial_expansions (8)
  int64_t temporal_compression_ratio() const;  // product of temporal_expansions (6)

  static MochiVAEConfig from_json(const nlohmann::json& j, const std::string& source);
  static MochiVAEConfig from_file(const std::string& path);
  void validate(const std::string& source) const;
};

}  // namespace ditbench
