#pragma once
// What the model families' pipelines share: the transformer and VAE they own and build (seeded
// random or from a diffusers checkpoint folder), the records' facts, the frames of a decoded
// video, prompt files and synthetic prompts, and classifier-free guidance over branch outputs.
#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "models/pipeline.h"

namespace ditbench {

// The components of a diffusers checkpoint folder: transformer/ and vae/ (empty when
// `checkpoint` is, i.e. for a preset). InputError naming the folder when it has no
// transformer/, or no vae/config.json while `need_vae`.
struct CheckpointFolders {
  std::string transformer, vae;
  std::string vae_config_file() const;  // vae/config.json
};
CheckpointFolders checkpoint_folders(const std::string& checkpoint, bool need_vae);

// InputError unless the VAE's latent channels are the transformer's input channels.
void require_latent_channels(const std::string& source, int64_t vae_channels,
                             int64_t transformer_channels);

// Decoded video [B, 3, F, H, W] in [-1, 1] to the first sample's frames [F, H, W, 3] float32 in
// [0, 1] on the CPU, as diffusers' VideoProcessor denormalizes (in the VAE's dtype).
at::Tensor video_frames(const at::Tensor& decoded);
// The same frames on `decoded`'s device: video_frames copies them to the host in one piece
// (from a GPU into page-locked host memory).
at::Tensor video_frames_on_device(const at::Tensor& decoded);

int64_t count_parameters(torch::nn::Module& module);

// A prompt file's tensor `name` [B, L, width]; InputError naming the file and tensor otherwise.
at::Tensor require_prompt_embeds(const std::map<std::string, at::Tensor>& tensors,
                                 const std::string& file, const std::string& name, int64_t width);
// InputError unless the negative prompt's tensor has the shape of the prompt's.
void require_same_shape(const at::Tensor& negative, const at::Tensor& positive,
                        const std::string& file, const std::string& negative_name,
                        const std::string& positive_name);

// The prompt on the spec's device: embeddings and pooled embeddings in its dtype, the mask (when
// there is one) as it is.
PromptEmbeds prompt_on_device(PromptEmbeds p, const PipelineSpec& spec);

// Seeded stand-ins for a text encoder's output: `tokens` positions (the suite's synthetic_tokens,
// else the family's default) of which `valid` (synthetic_valid, else all) are real, drawn from a
// CPU generator seeded with seed + 1.
class SyntheticPrompt {
 public:
  SyntheticPrompt(const PipelineSpec& spec, int64_t seed, int64_t default_tokens);

  int64_t tokens() const { return tokens_; }
  int64_t valid() const { return valid_; }
  // [1, L] bool, true for the first n positions.
  at::Tensor mask(int64_t n) const;
  // randn [1, L, width] (or [1, width] without positions) from the generator.
  at::Tensor randn(int64_t width);
  at::Tensor randn_pooled(int64_t width);
  // randn [1, L, width], zero past the first n positions.
  at::Tensor embeds(int64_t width, int64_t n);
  // "synthetic:<tokens>/<valid>"
  std::string source() const;

 private:
  int64_t tokens_, valid_;
  at::Generator gen_;
};

// The CFG batch [uncond; cond] of `in.prompt` (2B samples, masks when present) as two calls of B
// samples each.
std::vector<TransformerInputs> split_cfg_branches(const TransformerInputs& in, int64_t batch);
// uncond + g (cond - uncond) of branch outputs {uncond, cond} in float32 (one output: itself in
// float32).
at::Tensor cfg_mix_f32(const std::vector<at::Tensor>& outputs, double guidance);

// A seeded random (spec.random_weights) or loaded `Module` built from `config` in `options`.
template <typename Module, typename ModuleConfig>
Module build_component(const ModuleConfig& config, const at::TensorOptions& options,
                       const PipelineSpec& spec, uint64_t random_seed, const std::string& dir,
                       const std::vector<std::string>& ignore_prefixes = {}) {
  Module module(config, options);
  init_or_load_weights(*module, spec.random_weights, random_seed, dir, ignore_prefixes);
  return module;
}

// A family's pipeline with a transformer of type Transformer (config Config) and a VAE decoder
// of type Vae (config VaeConfig). The family sets config_ and vae_config_ and calls
// build_transformer and, when the spec decodes, build_vae.
template <typename Config, typename Transformer, typename VaeConfig, typename Vae>
class FamilyPipeline : public DiffusionPipeline {
 public:
  BlockTransformer& transformer() override { return *transformer_; }
  torch::nn::Module& transformer_module() override { return *transformer_; }
  // Embedders, modulation (norm*) and the output projection stay in the model dtype.
  std::vector<std::string> quant_exclude() const override { return {"norm", "embed", "^proj_out"}; }
  int64_t num_heads() const override { return config_.num_attention_heads; }
  int64_t head_dim() const override { return config_.attention_head_dim; }
  at::Tensor postprocess(const at::Tensor& decoded) override { return video_frames(decoded); }
  int64_t num_parameters() override { return count_parameters(*transformer_); }
  std::string weights_note() const override { return weights_note_; }

  const Config& config() const { return config_; }
  const VaeConfig& vae_config() const { return vae_config_; }
  Vae& vae() { return vae_; }

 protected:
  explicit FamilyPipeline(const PipelineSpec& spec) : spec_(spec) {}

  at::TensorOptions options() const {
    return at::TensorOptions().dtype(spec_.dtype).device(spec_.device);
  }
  void build_transformer(const std::string& dir, uint64_t random_seed) {
    transformer_ = build_component<Transformer>(config_, options(), spec_, random_seed, dir);
    if (spec_.random_weights) weights_note_ = random_weights_note();
  }
  void build_vae(const std::string& dir, uint64_t random_seed,
                 const std::vector<std::string>& ignore_prefixes, at::ScalarType dtype) {
    vae_ = build_component<Vae>(vae_config_, options().dtype(dtype), spec_, random_seed, dir,
                                ignore_prefixes);
  }
  // The VAE, which only a pipeline built to decode has.
  Vae& decoder() {
    if (!vae_) throw std::logic_error("decode called on a pipeline built without its VAE");
    return vae_;
  }

  PipelineSpec spec_;
  Config config_;
  VaeConfig vae_config_;
  Transformer transformer_{nullptr};
  Vae vae_{nullptr};
  std::string weights_note_;
};

}  // namespace ditbench
