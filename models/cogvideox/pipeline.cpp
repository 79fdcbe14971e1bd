#include "models/cogvideox/pipeline.h"

#include <ATen/CPUGeneratorImpl.h>

#include <filesystem>

#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"
#include "models/common/initial_noise.h"
#include "models/common/json_config.h"
#include "models/common/tensor_io.h"

namespace ditbench {
namespace fs = std::filesystem;

namespace {

// Seeds of the random weights, apart from the suite seed's streams.
constexpr uint64_t kTransformerInitSeed = 0xc061;
constexpr uint64_t kVaeInitSeed = 0xc062;

}  // namespace

CogVideoXVAEConfig cogvideox_vae_preset(const std::string& preset,
                                        const CogVideoXConfig& transformer) {
  CogVideoXVAEConfig vae;
  vae.latent_channels = transformer.in_channels;
  if (preset == "cogvideox-5b") vae.scaling_factor = 0.7;
  if (preset != "cogvideox-2b" && preset != "cogvideox-5b") {
    vae.block_out_channels = {8, 16, 16, 16};
    vae.layers_per_block = 1;
    vae.norm_num_groups = 4;
  }
  return vae;
}

CogVideoXSchedulerConfig cogvideox_scheduler_preset(const std::string& preset) {
  return preset == "cogvideox-5b" ? CogVideoXSchedulerConfig::cogvideox_5b()
                                  : CogVideoXSchedulerConfig::cogvideox_2b();
}

CogVideoXPipeline::CogVideoXPipeline(const PipelineSpec& spec) : FamilyPipeline(spec) {
  const auto dirs = checkpoint_folders(spec.checkpoint, spec.decode);
  CogVideoXSchedulerConfig scheduler_config;
  bool dpm = false;
  if (!spec.checkpoint.empty()) {
    config_ = CogVideoXConfig::from_file(dirs.transformer);
    scheduler_config = config_.use_rotary_positional_embeddings
                           ? CogVideoXSchedulerConfig::cogvideox_5b()
                           : CogVideoXSchedulerConfig::cogvideox_2b();
    const auto scheduler_file = fs::path(spec.checkpoint) / "scheduler" / "scheduler_config.json";
    if (fs::exists(scheduler_file)) {
      const auto j = read_config_file(scheduler_file.string());
      scheduler_config = CogVideoXSchedulerConfig::from_json(j, scheduler_file.string());
      dpm = j.value("_class_name", "") == "CogVideoXDPMScheduler";
    }
    if (spec.decode) vae_config_ = cogvideox_vae_config_from_dir(dirs.vae);
  } else {
    config_ = cogvideox_preset(spec.preset);
    vae_config_ = cogvideox_vae_preset(spec.preset, config_);
    scheduler_config = cogvideox_scheduler_preset(spec.preset);
  }
  if (spec.decode) {
    require_latent_channels(spec.checkpoint, vae_config_.latent_channels, config_.in_channels);
  }
  if (dpm) {
    dpm_ = std::make_unique<CogVideoXDPMScheduler>(scheduler_config);
  } else {
    ddim_ = std::make_unique<CogVideoXDDIMScheduler>(scheduler_config);
  }

  build_transformer(dirs.transformer, kTransformerInitSeed);
  if (spec.decode) {
    build_vae(dirs.vae, kVaeInitSeed, {"encoder.", "quant_conv."}, spec.dtype);
    // diffusers' vae.enable_tiling(), which the released sizes need (the CogVideoX examples turn
    // it on): tiles only where the frame is larger than half the sample size, so small videos
    // decode exactly as untiled. A VAE whose tile size the tiler cannot blend as diffusers does
    // decodes untiled.
    vae_->set_tiling(vae_->tiles_match_diffusers());
  }
}

Scheduler& CogVideoXPipeline::scheduler() {
  if (dpm_) return *dpm_;
  return *ddim_;
}

std::string CogVideoXPipeline::teacache_coefficients() const {
  return config_.use_rotary_positional_embeddings ? "cogvideox-5b" : "cogvideox-2b";
}

std::vector<std::string> CogVideoXPipeline::quant_include() const {
  // Attention projections and the feed-forward of every block.
  return {"^transformer_blocks\\.\\d+\\.(attn1|ff)\\."};
}

std::vector<int64_t> CogVideoXPipeline::latent_shape() const {
  const int64_t t = vae_config_.temporal_compression_ratio;
  const int64_t s = vae_config_.spatial_compression_ratio();
  return {1, (spec_.frames - 1) / t + 1, config_.in_channels, spec_.height / s, spec_.width / s};
}

PromptEmbeds CogVideoXPipeline::encode_prompt(int64_t seed) {
  PromptEmbeds p;
  const int64_t text_dim = config_.text_embed_dim;
  if (!spec_.prompt_file.empty()) {
    const auto& file = spec_.prompt_file;
    auto tensors = load_safetensors(file);
    p.embeds = require_prompt_embeds(tensors, file, "prompt_embeds", text_dim);
    if (uses_cfg()) {
      auto negative = require_prompt_embeds(tensors, file, "negative_prompt_embeds", text_dim);
      require_same_shape(negative, p.embeds, file, "negative_prompt_embeds", "prompt_embeds");
      p.embeds = at::cat({negative, p.embeds});  // [2B, L, T]: uncond first
    }
    p.source = "file:" + file;
  } else {
    SyntheticPrompt synthetic(spec_, seed, config_.max_text_seq_length);
    p.embeds = synthetic.embeds(text_dim, synthetic.valid());  // [1, L, T]
    if (uses_cfg()) p.embeds = at::cat({synthetic.embeds(text_dim, 1), p.embeds});
    p.source = synthetic.source();
  }
  return prompt_on_device(p, spec_);
}

at::Tensor CogVideoXPipeline::prepare_latents(int64_t seed) {
  // randn_tensor(shape, generator, dtype=prompt dtype): drawn directly in the model dtype.
  auto latents = initial_noise(latent_shape(), seed, spec_.noise_file, spec_.dtype);
  if (dpm_) {
    // The DPM scheduler draws its step noise from the pipeline's generator, after the latents.
    auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed));
    if (spec_.noise_file.empty()) {
      at::randn(latent_shape(), gen, at::TensorOptions().dtype(spec_.dtype));
    }
    dpm_->set_generator(gen);
  }
  return latents.to(spec_.device);
}

int CogVideoXPipeline::set_timesteps(int steps) {
  if (dpm_) {
    dpm_->set_timesteps(steps, spec_.device);
  } else {
    ddim_->set_timesteps(steps, spec_.device);
  }
  return static_cast<int>(scheduler().num_steps());
}

std::vector<TransformerInputs> CogVideoXPipeline::step_inputs(const at::Tensor& latents, int step,
                                                              const PromptEmbeds& prompt) {
  const int64_t batch = latents.size(0);
  TransformerInputs in;
  in.latents = latents;
  in.timestep = scheduler().timesteps()[step].expand({batch});  // int64
  in.prompt = prompt;
  if (!uses_cfg()) return {in};
  return split_cfg_branches(in, batch);  // [uncond; cond]
}

at::Tensor CogVideoXPipeline::scheduler_step(const std::vector<at::Tensor>& outputs, int step,
                                             const at::Tensor& latents) {
  // noise_pred.float(), the guidance mix in f32, the step on the model-dtype latents, and the
  // result cast back to the prompt dtype.
  return scheduler().step(cfg_mix_f32(outputs, spec_.guidance), step, latents).to(spec_.dtype);
}

at::Tensor CogVideoXPipeline::decode(const at::Tensor& latents) {
  // [B, F, C, H, W] -> [B, C, F, H, W], times 1 / scaling_factor as diffusers writes it.
  auto z = latents.permute({0, 2, 1, 3, 4}) * (1.0 / vae_config_.scaling_factor);
  return decoder()->decode(z);  // [B, 3, F, H, W]
}

}  // namespace ditbench
