#pragma once
// HunyuanVideoPipeline as diffusers runs it: FlowMatchEuler with shift 7 over
// linspace(1, 0, N + 1)[:-1], embedded guidance (bf16(g) * 1000), no CFG, latents drawn in float32
// from a CPU generator, decode of latents / scaling_factor, frames = clamp(video / 2 + 0.5, 0, 1).
#include <memory>

#include "models/common/family_pipeline.h"
#include "models/hunyuan_video/config.h"
#include "models/hunyuan_video/transformer.h"
#include "models/hunyuan_video/vae.h"
#include "models/pipeline.h"
#include "models/schedulers/flow_match_euler.h"

namespace ditbench {

class HunyuanVideoPipeline
    : public FamilyPipeline<HunyuanVideoConfig, HunyuanVideoTransformer3DModel,
                            HunyuanVideoVAEConfig, AutoencoderKLHunyuanVideoDecoder> {
 public:
  explicit HunyuanVideoPipeline(const PipelineSpec& spec);

  std::vector<std::string> quant_include() const override;
  std::string teacache_coefficients() const override { return "hunyuan-video"; }

  PromptEmbeds encode_prompt(int64_t seed) override;
  at::Tensor prepare_latents(int64_t seed) override;
  int set_timesteps(int steps) override;
  std::vector<TransformerInputs> step_inputs(const at::Tensor& latents, int step,
                                             const PromptEmbeds& prompt) override;
  at::Tensor scheduler_step(const std::vector<at::Tensor>& outputs, int step,
                            const at::Tensor& latents) override;
  at::Tensor decode(const at::Tensor& latents) override;

  // 24 (HunyuanVideo's release), or the checkpoint's model_index.json "video": {"fps": ...}.
  double fps() const override { return fps_; }

  // [1, C, (F - 1) / t + 1, H / s, W / s]
  std::vector<int64_t> latent_shape() const;

 private:
  FlowMatchEulerScheduler scheduler_;
  double fps_ = 24.0;
};

// The VAE configuration that goes with a transformer preset when no checkpoint gives one.
HunyuanVideoVAEConfig hunyuan_video_vae_preset(const std::string& preset,
                                               const HunyuanVideoConfig& transformer);

}  // namespace ditbench
