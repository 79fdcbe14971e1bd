#pragma once
// WanPipeline (text-to-video) as diffusers runs it: UniPC multistep in flow mode (flow_shift 3.0,
// the Wan-AI *-Diffusers scheduler config; FlowMatchEuler when a checkpoint's scheduler config
// names it), classifier-free guidance as two passes (cond, then uncond) mixed in the model dtype,
// int64 timesteps, latents kept in float32 and fed to the model in its dtype, decode of
// latents * std + mean by the float32 VAE, frames = clamp(video / 2 + 0.5, 0, 1).
#include <memory>
#include <optional>

#include "models/common/family_pipeline.h"
#include "models/schedulers/flow_match_euler.h"
#include "models/schedulers/unipc_multistep.h"
#include "models/wan/config.h"
#include "models/wan/transformer.h"
#include "models/wan/vae.h"

namespace ditbench {

class WanPipeline : public FamilyPipeline<WanConfig, WanTransformer3DModel, WanVAEConfig,
                                          AutoencoderKLWanDecoder> {
 public:
  explicit WanPipeline(const PipelineSpec& spec);

  std::vector<std::string> quant_include() const override;
  // "wan2.1-t2v-1.3b" for the 1.3B width (and the tiny preset), else "wan2.1-t2v-14b".
  std::string teacache_coefficients() const override;
  // CFG as diffusers decides it: guidance > 1.
  bool uses_cfg() const override { return spec_.guidance > 1.0; }

  // Prompt embeddings [B, L, text_dim] (zero past each prompt's length) with, under CFG, the
  // negative prompt's stacked behind: embeds [2, L, text_dim] = [cond; uncond].
  PromptEmbeds encode_prompt(int64_t seed) override;
  at::Tensor prepare_latents(int64_t seed) override;
  int set_timesteps(int steps) override;
  // One call per CFG branch: cond first, then uncond (as the pipeline runs them).
  std::vector<TransformerInputs> step_inputs(const at::Tensor& latents, int step,
                                             const PromptEmbeds& prompt) override;
  at::Tensor scheduler_step(const std::vector<at::Tensor>& outputs, int step,
                            const at::Tensor& latents) override;
  at::Tensor decode(const at::Tensor& latents) override;
  // Wan's examples export at 16 fps.
  double fps() const override { return 16.0; }

  // [1, C, (F - 1) / 4 + 1, H / 8, W / 8]
  std::vector<int64_t> latent_shape() const;

 private:
  UniPCMultistepScheduler unipc_;
  std::optional<FlowMatchEulerScheduler> euler_;  // set when the checkpoint asks for it
};

// The VAE configuration that goes with a transformer preset when no checkpoint gives one: the
// released VAE, or a small one with the released strides for the tiny preset.
WanVAEConfig wan_vae_preset(const std::string& preset, const WanConfig& transformer);

}  // namespace ditbench
