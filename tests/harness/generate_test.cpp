// One generation through harness/generate.cpp on a tiny model on the CPU.
#include <gtest/gtest.h>

#include "harness/generate.h"
#include "harness/timer.h"
#include "model_test_util.h"
#include "models/pipeline.h"
#include "optimizations/cache/cache_policy.h"

namespace ditbench {
namespace {

Generation generate_tiny(DiffusionPipeline& pipeline, bool postprocess) {
  std::vector<std::unique_ptr<CachePolicy>> caches;
  caches.push_back(make_cache_policy("none", CacheOptions{}));
  StageTimer timer(at::kCPU);
  GenerationSettings settings;
  settings.seed = 3;
  settings.steps = 2;
  settings.decode = true;
  settings.postprocess = postprocess;
  return generate(pipeline, caches, timer, settings);
}

// A rank whose frames nobody reads decodes (the parallel VAE needs every rank) but converts
// nothing: no frames, no postprocess stage, the same latents and decode as with frames.
TEST(Generate, WithoutPostprocessDecodesButHandsBackNoFrames) {
  auto spec = testing::tiny_cpu_spec("flux", "flux-tiny", 32, 48, 1);
  spec.decode = true;
  spec.steps = 2;
  spec.synthetic_tokens = 8;
  auto pipeline = create_pipeline(spec);

  const Generation with = generate_tiny(*pipeline, true);
  ASSERT_TRUE(with.frames.defined());
  EXPECT_EQ(with.frames.sizes(), (std::vector<int64_t>{1, 32, 48, 3}));
  EXPECT_EQ(with.timing.seconds("postprocess").size(), 1u);

  const Generation without = generate_tiny(*pipeline, false);
  EXPECT_FALSE(without.frames.defined());
  EXPECT_TRUE(without.timing.seconds("postprocess").empty());
  EXPECT_EQ(without.timing.seconds("vae_decode").size(), 1u);
  EXPECT_TRUE(at::equal(without.latents, with.latents));
}

}  // namespace
}  // namespace ditbench
