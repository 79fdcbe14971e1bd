#include "models/wan/pipeline.h"

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
constexpr uint64_t kTransformerInitSeed = 0x3a11;
constexpr uint64_t kVaeInitSeed = 0x3a12;
constexpr int64_t kMaxSequenceLength = 512;  // the pipeline pads the UMT5 states to this

// Embeddings [B, L, T] with rows past each prompt's valid length set to zero, as the pipeline
// pads the encoder states; mask [B, L] bool.
at::Tensor zero_padded(const at::Tensor& embeds, const at::Tensor& mask) {
  return embeds * mask.unsqueeze(-1).to(embeds.scalar_type());
}

}  // namespace

WanVAEConfig wan_vae_preset(const std::string& preset, const WanConfig& transformer) {
  WanVAEConfig vae;
  if (preset == "wan-tiny") {
    vae.base_dim = 8;
    vae.z_dim = transformer.in_channels;
    vae.dim_mult = {1, 2, 2, 2};
    vae.num_res_blocks = 1;
    vae.latents_mean.assign(static_cast<size_t>(vae.z_dim), 0.0);
    vae.latents_std.assign(static_cast<size_t>(vae.z_dim), 1.0);
  }
  return vae;
}

WanPipeline::WanPipeline(const PipelineSpec& spec) : FamilyPipeline(spec) {
  const auto dirs = checkpoint_folders(spec.checkpoint, spec.decode);
  if (!spec.checkpoint.empty()) {
    config_ = WanConfig::from_file(dirs.transformer);
    if (spec.decode) vae_config_ = WanVAEConfig::from_file(dirs.vae);
    // The scheduler the checkpoint ships: UniPC (flow_shift) or FlowMatchEuler (shift).
    const auto scheduler_file = fs::path(spec.checkpoint) / "scheduler" / "scheduler_config.json";
    if (fs::exists(scheduler_file)) {
      const auto j = read_config_file(scheduler_file.string());
      std::string cls;
      read_config_string(j, scheduler_file.string(), "_class_name", cls);
      if (cls == "FlowMatchEulerDiscreteScheduler") {
        FlowMatchEulerConfig euler;
        read_config_double(j, scheduler_file.string(), "shift", euler.shift);
        euler_.emplace(euler);
      } else if (cls == "UniPCMultistepScheduler") {
        double shift = unipc_.config().flow_shift;
        read_config_double(j, scheduler_file.string(), "flow_shift", shift);
        unipc_ = UniPCMultistepScheduler(UniPCConfig::wan(shift));
      } else {
        throw Unsupported(scheduler_file.string() + ": scheduler '" + cls +
                          "' is not implemented for Wan (UniPCMultistepScheduler, "
                          "FlowMatchEulerDiscreteScheduler)");
      }
    }
  } else {
    config_ = wan_preset(spec.preset);
    vae_config_ = wan_vae_preset(spec.preset, config_);
  }
  if (spec.decode) require_latent_channels(spec.checkpoint, vae_config_.z_dim, config_.in_channels);

  build_transformer(dirs.transformer, kTransformerInitSeed);
  // TeaCache4Wan2.1's ret-steps coefficient sets were fitted on the projected modulation.
  const std::string& tea = spec.teacache_coefficients;
  transformer_->set_teacache_uses_timestep_proj(tea.size() > 4 &&
                                                tea.compare(tea.size() - 4, 4, "-ret") == 0);

  if (spec.decode) {
    // The Wan model cards load the VAE in float32 whatever the transformer's dtype; diffusers'
    // pipeline then decodes in the VAE's dtype. Untiled, as the pipeline runs it.
    build_vae(dirs.vae, kVaeInitSeed, {"encoder.", "quant_conv."}, at::kFloat);
  }
}

std::vector<std::string> WanPipeline::quant_include() const {
  // Attention projections (self and cross) and the FFN of every block.
  return {"^blocks\\.\\d+\\.(attn1|attn2|ffn)\\."};
}

std::string WanPipeline::teacache_coefficients() const {
  return config_.inner_dim() <= 1536 ? "wan2.1-t2v-1.3b" : "wan2.1-t2v-14b";
}

std::vector<int64_t> WanPipeline::latent_shape() const {
  const int64_t t = vae_config_.scale_factor_temporal, s = vae_config_.scale_factor_spatial;
  return {1, config_.in_channels, (spec_.frames - 1) / t + 1, spec_.height / s, spec_.width / s};
}

PromptEmbeds WanPipeline::encode_prompt(int64_t seed) {
  PromptEmbeds p;
  at::Tensor cond, uncond, cond_mask, uncond_mask;
  if (!spec_.prompt_file.empty()) {
    const auto& file = spec_.prompt_file;
    const auto tensors = load_safetensors(file);
    cond = require_tensor(tensors, "prompt_embeds", file).to(at::kFloat);
    if (cond.dim() != 3 || cond.size(0) != 1 || cond.size(2) != config_.text_dim) {
      throw InputError(file + ": tensor 'prompt_embeds' must be [1, L, " +
                       std::to_string(config_.text_dim) + "], got " + c10::str(cond.sizes()));
    }
    // Optional masks say where each prompt ends; the embeddings are zeroed past it.
    auto mask_of = [&](const char* name, const at::Tensor& embeds) {
      if (!tensors.count(name)) return at::ones({1, embeds.size(1)}, at::kBool);
      auto m = tensors.at(name).to(at::kBool);
      if (m.sizes() != embeds.sizes().slice(0, 2)) {
        throw InputError(file + ": tensor '" + name + "' must be [1, L] like its embeddings");
      }
      return m;
    };
    cond_mask = mask_of("prompt_attention_mask", cond);
    if (uses_cfg()) {
      uncond = require_tensor(tensors, "negative_prompt_embeds", file).to(at::kFloat);
      if (uncond.sizes() != cond.sizes()) {
        throw InputError(file +
                         ": tensor 'negative_prompt_embeds' must have prompt_embeds' shape " +
                         c10::str(cond.sizes()) + ", got " + c10::str(uncond.sizes()));
      }
      uncond_mask = mask_of("negative_prompt_attention_mask", uncond);
    }
    p.source = "file:" + file;
  } else {
    // Seeded stand-ins with UMT5's shapes: the prompt's states, and the empty negative prompt's
    // single token (its end-of-sequence state), zero-padded to the sequence length.
    SyntheticPrompt synthetic(spec_, seed, kMaxSequenceLength);
    cond = synthetic.randn(config_.text_dim);
    cond_mask = synthetic.mask(synthetic.valid());
    if (uses_cfg()) {
      uncond = synthetic.randn(config_.text_dim);
      uncond_mask = synthetic.mask(1);
    }
    p.source = synthetic.source();
  }
  p.embeds = zero_padded(cond, cond_mask);
  p.attention_mask = cond_mask;
  if (uses_cfg()) {
    p.embeds = at::cat({p.embeds, zero_padded(uncond, uncond_mask)}, 0);  // [2, L, T]
    p.attention_mask = at::cat({cond_mask, uncond_mask}, 0);
  }
  return prompt_on_device(p, spec_);
}

at::Tensor WanPipeline::prepare_latents(int64_t seed) {
  // randn_tensor with a CPU torch.Generator in float32 (the Python pipeline's numbers), or the
  // file.
  return initial_noise(latent_shape(), seed, spec_.noise_file, at::kFloat).to(spec_.device);
}

int WanPipeline::set_timesteps(int steps) {
  if (euler_) {
    euler_->set_timesteps(steps, {}, {}, spec_.device);
    return static_cast<int>(euler_->num_steps());
  }
  unipc_.set_timesteps(steps, spec_.device);
  return static_cast<int>(unipc_.num_steps());
}

std::vector<TransformerInputs> WanPipeline::step_inputs(const at::Tensor& latents, int step,
                                                        const PromptEmbeds& prompt) {
  const Scheduler& scheduler = euler_ ? static_cast<const Scheduler&>(*euler_) : unipc_;
  TransformerInputs in;
  const int64_t batch = latents.size(0);
  in.latents = latents.to(spec_.dtype);
  in.timestep = scheduler.timesteps()[step].expand({batch});  // int64 (UniPC) or f32 (Euler)
  std::vector<TransformerInputs> calls;
  const int64_t branches = uses_cfg() ? 2 : 1;
  for (int64_t b = 0; b < branches; ++b) {  // cond, then uncond
    TransformerInputs branch = in;
    branch.prompt.embeds = prompt.embeds.narrow(0, b, 1).expand({batch, -1, -1});
    branch.prompt.source = prompt.source;
    calls.push_back(std::move(branch));
  }
  return calls;
}

at::Tensor WanPipeline::scheduler_step(const std::vector<at::Tensor>& outputs, int step,
                                       const at::Tensor& latents) {
  at::Tensor noise_pred = outputs.at(0);
  if (uses_cfg()) {
    // uncond + g·(cond − uncond) in the model output's dtype (a Python float never promotes).
    const at::Tensor& uncond = outputs.at(1);
    noise_pred = uncond + spec_.guidance * (noise_pred - uncond);
  }
  if (euler_) return euler_->step(noise_pred, step, latents);
  return unipc_.step(noise_pred, step, latents);
}

at::Tensor WanPipeline::decode(const at::Tensor& latents) {
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(latents.device());
  const int64_t z = vae_config_.z_dim;
  const auto mean = at::tensor(vae_config_.latents_mean, at::kDouble).to(f32).view({1, z, 1, 1, 1});
  const auto inv_std =
      1.0 / at::tensor(vae_config_.latents_std, at::kDouble).to(f32).view({1, z, 1, 1, 1});
  // latents / (1 / std) + mean, in the VAE's float32, as the pipeline writes it.
  return decoder()->decode(latents.to(at::kFloat) / inv_std + mean);  // [B, 3, F, H, W]
}

}  // namespace ditbench
