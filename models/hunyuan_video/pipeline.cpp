#include "models/hunyuan_video/pipeline.h"

#include <filesystem>
#include <fstream>

#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"
#include "models/common/initial_noise.h"
#include "models/common/tensor_io.h"

namespace ditbench {
namespace fs = std::filesystem;

namespace {

// Seeds of the synthetic prompt and of the random weights are derived from the suite seed so
// that runs are reproducible but the streams do not coincide.
constexpr uint64_t kTransformerInitSeed = 0x7a11;
constexpr uint64_t kVaeInitSeed = 0x7a12;

}  // namespace

HunyuanVideoVAEConfig hunyuan_video_vae_preset(const std::string& preset,
                                               const HunyuanVideoConfig& transformer) {
  HunyuanVideoVAEConfig vae;
  vae.latent_channels = transformer.in_channels;
  if (preset != "hunyuan-video") {
    // Small decoder with the released strides, for CPU runs of the tiny transformer.
    vae.block_out_channels = {16, 16, 32, 32};
    vae.layers_per_block = 1;
    vae.norm_num_groups = 8;
  }
  return vae;
}

HunyuanVideoPipeline::HunyuanVideoPipeline(const PipelineSpec& spec)
    : FamilyPipeline(spec), scheduler_(FlowMatchEulerConfig::hunyuan_video()) {
  const auto dirs = checkpoint_folders(spec.checkpoint, spec.decode);
  if (!spec.checkpoint.empty()) {
    config_ = HunyuanVideoConfig::from_file(dirs.transformer);
    // A trained checkpoint may say at which rate its training videos ran (tiny-shapes: 8 fps).
    const fs::path model_index = fs::path(spec.checkpoint) / "model_index.json";
    if (fs::exists(model_index)) {
      const auto index = nlohmann::json::parse(std::ifstream(model_index), nullptr, false);
      if (index.is_object() && index.contains("video") && index["video"].is_object() &&
          index["video"].contains("fps") && index["video"]["fps"].is_number() &&
          index["video"]["fps"].get<double>() > 0) {
        fps_ = index["video"]["fps"].get<double>();
      }
    }
    if (spec.decode) {
      const std::string vae_config_file = dirs.vae_config_file();
      const auto vae_json = nlohmann::json::parse(std::ifstream(vae_config_file), nullptr,
                                                  /*allow_exceptions=*/false);
      if (vae_json.is_discarded()) throw InputError(vae_config_file + ": not valid JSON");
      vae_config_ = HunyuanVideoVAEConfig::from_json(vae_json, vae_config_file);
    }
  } else {
    config_ = hunyuan_video_preset(spec.preset);
    vae_config_ = hunyuan_video_vae_preset(spec.preset, config_);
  }

  build_transformer(dirs.transformer, kTransformerInitSeed);
  if (spec.decode) {
    build_vae(dirs.vae, kVaeInitSeed, {"encoder.", "quant_conv."}, spec.dtype);
    // Tiled decoding as diffusers' enable_tiling(): tiles only where the frame is larger than a
    // tile, so small videos decode exactly as untiled.
    vae_->set_tiling(true);
  }
}

std::vector<std::string> HunyuanVideoPipeline::quant_include() const {
  // Attention projections and MLPs of the dual- and single-stream blocks.
  return {"^transformer_blocks\\.\\d+\\.(attn|ff|ff_context)\\.",
          "^single_transformer_blocks\\.\\d+\\.(attn\\.|proj_mlp|proj_out)"};
}

std::vector<int64_t> HunyuanVideoPipeline::latent_shape() const {
  const int64_t t = vae_config_.temporal_compression_ratio;
  const int64_t s = vae_config_.spatial_compression_ratio;
  return {1, config_.in_channels, (spec_.frames - 1) / t + 1, spec_.height / s, spec_.width / s};
}

PromptEmbeds HunyuanVideoPipeline::encode_prompt(int64_t seed) {
  PromptEmbeds p;
  if (!spec_.prompt_file.empty()) {
    const auto& file = spec_.prompt_file;
    auto tensors = load_safetensors(file);
    p.embeds = require_prompt_embeds(tensors, file, "prompt_embeds", config_.text_embed_dim);
    p.attention_mask = require_tensor(tensors, "prompt_attention_mask", file).to(at::kBool);
    p.pooled = require_tensor(tensors, "pooled_prompt_embeds", file);
    if (p.attention_mask.sizes() != p.embeds.sizes().slice(0, 2)) {
      throw InputError(file + ": tensor 'prompt_attention_mask' must be [B, L] like prompt_embeds");
    }
    if (p.pooled.dim() != 2 || p.pooled.size(1) != config_.pooled_projection_dim) {
      throw InputError(file + ": tensor 'pooled_prompt_embeds' must be [B, " +
                       std::to_string(config_.pooled_projection_dim) + "]");
    }
    p.source = "file:" + file;
  } else {
    // Seeded stand-ins with the text encoders' shapes: embeddings zero past the valid length.
    SyntheticPrompt synthetic(spec_, seed, 256);
    p.attention_mask = synthetic.mask(synthetic.valid());                    // [1, L]
    p.embeds = synthetic.embeds(config_.text_embed_dim, synthetic.valid());  // [1, L, T]
    p.pooled = synthetic.randn_pooled(config_.pooled_projection_dim);        // [1, P]
    p.source = synthetic.source();
  }
  return prompt_on_device(p, spec_);
}

at::Tensor HunyuanVideoPipeline::prepare_latents(int64_t seed) {
  // As randn_tensor with a CPU torch.Generator: the same numbers as the Python pipeline.
  return initial_noise(latent_shape(), seed, spec_.noise_file, at::kFloat).to(spec_.device);
}

int HunyuanVideoPipeline::set_timesteps(int steps) {
  scheduler_.set_timesteps(steps, hunyuan_video_sigmas(steps), {}, spec_.device);
  return static_cast<int>(scheduler_.num_steps());
}

std::vector<TransformerInputs> HunyuanVideoPipeline::step_inputs(const at::Tensor& latents,
                                                                 int step,
                                                                 const PromptEmbeds& prompt) {
  TransformerInputs in;
  const int64_t batch = latents.size(0);
  in.latents = latents.to(spec_.dtype);
  // t.expand(B).to(latents.dtype): f32 on the first step, the latents' dtype afterwards.
  in.timestep = scheduler_.timesteps()[step].expand({batch}).to(latents.scalar_type());
  // torch.tensor([g] * B, dtype=transformer_dtype) * 1000.0, rounded in that dtype.
  in.guidance = at::full({batch}, spec_.guidance, latents.options().dtype(spec_.dtype)) * 1000.0;
  in.prompt = prompt;
  return {in};
}

at::Tensor HunyuanVideoPipeline::scheduler_step(const std::vector<at::Tensor>& outputs, int step,
                                                const at::Tensor& latents) {
  return scheduler_.step(outputs.at(0), step, latents);
}

at::Tensor HunyuanVideoPipeline::decode(const at::Tensor& latents) {
  auto z = latents.to(spec_.dtype) / vae_config_.scaling_factor;
  return decoder()->decode(z);  // [B, 3, F, H, W]
}

}  // namespace ditbench
