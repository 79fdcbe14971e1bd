#pragma once
// A model family's pipeline as its reference implementation runs it: the transformer, the
// scheduler, the VAE, and the glue between them (latent shapes, timestep and guidance formats,
// prompt embeddings, CFG). The harness drives the denoising loop through this interface so that
// stage timing, caches and context parallelism are written once.
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "models/model.h"

namespace torch::nn {
class Module;
}

namespace ditbench {

// What the harness asks a family to build. Paths are already resolved.
struct PipelineSpec {
  std::string model;       // family name, e.g. "hunyuan-video"
  std::string preset;      // named config, or empty when `checkpoint` is given
  std::string checkpoint;  // diffusers-style folder holding transformer/ and vae/
  bool random_weights = false;
  at::ScalarType dtype = at::kBFloat16;
  at::Device device = at::kCPU;
  int64_t height = 0, width = 0, frames = 0;
  int steps = 0;
  double guidance = 6.0;
  std::string prompt_file;            // safetensors with prompt_embeds/...; empty = synthetic
  int64_t synthetic_tokens = 0;       // synthetic prompt length (0 = the family's default)
  int64_t synthetic_valid = 0;        // valid tokens of a synthetic prompt (0 = all)
  std::string noise_file;             // safetensors with a `noise` tensor; empty = seeded
  bool decode = true;                 // build and run the VAE
  std::string teacache_coefficients;  // the suite's TeaCache set when it names one, else empty
};

class DiffusionPipeline {
 public:
  virtual ~DiffusionPipeline() = default;

  virtual BlockTransformer& transformer() = 0;
  virtual torch::nn::Module& transformer_module() = 0;
  // Default FP8 layer selection of this family (regex on dotted module names).
  virtual std::vector<std::string> quant_include() const = 0;
  virtual std::vector<std::string> quant_exclude() const = 0;
  // The TeaCache coefficient set published for this family.
  virtual std::string teacache_coefficients() const = 0;
  virtual bool uses_cfg() const { return false; }
  virtual int64_t num_heads() const = 0;
  virtual int64_t head_dim() const = 0;

  // Stage `text_embed`: prompt embeddings (file or seeded synthetic) on the device.
  virtual PromptEmbeds encode_prompt(int64_t seed) = 0;
  // Stage `prepare_latents`: initial noise (from the noise file when given), on the device.
  virtual at::Tensor prepare_latents(int64_t seed) = 0;
  // Scheduler setup for `steps` steps; returns the number of denoising steps.
  virtual int set_timesteps(int steps) = 0;
  // The transformer calls of one step: one per CFG branch (one without CFG).
  virtual std::vector<TransformerInputs> step_inputs(const at::Tensor& latents, int step,
                                                     const PromptEmbeds& prompt) = 0;
  // Combines the branch outputs (CFG mix) and advances the latents.
  virtual at::Tensor scheduler_step(const std::vector<at::Tensor>& outputs, int step,
                                    const at::Tensor& latents) = 0;
  // Stage `vae_decode`: latents to decoded video in the VAE's value range, on the device.
  virtual at::Tensor decode(const at::Tensor& latents) = 0;
  // Stage `postprocess`: decoded video to frames [F, H, W, 3] float32 in [0, 1] on the CPU.
  virtual at::Tensor postprocess(const at::Tensor& decoded) = 0;

  // Frame rate of the videos this pipeline's reference exports (diffusers' export_to_video fps);
  // a suite's "fps" overrides it.
  virtual double fps() const { return 24.0; }

  // Facts for the record: number of parameters, how the weights were obtained.
  virtual int64_t num_parameters() = 0;
  virtual std::string weights_note() const = 0;
};

// A pipeline component's weights: a seeded random init at full size (`random`), or the diffusers
// folder `dir` (checkpoint keys starting with one of `ignore_prefixes` skipped, e.g. a VAE
// decoder's "encoder."); the module is put in eval mode. Load errors are InputErrors naming the
// folder.
void init_or_load_weights(torch::nn::Module& module, bool random, uint64_t seed,
                          const std::string& dir,
                          const std::vector<std::string>& ignore_prefixes = {});
// What records say about random weights.
const std::string& random_weights_note();

// The model families this build knows, their presets, and the factory.
struct FamilyInfo {
  std::string name;
  std::vector<std::string> presets;
  int64_t spatial_multiple;  // height and width must be multiples of this
  int64_t temporal_stride;   // (frames - 1) must be a multiple of this (1 = any)
  bool uses_cfg;
};
const std::vector<FamilyInfo>& model_families();
std::unique_ptr<DiffusionPipeline> create_pipeline(const PipelineSpec& spec);

// `ditbench parity DIR`: loads DIR/model (a diffusers transformer or VAE folder, dispatched on
// config.json's _class_name), runs DIR/io.safetensors' inputs and compares with its outputs.
struct FixtureParity {
  std::string model_class;
  double rel_error = 0;                    // ||out - ref|| / ||ref|| of the output
  std::vector<double> first_block_errors;  // each stream of the first block (transformers)
};
FixtureParity run_fixture_parity(const std::string& dir);

}  // namespace ditbench
