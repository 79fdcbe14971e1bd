#pragma once
// FluxPipeline as diffusers runs it: latents [1, 16, h, w] drawn in the model dtype from a CPU
// generator and packed 2x2 into [1, (h/2)(w/2), 64] tokens with img_ids (0, row, col) and zero
// txt_ids; FlowMatchEuler over linspace(1, 1/n, n) with the resolution-dependent mu (FLUX.1-dev:
// dynamic shifting) or the static shift (schnell); embedded guidance g (f32, the model does
// bf16(g) * 1000), no CFG; timestep bf16(t) / 1000; decode of unpack(latents) / scaling_factor +
// shift_factor with the VAE's tiling enabled (enable_tiling(): only latents larger than one tile
// are tiled, i.e. images above 1024 x 1024 for the released VAE); frames = clamp(image / 2 + 0.5,
// 0, 1) as [1, H, W, 3].
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/common/family_pipeline.h"
#include "models/flux/config.h"
#include "models/flux/transformer.h"
#include "models/flux/vae.h"
#include "models/pipeline.h"
#include "models/schedulers/flow_match_euler.h"

namespace ditbench {

class FluxPipeline : public FamilyPipeline<FluxConfig, FluxTransformer2DModel, AutoencoderKLConfig,
                                           AutoencoderKLDecoder> {
 public:
  explicit FluxPipeline(const PipelineSpec& spec);

  std::vector<std::string> quant_include() const override;
  std::string teacache_coefficients() const override { return "flux"; }

  PromptEmbeds encode_prompt(int64_t seed) override;
  at::Tensor prepare_latents(int64_t seed) override;
  int set_timesteps(int steps) override;
  std::vector<TransformerInputs> step_inputs(const at::Tensor& latents, int step,
                                             const PromptEmbeds& prompt) override;
  at::Tensor scheduler_step(const std::vector<at::Tensor>& outputs, int step,
                            const at::Tensor& latents) override;
  at::Tensor decode(const at::Tensor& latents) override;
  // Images [1, H, W, 3].
  at::Tensor postprocess(const at::Tensor& decoded) override;

  // Unpacked latent size (h, w) = 2 * (H / (2 s)), 2 * (W / (2 s)) with s the VAE's factor.
  std::pair<int64_t, int64_t> latent_size() const;
  // The mu of the current size: FLUX's calculate_shift of (h/2)(w/2) image tokens.
  double mu() const;
  const FlowMatchEulerScheduler& scheduler() const { return scheduler_; }

 private:
  FlowMatchEulerScheduler scheduler_;
};

// FluxPipeline's 2x2 packing of latents: [B, C, h, w] -> [B, (h/2)(w/2), 4C], features (c, ph,
// pw); and its inverse.
at::Tensor pack_flux_latents(const at::Tensor& latents);
at::Tensor unpack_flux_latents(const at::Tensor& packed, int64_t height, int64_t width);
// img_ids of an (h/2) x (w/2) token grid: [(h/2)(w/2), 3] rows (0, row, col).
at::Tensor flux_image_ids(int64_t grid_height, int64_t grid_width,
                          const at::TensorOptions& options);

// The scheduler a FLUX checkpoint ships (scheduler/scheduler_config.json when present), else the
// FLUX.1-dev one (dynamic shifting) for guidance-distilled models and schnell's (shift 1)
// otherwise.
FlowMatchEulerConfig flux_scheduler_config(const std::string& checkpoint, bool guidance_embeds);
// The VAE that goes with a transformer preset when no checkpoint gives one.
AutoencoderKLConfig flux_vae_preset(const std::string& preset, const FluxConfig& transformer);

}  // namespace ditbench
