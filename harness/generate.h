#pragma once
// One generation of a pipeline, every stage under the StageTimer with DESIGN.md's names:
// e2e = text_embed + prepare_latents + denoise (step = transformer + scheduler, per step) +
// vae_decode + postprocess. Caches decide per step and per CFG branch.
#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include "harness/timer.h"
#include "models/pipeline.h"
#include "optimizations/cache/cache_policy.h"

namespace ditbench {

struct GenerationSettings {
  int64_t seed = 0;
  int steps = 0;
  bool decode = true;
  // With decode: whether the decoded video becomes frames (stage postprocess). A rank whose
  // frames nobody reads (every rank but 0 of a parallel launch) decodes, as the parallel VAE
  // needs every rank, but skips the conversion and its host copy.
  bool postprocess = true;
  // Stop with an error past this point in time (checked between steps).
  std::optional<std::chrono::steady_clock::time_point> deadline;
  // Checked between steps; throwing from it aborts the generation (interruption).
  std::function<void()> check_interrupt;
  // Called as denoising step i starts and once it has ended (the runner attributes
  // communication time to steps with them).
  std::function<void(int step)> on_step_begin, on_step_end;
  // The transformer the caches run, when not the pipeline's own (a wrapper of it, e.g. the
  // graph-captured one of the suite axis `graphs`). Not owned.
  BlockTransformer* transformer = nullptr;
};

struct Generation {
  at::Tensor latents;  // final latents, on the pipeline's device
  at::Tensor frames;   // [F, H, W, 3] float32 on the CPU (undefined without decode or postprocess)
  TimingResult timing;
  // [step] this rank's transformer arithmetic (FlopCount: GEMMs and attention) in each step.
  std::vector<double> step_flops;
};

// `caches` holds one policy per CFG branch of the pipeline.
Generation generate(DiffusionPipeline& pipeline, std::vector<std::unique_ptr<CachePolicy>>& caches,
                    StageTimer& timer, const GenerationSettings& settings);

}  // namespace ditbench
