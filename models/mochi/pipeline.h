#pragma once
// MochiPipeline as diffusers runs it: FlowMatchEuler with inverted sigmas over Mochi's
// linear-quadratic schedule, CFG as two branches [uncond, cond] mixed in f32 (guidance 4.5 by
// default in the suites), timesteps rounded to the latents' dtype, latents drawn in float32 from
// a CPU generator and kept in the model dtype, the scheduler step in f32, decode of
// latents * std / scaling_factor + mean, frames = clamp(video / 2 + 0.5, 0, 1).
#include <memory>
#include <string>
#include <vector>

#include "models/common/family_pipeline.h"
#include "models/mochi/config.h"
#include "models/mochi/transformer.h"
#include "models/mochi/vae.h"
#include "models/pipeline.h"
#include "models/schedulers/flow_match_euler.h"

namespace ditbench {

class MochiPipeline : public FamilyPipeline<MochiConfig, MochiTransformer3DModel, MochiVAEConfig,
                                            AutoencoderKLMochiDecoder> {
 public:
  explicit MochiPipeline(const PipelineSpec& spec);

  std::vector<std::string> quant_include() const override;
  std::string teacache_coefficients() const override { return "mochi"; }
  // diffusers' do_classifier_free_guidance: guidance_scale > 1.
  bool uses_cfg() const override { return spec_.guidance > 1.0; }

  // With CFG the embeddings are the batch [negative; positive] (diffusers' order), each part
  // padded to the same length. A prompt file holds prompt_embeds and prompt_attention_mask, and
  // negative_prompt_embeds and negative_prompt_attention_mask when CFG is on. Synthetic prompts
  // have `synthetic_tokens` (default max_sequence_length) tokens of which `synthetic_valid` are
  // valid; the synthetic negative prompt has one valid token (T5's end token of "").
  PromptEmbeds encode_prompt(int64_t seed) override;
  at::Tensor prepare_latents(int64_t seed) override;
  int set_timesteps(int steps) override;
  std::vector<TransformerInputs> step_inputs(const at::Tensor& latents, int step,
                                             const PromptEmbeds& prompt) override;
  at::Tensor scheduler_step(const std::vector<at::Tensor>& outputs, int step,
                            const at::Tensor& latents) override;
  at::Tensor decode(const at::Tensor& latents) override;
  // diffusers' Mochi examples export at 30 fps.
  double fps() const override { return 30.0; }

  // [1, C, (F - 1) / 6 + 1, H / 8, W / 8]
  std::vector<int64_t> latent_shape() const;
  const FlowMatchEulerScheduler& scheduler() const { return scheduler_; }

 private:
  FlowMatchEulerScheduler scheduler_;
};

// The VAE configuration that goes with a transformer preset when no checkpoint gives one: the
// released VAE, or for the tiny preset a narrow decoder with the released strides.
MochiVAEConfig mochi_vae_preset(const std::string& preset, const MochiConfig& transformer);

}  // namespace ditbench
