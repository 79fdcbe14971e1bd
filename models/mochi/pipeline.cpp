#include "models/mochi/pipeline.h"

#include <filesystem>

#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"
#include "models/common/initial_noise.h"
#include "models/common/tensor_io.h"

namespace ditbench {
namespace fs = std::filesystem;

namespace {

// Seeds of the random weights, apart from the suite seed's streams.
constexpr uint64_t kTransformerInitSeed = 0x3c11;
constexpr uint64_t kVaeInitSeed = 0x3c12;

// A prompt file's embeddings [B, L, text_dim] and their mask [B, L].
std::pair<at::Tensor, at::Tensor> prompt_pair(const std::map<std::string, at::Tensor>& tensors,
                                              const std::string& file,
                                              const std::string& embeds_name,
                                              const std::string& mask_name, int64_t text_dim) {
  auto embeds = require_prompt_embeds(tensors, file, embeds_name, text_dim);
  auto mask = require_tensor(tensors, mask_name, file).to(at::kBool);
  if (mask.sizes() != embeds.sizes().slice(0, 2)) {
    throw InputError(file + ": tensor '" + mask_name + "' must be [B, L] like '" + embeds_name +
                     "', got " + c10::str(mask.sizes()));
  }
  return {embeds, mask};
}

}  // namespace

MochiVAEConfig mochi_vae_preset(const std::string& preset, const MochiConfig& transformer) {
  MochiVAEConfig vae;
  vae.latent_channels = transformer.in_channels;
  if (preset != "mochi-1-preview") {
    vae.decoder_block_out_channels = {32, 32, 32, 32};
    vae.layers_per_block = {1, 1, 1, 1, 1};
  }
  if (static_cast<int64_t>(vae.latents_mean.size()) != vae.latent_channels) {
    vae.latents_mean.clear();
    vae.latents_std.clear();
  }
  return vae;
}

MochiPipeline::MochiPipeline(const PipelineSpec& spec)
    : FamilyPipeline(spec), scheduler_(FlowMatchEulerConfig::mochi()) {
  const auto dirs = checkpoint_folders(spec.checkpoint, spec.decode);
  if (!spec.checkpoint.empty()) {
    config_ = MochiConfig::from_file(dirs.transformer);
    if (spec.decode) vae_config_ = MochiVAEConfig::from_file(dirs.vae);
  } else {
    config_ = mochi_preset(spec.preset);
    vae_config_ = mochi_vae_preset(spec.preset, config_);
  }
  if (spec.decode) {
    require_latent_channels(spec.checkpoint, vae_config_.latent_channels, config_.in_channels);
  }

  build_transformer(dirs.transformer, kTransformerInitSeed);
  if (spec.decode) {
    build_vae(dirs.vae, kVaeInitSeed, {"encoder."}, spec.dtype);
    // diffusers' enable_vae_tiling(), which the released sizes need: 256-pixel tiles only where
    // the frame is larger than one, so small videos decode exactly as untiled.
    vae_->set_tiling(true);
  }
}

std::vector<std::string> MochiPipeline::quant_include() const {
  // Attention projections and MLPs of both streams.
  return {"^transformer_blocks\\.\\d+\\.(attn1|ff|ff_context)\\."};
}

std::vector<int64_t> MochiPipeline::latent_shape() const {
  const int64_t t = vae_config_.temporal_compression_ratio();
  const int64_t s = vae_config_.spatial_compression_ratio();
  return {1, config_.in_channels, (spec_.frames - 1) / t + 1, spec_.height / s, spec_.width / s};
}

PromptEmbeds MochiPipeline::encode_prompt(int64_t seed) {
  PromptEmbeds p;
  const bool cfg = uses_cfg();
  if (!spec_.prompt_file.empty()) {
    const auto& file = spec_.prompt_file;
    auto tensors = load_safetensors(file);
    std::tie(p.embeds, p.attention_mask) = prompt_pair(
        tensors, file, "prompt_embeds", "prompt_attention_mask", config_.text_embed_dim);
    if (cfg) {
      auto [negative, negative_mask] =
          prompt_pair(tensors, file, "negative_prompt_embeds", "negative_prompt_attention_mask",
                      config_.text_embed_dim);
      require_same_shape(negative, p.embeds, file, "negative_prompt_embeds", "prompt_embeds");
      p.embeds = at::cat({negative, p.embeds});  // [2B, L, T]: uncond first
      p.attention_mask = at::cat({negative_mask, p.attention_mask});
    }
    p.source = "file:" + file;
  } else {
    // Seeded stand-ins with T5's shapes: embeddings zero past the valid length.
    SyntheticPrompt synthetic(spec_, seed, config_.max_sequence_length);
    p.embeds = synthetic.embeds(config_.text_embed_dim, synthetic.valid());  // [1, L, T]
    p.attention_mask = synthetic.mask(synthetic.valid());                    // [1, L]
    if (cfg) {
      p.embeds = at::cat({synthetic.embeds(config_.text_embed_dim, 1), p.embeds});
      p.attention_mask = at::cat({synthetic.mask(1), p.attention_mask});
    }
    p.source = synthetic.source();
  }
  return prompt_on_device(p, spec_);
}

at::Tensor MochiPipeline::prepare_latents(int64_t seed) {
  // Drawn in float32, then kept in the prompt embeddings' dtype as the pipeline does.
  return initial_noise(latent_shape(), seed, spec_.noise_file, at::kFloat)
      .to(spec_.device, spec_.dtype);
}

int MochiPipeline::set_timesteps(int steps) {
  scheduler_.set_timesteps(steps, mochi_sigmas(steps), {}, spec_.device);
  return static_cast<int>(scheduler_.num_steps());
}

std::vector<TransformerInputs> MochiPipeline::step_inputs(const at::Tensor& latents, int step,
                                                          const PromptEmbeds& prompt) {
  const int64_t batch = latents.size(0);
  TransformerInputs in;
  in.latents = latents;
  // t.expand(B).to(latents.dtype): bf16-rounded in a bf16 pipeline (0 at pure noise).
  in.timestep = scheduler_.timesteps()[step].expand({batch}).to(latents.scalar_type());
  in.prompt = prompt;
  if (!uses_cfg()) return {in};
  return split_cfg_branches(in, batch);  // [uncond; cond]
}

at::Tensor MochiPipeline::scheduler_step(const std::vector<at::Tensor>& outputs, int step,
                                         const at::Tensor& latents) {
  // CFG and sampling run in f32; the latents go back to their dtype.
  return scheduler_.step(cfg_mix_f32(outputs, spec_.guidance), step, latents.to(at::kFloat))
      .to(latents.scalar_type());
}

at::Tensor MochiPipeline::decode(const at::Tensor& latents) {
  const auto options = latents.options();
  at::Tensor z;
  if (!vae_config_.latents_mean.empty()) {
    // torch.tensor(list) (float32), then the latents' dtype: [1, C, 1, 1, 1].
    auto as_tensor = [](const std::vector<double>& v) {
      return at::tensor(v, at::kDouble).to(at::kFloat).view({1, -1, 1, 1, 1});
    };
    auto mean = as_tensor(vae_config_.latents_mean), std = as_tensor(vae_config_.latents_std);
    z = latents * std.to(options) / vae_config_.scaling_factor + mean.to(options);
  } else {
    z = latents / vae_config_.scaling_factor;
  }
  return decoder()->decode(z);  // [B, 3, F, H, W]
}

}  // namespace ditbench
