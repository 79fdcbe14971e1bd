#pragma once
// HunyuanVideoPipeline as diffusers runs it: FlowMatchEuler with shift 7 over
// linspace(1, 0, N + 1)[:-1], embedded guidance (bf16(g) * 1000), no CFG, latents drawn in float32
// from a CPU generator, decode of latents / scaling_factor, frames = clamp(video / 2 + 0.5, 0, 1).
#include <memory>

#include "models/hunyuan_video/config.h"
#include "models/hunyuan_video/transformer.h"
#include "models/hunyuan_video/vae.h"
#include "models/pipeline.h"
#include "models/schedulers/flow_match_euler.h"

namespace ditbench {

class HunyuanVideoPipeline : public DiffusionPipeline {
 public:
  explicit HunyuanVideoPipeline(const PipelineSpec& spec);

  BlockTransformer& transformer() override { return *transformer_; }
  torch::nn::Module& transformer_module() override { return *transformer_; }
  std::vector<std::string> quant_include() const override;
  std::vector<std::string> quant_exclude() const override;
  std::string teacache_coefficients() const override { return "hunyuan-video"; }
  int64_t num_heads() const override { return config_.num_attention_heads; }
  int64_t head_dim() const override { return config_.attention_head_dim; }

  PromptEmbeds encode_prompt(int64_t seed) override;
  at::Tensor prepare_latents(int64_t seed) override;
  int set_timesteps(int steps) override;
  std::vector<TransformerInputs> step_inputs(const at::Tensor& latents, int step,
                                             const PromptEmbeds& prompt) override;
  at::Tensor scheduler_step(const std::vector<at::Tensor>& outputs, int step,
                            const at::Tensor& latents) override;
  at::Tensor decode(const at::Tensor& latents) override;
  at::Tensor postprocess(const at::Tensor& decoded) override;

  int64_t num_parameters() override;
  std::string weights_note() const override { return weights_note_; }
  // 24 (HunyuanVideo's release), or the checkpoint's model_index.json "video": {"fps": ...}.
  double fps() const override { return fps_; }

  // [1, C, (F - 1) / t + 1, H / s, W / s]
  std::vector<int64_t> latent_shape() const;
  const HunyuanVideoConfig& config() const { return config_; }
  AutoencoderKLHunyuanVideoDecoder& vae() { return vae_; }

 private:
  PipelineSpec spec_;
  HunyuanVideoConfig config_;
  HunyuanVideoVAEConfig vae_config_;
  HunyuanVideoTransformer3DModel transformer_{nullptr};
  AutoencoderKLHunyuanVideoDecoder vae_{nullptr};
  FlowMatchEulerScheduler scheduler_;
  std::string weights_note_;
  double fps_ = 24.0;
};

// The VAE configuration that goes with a transformer preset when no checkpoint gives one.
HunyuanVideoVAEConfig hunyuan_video_vae_preset(const std::string& preset,
                                               const HunyuanVideoConfig& transformer);

}  // namespace ditbench
