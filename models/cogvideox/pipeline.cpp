#include "models/cogvideox/pipeline.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
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

CogVideoXPipeline::CogVideoXPipeline(const PipelineSpec& spec) : spec_(spec) {
  const auto options = at::TensorOptions().dtype(spec.dtype).device(spec.device);
  std::string transformer_dir, vae_dir;
  CogVideoXSchedulerConfig scheduler_config;
  bool dpm = false;
  if (!spec.checkpoint.empty()) {
    transformer_dir = (fs::path(spec.checkpoint) / "transformer").string();
    vae_dir = (fs::path(spec.checkpoint) / "vae").string();
    if (!fs::exists(transformer_dir)) {
      throw InputError(spec.checkpoint + ": not a diffusers checkpoint folder (no transformer/)");
    }
    config_ = CogVideoXConfig::from_file(transformer_dir);
    scheduler_config = config_.use_rotary_positional_embeddings
                           ? CogVideoXSchedulerConfig::cogvideox_5b()
                           : CogVideoXSchedulerConfig::cogvideox_2b();
    const auto scheduler_file = fs::path(spec.checkpoint) / "scheduler" / "scheduler_config.json";
    if (fs::exists(scheduler_file)) {
      const auto j = read_config_file(scheduler_file.string());
      scheduler_config = CogVideoXSchedulerConfig::from_json(j, scheduler_file.string());
      dpm = j.value("_class_name", "") == "CogVideoXDPMScheduler";
    }
    if (spec.decode) {
      if (!fs::exists(fs::path(vae_dir) / "config.json")) {
        throw InputError(spec.checkpoint + ": no vae/config.json");
      }
      vae_config_ = cogvideox_vae_config_from_dir(vae_dir);
    }
  } else {
    config_ = cogvideox_preset(spec.preset);
    vae_config_ = cogvideox_vae_preset(spec.preset, config_);
    scheduler_config = cogvideox_scheduler_preset(spec.preset);
  }
  if (spec.decode && vae_config_.latent_channels != config_.in_channels) {
    throw InputError(spec.checkpoint + ": the VAE has " +
                     std::to_string(vae_config_.latent_channels) +
                     " latent channels, the transformer " + std::to_string(config_.in_channels));
  }
  if (dpm) {
    dpm_ = std::make_unique<CogVideoXDPMScheduler>(scheduler_config);
  } else {
    ddim_ = std::make_unique<CogVideoXDDIMScheduler>(scheduler_config);
  }

  transformer_ = CogVideoXTransformer3DModel(config_, options);
  init_or_load_weights(*transformer_, spec.random_weights, kTransformerInitSeed, transformer_dir);
  if (spec.random_weights) weights_note_ = random_weights_note();
  if (spec.decode) {
    vae_ = AutoencoderKLCogVideoXDecoder(vae_config_, options);
    init_or_load_weights(*vae_, spec.random_weights, kVaeInitSeed, vae_dir,
                         {"encoder.", "quant_conv."});
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

std::vector<std::string> CogVideoXPipeline::quant_exclude() const {
  // Embedders (patch, text, time), modulation (norm*.linear) and the output projection.
  return {"norm", "embed", "^proj_out"};
}

std::vector<int64_t> CogVideoXPipeline::latent_shape() const {
  const int64_t t = vae_config_.temporal_compression_ratio;
  const int64_t s = vae_config_.spatial_compression_ratio();
  return {1, (spec_.frames - 1) / t + 1, config_.in_channels, spec_.height / s, spec_.width / s};
}

PromptEmbeds CogVideoXPipeline::encode_prompt(int64_t seed) {
  PromptEmbeds p;
  const int64_t text_dim = config_.text_embed_dim;
  auto check = [&](const at::Tensor& t, const std::string& file, const std::string& name) {
    if (t.dim() != 3 || t.size(2) != text_dim) {
      throw InputError(file + ": tensor '" + name + "' must be [B, L, " + std::to_string(text_dim) +
                       "], got " + c10::str(t.sizes()));
    }
  };
  if (!spec_.prompt_file.empty()) {
    const auto& file = spec_.prompt_file;
    auto tensors = load_safetensors(file);
    p.embeds = require_tensor(tensors, "prompt_embeds", file);
    check(p.embeds, file, "prompt_embeds");
    if (uses_cfg()) {
      auto negative = require_tensor(tensors, "negative_prompt_embeds", file);
      check(negative, file, "negative_prompt_embeds");
      if (negative.sizes() != p.embeds.sizes()) {
        throw InputError(file + ": tensor 'negative_prompt_embeds' " + c10::str(negative.sizes()) +
                         " must have the shape of 'prompt_embeds' " + c10::str(p.embeds.sizes()));
      }
      p.embeds = at::cat({negative, p.embeds});  // [2B, L, T]: uncond first
    }
    p.source = "file:" + file;
  } else {
    const int64_t tokens =
        spec_.synthetic_tokens > 0 ? spec_.synthetic_tokens : config_.max_text_seq_length;
    const int64_t valid =
        spec_.synthetic_valid > 0 ? std::min(spec_.synthetic_valid, tokens) : tokens;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed) + 1);
    auto synthetic = [&](int64_t n) {  // [1, L, T], zero past n tokens
      return at::randn({1, tokens, text_dim}, gen) *
             at::arange(tokens).lt(n).to(at::kFloat).view({1, tokens, 1});
    };
    p.embeds = synthetic(valid);
    if (uses_cfg()) p.embeds = at::cat({synthetic(1), p.embeds});
    p.source = "synthetic:" + std::to_string(tokens) + "/" + std::to_string(valid);
  }
  p.embeds = p.embeds.to(spec_.device, spec_.dtype);
  return p;
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
  // The CFG batch [uncond; cond] as two branches of B samples each.
  TransformerInputs uncond = in, cond = in;
  uncond.prompt.embeds = prompt.embeds.narrow(0, 0, batch);
  cond.prompt.embeds = prompt.embeds.narrow(0, batch, batch);
  return {uncond, cond};
}

at::Tensor CogVideoXPipeline::scheduler_step(const std::vector<at::Tensor>& outputs, int step,
                                             const at::Tensor& latents) {
  // noise_pred.float(), the guidance mix in f32, the step on the model-dtype latents, and the
  // result cast back to the prompt dtype.
  at::Tensor noise_pred = outputs.at(0).to(at::kFloat);
  if (outputs.size() == 2) {
    noise_pred = noise_pred + spec_.guidance * (outputs[1].to(at::kFloat) - noise_pred);
  }
  return scheduler().step(noise_pred, step, latents).to(spec_.dtype);
}

at::Tensor CogVideoXPipeline::decode(const at::Tensor& latents) {
  if (!vae_) throw std::logic_error("decode called on a pipeline built without its VAE");
  // [B, F, C, H, W] -> [B, C, F, H, W], times 1 / scaling_factor as diffusers writes it.
  auto z = latents.permute({0, 2, 1, 3, 4}) * (1.0 / vae_config_.scaling_factor);
  return vae_->decode(z);  // [B, 3, F, H, W]
}

at::Tensor CogVideoXPipeline::postprocess(const at::Tensor& decoded) {
  // VideoProcessor: denormalize in the VAE's dtype, then float32 frames [F, H, W, 3].
  auto video = (decoded / 2 + 0.5).clamp(0, 1);
  return video[0].permute({1, 2, 3, 0}).to(at::kCPU, at::kFloat).contiguous();
}

int64_t CogVideoXPipeline::num_parameters() {
  int64_t n = 0;
  for (const auto& p : transformer_->parameters()) n += p.numel();
  return n;
}

}  // namespace ditbench
