#include "models/mochi/pipeline.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
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

// Checks a prompt file's embeddings [B, L, text_dim] and mask [B, L].
void check_prompt_pair(const at::Tensor& embeds, const at::Tensor& mask, const std::string& file,
                       const std::string& embeds_name, const std::string& mask_name,
                       int64_t text_dim) {
  if (embeds.dim() != 3 || embeds.size(2) != text_dim) {
    throw InputError(file + ": tensor '" + embeds_name + "' must be [B, L, " +
                     std::to_string(text_dim) + "], got " + c10::str(embeds.sizes()));
  }
  if (mask.sizes() != embeds.sizes().slice(0, 2)) {
    throw InputError(file + ": tensor '" + mask_name + "' must be [B, L] like '" + embeds_name +
                     "', got " + c10::str(mask.sizes()));
  }
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
    : spec_(spec), scheduler_(FlowMatchEulerConfig::mochi()) {
  const auto options = at::TensorOptions().dtype(spec.dtype).device(spec.device);
  std::string transformer_dir, vae_dir;
  if (!spec.checkpoint.empty()) {
    transformer_dir = (fs::path(spec.checkpoint) / "transformer").string();
    vae_dir = (fs::path(spec.checkpoint) / "vae").string();
    if (!fs::exists(transformer_dir)) {
      throw InputError(spec.checkpoint + ": not a diffusers checkpoint folder (no transformer/)");
    }
    config_ = MochiConfig::from_file(transformer_dir);
    if (spec.decode) {
      if (!fs::exists(fs::path(vae_dir) / "config.json")) {
        throw InputError(spec.checkpoint + ": no vae/config.json");
      }
      vae_config_ = MochiVAEConfig::from_file(vae_dir);
    }
  } else {
    config_ = mochi_preset(spec.preset);
    vae_config_ = mochi_vae_preset(spec.preset, config_);
  }
  if (spec.decode && vae_config_.latent_channels != config_.in_channels) {
    throw InputError(spec.checkpoint + ": the VAE has " +
                     std::to_string(vae_config_.latent_channels) +
                     " latent channels, the transformer " + std::to_string(config_.in_channels));
  }

  transformer_ = MochiTransformer3DModel(config_, options);
  init_or_load_weights(*transformer_, spec.random_weights, kTransformerInitSeed, transformer_dir);
  if (spec.random_weights) weights_note_ = random_weights_note();
  if (spec.decode) {
    vae_ = AutoencoderKLMochiDecoder(vae_config_, options);
    init_or_load_weights(*vae_, spec.random_weights, kVaeInitSeed, vae_dir, {"encoder."});
    // diffusers' enable_vae_tiling(), which the released sizes need: 256-pixel tiles only where
    // the frame is larger than one, so small videos decode exactly as untiled.
    vae_->set_tiling(true);
  }
}

std::vector<std::string> MochiPipeline::quant_include() const {
  // Attention projections and MLPs of both streams.
  return {"^transformer_blocks\\.\\d+\\.(attn1|ff|ff_context)\\."};
}

std::vector<std::string> MochiPipeline::quant_exclude() const {
  // Embedders (patch, time, pooler, caption), modulation (norm*) and the output projection.
  return {"norm", "embed", "^proj_out"};
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
    p.embeds = require_tensor(tensors, "prompt_embeds", file);
    p.attention_mask = require_tensor(tensors, "prompt_attention_mask", file).to(at::kBool);
    check_prompt_pair(p.embeds, p.attention_mask, file, "prompt_embeds", "prompt_attention_mask",
                      config_.text_embed_dim);
    if (cfg) {
      auto negative = require_tensor(tensors, "negative_prompt_embeds", file);
      auto negative_mask =
          require_tensor(tensors, "negative_prompt_attention_mask", file).to(at::kBool);
      check_prompt_pair(negative, negative_mask, file, "negative_prompt_embeds",
                        "negative_prompt_attention_mask", config_.text_embed_dim);
      if (negative.sizes() != p.embeds.sizes()) {
        throw InputError(file + ": tensor 'negative_prompt_embeds' " + c10::str(negative.sizes()) +
                         " must have the shape of 'prompt_embeds' " + c10::str(p.embeds.sizes()));
      }
      p.embeds = at::cat({negative, p.embeds});  // [2B, L, T]: uncond first
      p.attention_mask = at::cat({negative_mask, p.attention_mask});
    }
    p.source = "file:" + file;
  } else {
    // Seeded stand-ins with T5's shapes: embeddings zero past the valid length.
    const int64_t tokens =
        spec_.synthetic_tokens > 0 ? spec_.synthetic_tokens : config_.max_sequence_length;
    const int64_t valid =
        spec_.synthetic_valid > 0 ? std::min(spec_.synthetic_valid, tokens) : tokens;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed) + 1);
    auto synthetic = [&](int64_t n) {
      auto mask = at::arange(tokens).lt(n).unsqueeze(0);  // [1, L]
      auto embeds = at::randn({1, tokens, config_.text_embed_dim}, gen) *
                    mask.unsqueeze(-1).to(at::kFloat);  // [1, L, T]
      return std::pair{embeds, mask};
    };
    std::tie(p.embeds, p.attention_mask) = synthetic(valid);
    if (cfg) {
      auto [negative, negative_mask] = synthetic(1);
      p.embeds = at::cat({negative, p.embeds});
      p.attention_mask = at::cat({negative_mask, p.attention_mask});
    }
    p.source = "synthetic:" + std::to_string(tokens) + "/" + std::to_string(valid);
  }
  p.embeds = p.embeds.to(spec_.device, spec_.dtype);
  p.attention_mask = p.attention_mask.to(spec_.device);
  return p;
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
  if (!uses_cfg()) {
    in.prompt = prompt;
    return {in};
  }
  // The CFG batch [uncond; cond] as two branches of B samples each.
  TransformerInputs uncond = in, cond = in;
  for (auto [branch, start] : {std::pair{&uncond, int64_t{0}}, std::pair{&cond, batch}}) {
    branch->prompt = prompt;
    branch->prompt.embeds = prompt.embeds.narrow(0, start, batch);
    branch->prompt.attention_mask = prompt.attention_mask.narrow(0, start, batch);
  }
  return {uncond, cond};
}

at::Tensor MochiPipeline::scheduler_step(const std::vector<at::Tensor>& outputs, int step,
                                         const at::Tensor& latents) {
  // CFG and sampling run in f32; the latents go back to their dtype.
  at::Tensor noise_pred = outputs.at(0).to(at::kFloat);
  if (outputs.size() == 2) {
    noise_pred = noise_pred + spec_.guidance * (outputs[1].to(at::kFloat) - noise_pred);
  }
  return scheduler_.step(noise_pred, step, latents.to(at::kFloat)).to(latents.scalar_type());
}

at::Tensor MochiPipeline::decode(const at::Tensor& latents) {
  if (!vae_) throw std::logic_error("decode called on a pipeline built without its VAE");
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
  return vae_->decode(z);  // [B, 3, F, H, W]
}

at::Tensor MochiPipeline::postprocess(const at::Tensor& decoded) {
  // VideoProcessor: denormalize in the VAE's dtype, then float32 frames [F, H, W, 3].
  auto video = (decoded / 2 + 0.5).clamp(0, 1);
  return video[0].permute({1, 2, 3, 0}).to(at::kCPU, at::kFloat).contiguous();
}

int64_t MochiPipeline::num_parameters() {
  int64_t n = 0;
  for (const auto& p : transformer_->parameters()) n += p.numel();
  return n;
}

}  // namespace ditbench
