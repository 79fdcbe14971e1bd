#pragma once
// CogVideoXPipeline as diffusers runs it: CogVideoXDDIMScheduler (or CogVideoXDPMScheduler when
// the checkpoint's scheduler config names it) with integer timesteps, CFG as two branches
// [uncond, cond] mixed in f32 (guidance 6 by default, dynamic CFG off), latents [B, F', C, h, w]
// drawn in the model dtype from a CPU generator and cast back to it after every step, decode of
// the channels-first latents / scaling_factor, frames = clamp(video / 2 + 0.5, 0, 1).
#include <memory>
#include <variant>

#include "models/cogvideox/config.h"
#include "models/cogvideox/scheduler.h"
#include "models/cogvideox/transformer.h"
#include "models/cogvideox/vae.h"
#include "models/common/family_pipeline.h"
#include "models/pipeline.h"

namespace ditbench {

class CogVideoXPipeline : public FamilyPipeline<CogVideoXConfig, CogVideoXTransformer3DModel,
                                                CogVideoXVAEConfig, AutoencoderKLCogVideoXDecoder> {
 public:
  explicit CogVideoXPipeline(const PipelineSpec& spec);

  std::vector<std::string> quant_include() const override;
  // "cogvideox-5b" for the rotary (5b) models, else "cogvideox-2b".
  std::string teacache_coefficients() const override;
  // diffusers' do_classifier_free_guidance: guidance_scale > 1.
  bool uses_cfg() const override { return spec_.guidance > 1.0; }

  // With CFG the embeddings are the batch [negative; positive]. A prompt file holds
  // prompt_embeds [B, L, 4096] (and negative_prompt_embeds of the same shape with CFG); T5 runs
  // without a mask and the transformer attends to every token. Synthetic prompts have
  // `synthetic_tokens` (default 226) tokens, zero past `synthetic_valid`; the synthetic negative
  // prompt has one non-zero token (T5's end token of "").
  PromptEmbeds encode_prompt(int64_t seed) override;
  at::Tensor prepare_latents(int64_t seed) override;
  int set_timesteps(int steps) override;
  std::vector<TransformerInputs> step_inputs(const at::Tensor& latents, int step,
                                             const PromptEmbeds& prompt) override;
  at::Tensor scheduler_step(const std::vector<at::Tensor>& outputs, int step,
                            const at::Tensor& latents) override;
  at::Tensor decode(const at::Tensor& latents) override;
  // diffusers' CogVideoX examples export at 8 fps.
  double fps() const override { return 8.0; }

  // [1, (F - 1) / 4 + 1, C, H / 8, W / 8] (frames before channels)
  std::vector<int64_t> latent_shape() const;
  Scheduler& scheduler();
  bool uses_dpm() const { return dpm_ != nullptr; }

 private:
  std::unique_ptr<CogVideoXDDIMScheduler> ddim_;
  std::unique_ptr<CogVideoXDPMScheduler> dpm_;
};

// The VAE configuration that goes with a transformer preset when no checkpoint gives one: the
// released VAE (scaling 1.15258426 for 2b, 0.7 for 5b), or for the tiny preset a narrow decoder
// with the released strides.
CogVideoXVAEConfig cogvideox_vae_preset(const std::string& preset,
                                        const CogVideoXConfig& transformer);
// The scheduler configuration of a preset: snr_shift_scale 3.0 (2b, tiny) or 1.0 (5b).
CogVideoXSchedulerConfig cogvideox_scheduler_preset(const std::string& preset);

}  // namespace ditbench
