#include "models/flux/pipeline.h"

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
constexpr uint64_t kTransformerInitSeed = 0xf1a1;
constexpr uint64_t kVaeInitSeed = 0xf1a2;
// T5-XXL's max_sequence_length in FluxPipeline.
constexpr int64_t kTextTokens = 512;

}  // namespace

at::Tensor pack_flux_latents(const at::Tensor& latents) {
  const int64_t b = latents.size(0), c = latents.size(1);
  const int64_t h = latents.size(2), w = latents.size(3);
  // [B, C, h/2, 2, w/2, 2] -> [B, h/2, w/2, C, 2, 2] -> [B, (h/2)(w/2), 4C]
  return latents.view({b, c, h / 2, 2, w / 2, 2})
      .permute({0, 2, 4, 1, 3, 5})
      .reshape({b, (h / 2) * (w / 2), c * 4});
}

at::Tensor unpack_flux_latents(const at::Tensor& packed, int64_t height, int64_t width) {
  const int64_t b = packed.size(0), c = packed.size(2) / 4;
  // [B, h/2, w/2, C, 2, 2] -> [B, C, h/2, 2, w/2, 2] -> [B, C, h, w]
  return packed.view({b, height / 2, width / 2, c, 2, 2})
      .permute({0, 3, 1, 4, 2, 5})
      .reshape({b, c, height, width});
}

at::Tensor flux_image_ids(int64_t grid_height, int64_t grid_width,
                          const at::TensorOptions& options) {
  auto ids = at::zeros({grid_height, grid_width, 3}, options.dtype(at::kFloat));
  ids.select(2, 1).add_(at::arange(grid_height, options.dtype(at::kFloat)).unsqueeze(1));
  ids.select(2, 2).add_(at::arange(grid_width, options.dtype(at::kFloat)).unsqueeze(0));
  return ids.reshape({grid_height * grid_width, 3}).to(options.dtype());
}

FlowMatchEulerConfig flux_scheduler_config(const std::string& checkpoint, bool guidance_embeds) {
  FlowMatchEulerConfig c =
      guidance_embeds ? FlowMatchEulerConfig::flux_dev() : FlowMatchEulerConfig::flux_schnell();
  if (checkpoint.empty()) return c;
  const auto file = fs::path(checkpoint) / "scheduler" / "scheduler_config.json";
  if (!fs::exists(file)) return c;
  const auto j = read_config_file(file.string());
  const std::string source = file.string();
  read_config_double(j, source, "shift", c.shift);
  read_config_bool(j, source, "use_dynamic_shifting", c.use_dynamic_shifting);
  read_config_double(j, source, "base_shift", c.base_shift);
  read_config_double(j, source, "max_shift", c.max_shift);
  read_config_int(j, source, "base_image_seq_len", c.base_image_seq_len);
  read_config_int(j, source, "max_image_seq_len", c.max_image_seq_len);
  read_config_int(j, source, "num_train_timesteps", c.num_train_timesteps);
  return c;
}

AutoencoderKLConfig flux_vae_preset(const std::string& preset, const FluxConfig& transformer) {
  AutoencoderKLConfig vae;
  vae.latent_channels = transformer.latent_channels();
  if (preset == "flux-tiny") {
    // Small decoder with the released 8x factor, for CPU runs of the tiny transformer.
    vae.block_out_channels = {16, 16, 32, 32};
    vae.layers_per_block = 1;
    vae.norm_num_groups = 8;
  }
  return vae;
}

FluxPipeline::FluxPipeline(const PipelineSpec& spec) : FamilyPipeline(spec) {
  // The VAE's factor sets the latent size even when nothing is decoded.
  const auto dirs = checkpoint_folders(spec.checkpoint, /*need_vae=*/true);
  if (!spec.checkpoint.empty()) {
    config_ = FluxConfig::from_file(dirs.transformer);
    vae_config_ = AutoencoderKLConfig::from_file(dirs.vae);
  } else {
    config_ = flux_preset(spec.preset);
    vae_config_ = flux_vae_preset(spec.preset, config_);
  }
  if (vae_config_.latent_channels * 4 != config_.in_channels) {
    throw InputError("FLUX: the VAE's " + std::to_string(vae_config_.latent_channels) +
                     " latent channels do not pack into the transformer's " +
                     std::to_string(config_.in_channels) + " input channels");
  }
  const int64_t multiple = 2 * vae_config_.spatial_compression_ratio();
  if (spec.height % multiple || spec.width % multiple) {
    throw InputError("FLUX: height and width must be multiples of " + std::to_string(multiple) +
                     " (VAE factor x 2x2 packing), got " + std::to_string(spec.height) + "x" +
                     std::to_string(spec.width));
  }
  if (spec.frames != 1) {
    throw Unsupported("FLUX generates images: frames must be 1, got " +
                      std::to_string(spec.frames));
  }
  scheduler_ =
      FlowMatchEulerScheduler(flux_scheduler_config(spec.checkpoint, config_.guidance_embeds));

  build_transformer(dirs.transformer, kTransformerInitSeed);
  if (spec.decode) {
    build_vae(dirs.vae, kVaeInitSeed, {"encoder.", "quant_conv."}, spec.dtype);
    // Tiled decoding as diffusers' enable_tiling(): only latents larger than one tile (128 x 128
    // for the released VAE, i.e. above 1024 x 1024 pixels) are tiled.
    vae_->set_tiling(true);
  }
}

std::vector<std::string> FluxPipeline::quant_include() const {
  // Attention projections and MLPs of the dual- and single-stream blocks.
  return {"^transformer_blocks\\.\\d+\\.(attn|ff|ff_context)\\.",
          "^single_transformer_blocks\\.\\d+\\.(attn\\.|proj_mlp|proj_out)"};
}

std::pair<int64_t, int64_t> FluxPipeline::latent_size() const {
  const int64_t s = vae_config_.spatial_compression_ratio();
  return {2 * (spec_.height / (s * 2)), 2 * (spec_.width / (s * 2))};
}

double FluxPipeline::mu() const {
  const auto [h, w] = latent_size();
  return flux_mu((h / 2) * (w / 2), scheduler_.config());
}

PromptEmbeds FluxPipeline::encode_prompt(int64_t seed) {
  PromptEmbeds p;
  if (!spec_.prompt_file.empty()) {
    const auto& file = spec_.prompt_file;
    auto tensors = load_safetensors(file);
    p.embeds = require_prompt_embeds(tensors, file, "prompt_embeds", config_.joint_attention_dim);
    p.pooled = require_tensor(tensors, "pooled_prompt_embeds", file);
    if (p.pooled.dim() != 2 || p.pooled.size(0) != p.embeds.size(0) ||
        p.pooled.size(1) != config_.pooled_projection_dim) {
      throw InputError(file + ": tensor 'pooled_prompt_embeds' must be [B, " +
                       std::to_string(config_.pooled_projection_dim) + "]");
    }
    p.source = "file:" + file;
  } else {
    // Seeded stand-ins with the text encoders' shapes. FLUX attends to every T5 position (there
    // is no mask), so "valid" only decides where the stand-in embeddings are zero.
    SyntheticPrompt synthetic(spec_, seed, kTextTokens);
    p.embeds = synthetic.embeds(config_.joint_attention_dim, synthetic.valid());  // [1, L, T5]
    p.pooled = synthetic.randn_pooled(config_.pooled_projection_dim);             // [1, P]
    p.source = synthetic.source();
  }
  return prompt_on_device(p, spec_);
}

at::Tensor FluxPipeline::prepare_latents(int64_t seed) {
  const auto [h, w] = latent_size();
  // randn_tensor with a CPU torch.Generator, drawn in the prompt dtype as FluxPipeline does.
  auto latents =
      initial_noise({1, vae_config_.latent_channels, h, w}, seed, spec_.noise_file, spec_.dtype);
  return pack_flux_latents(latents).to(spec_.device);  // [1, (h/2)(w/2), 4C]
}

int FluxPipeline::set_timesteps(int steps) {
  std::optional<double> mu_value;
  if (scheduler_.config().use_dynamic_shifting) mu_value = mu();
  scheduler_.set_timesteps(steps, flux_sigmas(steps), mu_value, spec_.device);
  return static_cast<int>(scheduler_.num_steps());
}

std::vector<TransformerInputs> FluxPipeline::step_inputs(const at::Tensor& latents, int step,
                                                         const PromptEmbeds& prompt) {
  TransformerInputs in;
  const int64_t batch = latents.size(0);
  const auto dtype = latents.scalar_type();
  in.latents = latents;
  // t.expand(B).to(latents.dtype) / 1000, both rounded in the latents' dtype.
  in.timestep = scheduler_.timesteps()[step].expand({batch}).to(dtype) / 1000;
  // torch.full([1], g, dtype=float32).expand(B): the model rounds it.
  if (config_.guidance_embeds) {
    in.guidance = at::full({batch}, spec_.guidance, latents.options().dtype(at::kFloat));
  }
  const auto [h, w] = latent_size();
  in.image_ids = flux_image_ids(h / 2, w / 2, latents.options());          // [N, 3]
  in.text_ids = at::zeros({prompt.embeds.size(1), 3}, latents.options());  // [L, 3]
  in.prompt = prompt;
  return {in};
}

at::Tensor FluxPipeline::scheduler_step(const std::vector<at::Tensor>& outputs, int step,
                                        const at::Tensor& latents) {
  return scheduler_.step(outputs.at(0), step, latents);
}

at::Tensor FluxPipeline::decode(const at::Tensor& latents) {
  const auto [h, w] = latent_size();
  auto z = unpack_flux_latents(latents, h, w);  // [1, C, h, w]
  z = z / vae_config_.scaling_factor + vae_config_.shift_factor;
  return decoder()->decode(z);  // [1, 3, H, W]
}

at::Tensor FluxPipeline::postprocess(const at::Tensor& decoded) {
  // VaeImageProcessor: denormalize in the VAE's dtype, then float32 images [1, H, W, 3].
  auto image = (decoded / 2 + 0.5).clamp(0, 1);
  return image.permute({0, 2, 3, 1}).to(at::kCPU, at::kFloat).contiguous();
}

}  // namespace ditbench
