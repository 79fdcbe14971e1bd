#pragma once
// The denoising loop of harness/generate.cpp for tests that link the models but not the harness:
// one transformer call per CFG branch (through a cache policy per branch when given), then the
// pipeline's scheduler step. Returns the final latents.
#include <c10/core/InferenceMode.h>

#include <memory>
#include <vector>

#include "models/pipeline.h"
#include "optimizations/cache/cache_policy.h"

namespace ditbench::testing {

inline at::Tensor run_denoise_loop(DiffusionPipeline& pipeline, int steps,
                                   std::vector<std::unique_ptr<CachePolicy>>* caches = nullptr,
                                   int64_t seed = 0) {
  c10::InferenceMode guard;
  auto prompt = pipeline.encode_prompt(seed);
  auto latents = pipeline.prepare_latents(seed);
  const int n = pipeline.set_timesteps(steps);
  for (int i = 0; i < n; ++i) {
    std::vector<at::Tensor> outputs;
    auto inputs = pipeline.step_inputs(latents, i, prompt);
    for (size_t b = 0; b < inputs.size(); ++b) {
      outputs.push_back(caches ? (*caches)[b]->forward(pipeline.transformer(), inputs[b], i, n)
                               : pipeline.transformer().forward(inputs[b]));
    }
    latents = pipeline.scheduler_step(outputs, i, latents);
  }
  return latents;
}

}  // namespace ditbench::testing
