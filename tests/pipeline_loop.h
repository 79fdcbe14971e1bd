#pragma once
// The denoising loop of harness/generate.cpp for tests that link the models but not the harness:
// one transformer call per CFG branch (through a cache policy per branch when given), then the
// pipeline's scheduler step. Returns the final latents.
#include <c10/core/InferenceMode.h>

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
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

using BranchCaches = std::vector<std::unique_ptr<CachePolicy>>;

// One policy `name` per CFG branch [uncond, cond].
inline BranchCaches cfg_branch_caches(const std::string& name, const CacheOptions& options) {
  BranchCaches caches;
  for (int b = 0; b < 2; ++b) caches.push_back(make_cache_policy(name, options));
  return caches;
}

// FBCache and TeaCache (with the pipeline's coefficient set) at threshold 0 change nothing over
// `steps` steps of a CFG pipeline: the latents are those of the uncached loop, no step is reused
// and every step is recorded; `check` (when given) sees each policy's caches afterwards. Returns
// the uncached latents.
inline at::Tensor expect_zero_threshold_caches_change_nothing(
    DiffusionPipeline& pipeline, int steps,
    const std::function<void(const std::string&, const BranchCaches&)>& check = nullptr) {
  const auto baseline = run_denoise_loop(pipeline, steps);
  for (const char* name : {"fbcache", "teacache"}) {
    SCOPED_TRACE(name);
    CacheOptions options;
    options.teacache_coefficients = pipeline.teacache_coefficients();
    auto caches = cfg_branch_caches(name, options);
    EXPECT_TRUE(at::equal(run_denoise_loop(pipeline, steps, &caches), baseline));
    EXPECT_EQ(caches[0]->reused_steps(), 0);
    EXPECT_EQ(caches[1]->records().size(), static_cast<size_t>(steps));
    if (check) check(name, caches);
  }
  return baseline;
}

}  // namespace ditbench::testing
