// Graph capture of the transformer's block segments (optimizations/graphs): replayed segments give
// the eager outputs step after step, with new inputs copied in, a new shape captured again and the
// caches deciding as they do eagerly -- with CUDA graphs on a GPU, and with the emulated replay
// (same copying and output ownership, no graph) on the CPU in every build; every family's state
// forks and lists its tensors, and the CUDA-graph wrapper refuses CPU states.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "models/checkpoint/checkpoint.h"
#include "models/common/error.h"
#include "models/common/flop_count.h"
#include "models/hunyuan_video/config.h"
#include "models/hunyuan_video/transformer.h"
#include "models/pipeline.h"
#include "optimizations/cache/cache_policy.h"
#include "optimizations/graphs/graphed_transformer.h"
#include "test_util.h"

namespace ditbench {
namespace {

using testing::rel_error;

// Inputs of the tiny preset: [B, C, F, H, W] latents and 12 text tokens (the last 3 padding).
TransformerInputs tiny_inputs(const HunyuanVideoConfig& config, const at::TensorOptions& options,
                              int64_t height, double timestep, uint64_t seed) {
  at::manual_seed(seed);
  TransformerInputs in;
  in.latents = at::randn({1, config.in_channels, 3, height, 8}).to(options);
  in.timestep = at::full({1}, timestep).to(options);
  in.guidance = at::full({1}, 6000.0).to(options);
  in.prompt.embeds = at::randn({1, 12, config.text_embed_dim}).to(options);
  in.prompt.pooled = at::randn({1, config.pooled_projection_dim}).to(options);
  auto mask = at::ones({1, 12}, at::kBool);
  mask.narrow(1, 9, 3).fill_(false);
  in.prompt.attention_mask = mask.to(options.device());
  return in;
}

HunyuanVideoTransformer3DModel tiny_model(const at::TensorOptions& options) {
  HunyuanVideoTransformer3DModel model(hunyuan_video_preset("hunyuan-video-tiny"), options);
  random_init(*model, 3);
  return model;
}

// ---- every build ----

// Every family's tiny preset: its fork holds the same tensors, and blocks run on the fork leave the
// original state's tensors (and model-private fields) where they were.
TEST(BlockStateFork, EveryFamilyForksAndListsItsState) {
  struct Case {
    const char *model, *preset;
    int64_t height, width, frames;
  };
  for (const Case& c :
       {Case{"hunyuan-video", "hunyuan-video-tiny", 64, 64, 5},
        Case{"flux", "flux-tiny", 64, 64, 1}, Case{"cogvideox", "cogvideox-tiny", 32, 48, 9},
        Case{"mochi", "mochi-tiny", 48, 48, 7}, Case{"wan", "wan-tiny", 64, 64, 9}}) {
    SCOPED_TRACE(c.model);
    torch::NoGradGuard no_grad;
    PipelineSpec spec;
    spec.model = c.model;
    spec.preset = c.preset;
    spec.random_weights = true;
    spec.dtype = at::kFloat;
    spec.height = c.height;
    spec.width = c.width;
    spec.frames = c.frames;
    spec.steps = 2;
    spec.decode = false;
    auto pipeline = create_pipeline(spec);
    BlockTransformer& model = pipeline->transformer();
    auto prompt = pipeline->encode_prompt(0);
    auto latents = pipeline->prepare_latents(0);
    pipeline->set_timesteps(2);
    BlockState s = model.prepare(pipeline->step_inputs(latents, 0, prompt).at(0));
    const auto before = model.state_tensors(s);
    ASSERT_GE(before.size(), 3u);
    BlockState fork = model.fork_state(s);
    ASSERT_NE(fork.extra.get(), s.extra.get());
    const auto forked = model.state_tensors(fork);
    ASSERT_EQ(forked.size(), before.size());
    for (size_t k = 0; k < before.size(); ++k) {
      ASSERT_EQ(before[k].defined(), forked[k].defined()) << k;
      if (before[k].defined()) EXPECT_TRUE(before[k].is_same(forked[k])) << k;
    }
    model.run_blocks(0, model.num_blocks(), fork);
    const auto after = model.state_tensors(s);
    for (size_t k = 0; k < before.size(); ++k) {
      ASSERT_EQ(before[k].defined(), after[k].defined()) << k;
      if (before[k].defined()) EXPECT_TRUE(before[k].is_same(after[k])) << k;
    }
    EXPECT_FALSE(model.state_tensors(fork)[0].is_same(before[0])) << "the blocks ran on the fork";
  }
}

TEST(GraphedTransformer, RefusesCpuStatesAndSaysWhyOnTheCpu) {
  torch::NoGradGuard no_grad;
  auto model = tiny_model(at::TensorOptions().dtype(at::kFloat));
  GraphedTransformer graphed(*model);
  BlockState s = graphed.prepare(tiny_inputs(model->config(), at::kFloat, 8, 500.0, 1));
  EXPECT_THROW(graphed.run_blocks(0, graphed.num_blocks(), s), Unsupported);
  EXPECT_EQ(graphed.captures(), 0);
  const GraphCheck cpu = check_graphs(at::kCPU);
  EXPECT_FALSE(cpu.ok);
  EXPECT_NE(cpu.reason.find("CUDA"), std::string::npos) << cpu.reason;
}

// ---- replays: emulated on the CPU (every build), CUDA graphs on a GPU ----

// error(a, b) of two model outputs on the CPU in float32.
double output_error(const at::Tensor& a, const at::Tensor& b) {
  return rel_error(a.to(at::kCPU, at::kFloat), b.to(at::kCPU, at::kFloat));
}

// Three steps of new inputs through one captured segment, then a new latent size (a new capture):
// every output is the eager one within `tolerance` (0: bit for bit).
void expect_replays_match_eager(const at::TensorOptions& options, Replay mode, double tolerance) {
  torch::NoGradGuard no_grad;
  auto model = tiny_model(options);
  GraphedTransformer graphed(*model, mode);
  for (int step = 0; step < 3; ++step) {
    auto in = tiny_inputs(model->config(), options, 8, 900.0 - 300 * step, 10 + step);
    FlopCount eager_flops;
    const at::Tensor eager = model->forward(in);
    const double eager_count = eager_flops.total();
    FlopCount replay_flops(FlopCount::Scope::isolated);
    const at::Tensor replayed = graphed.forward(in);
    EXPECT_LE(output_error(replayed, eager), tolerance) << "step " << step;
    // A replay counts the arithmetic it ran (the captured blocks'), as the eager call does; the
    // capturing step adds its one eager warm-up run of the blocks.
    if (step > 0) {
      EXPECT_DOUBLE_EQ(replay_flops.total(), eager_count) << "step " << step;
    } else {
      EXPECT_GT(replay_flops.total(), eager_count);
    }
  }
  EXPECT_EQ(graphed.captures(), 1);
  EXPECT_EQ(graphed.replays(), 3);
  auto wide = tiny_inputs(model->config(), options, 16, 500.0, 20);
  EXPECT_LE(output_error(graphed.forward(wide), model->forward(wide)), tolerance);
  EXPECT_EQ(graphed.captures(), 2);
}

// FBCache (block 0 eager, blocks 1..N one segment) and TeaCache (all blocks one segment) over a
// short loop decide as on the eager model, and their outputs agree within `tolerance`: a cache
// that kept a replay's output tensors past the next replay would diverge here.
void expect_caches_decide_as_eager(const at::TensorOptions& options, Replay mode,
                                   double tolerance) {
  torch::NoGradGuard no_grad;
  auto model = tiny_model(options);
  for (const char* cache : {"fbcache", "teacache"}) {
    SCOPED_TRACE(cache);
    CacheOptions cache_options;
    // Thresholds inside the tiny model's signal range (FBCache ~0.4-0.75, TeaCache's rescaled
    // distances ~0.1-0.3 a step), so that some steps reuse.
    cache_options.threshold = std::string(cache) == "fbcache" ? 0.6 : 0.3;
    cache_options.teacache_coefficients = "hunyuan-video";
    auto eager_policy = make_cache_policy(cache, cache_options);
    auto graphed_policy = make_cache_policy(cache, cache_options);
    GraphedTransformer graphed(*model, mode);
    const int steps = 6;
    for (int step = 0; step < steps; ++step) {
      // Slowly changing inputs, as a denoising loop feeds them.
      auto in = tiny_inputs(model->config(), options, 8, 1000.0 - 100 * step, 7);
      in.latents = in.latents * (1.0 - 0.02 * step);
      const at::Tensor a = eager_policy->forward(*model, in, step, steps);
      const at::Tensor b = graphed_policy->forward(graphed, in, step, steps);
      EXPECT_LE(output_error(b, a), tolerance) << "step " << step;
    }
    const auto& ea = eager_policy->records();
    const auto& gr = graphed_policy->records();
    ASSERT_EQ(ea.size(), gr.size());
    int reused = 0;
    for (size_t i = 0; i < ea.size(); ++i) {
      EXPECT_EQ(ea[i].reused, gr[i].reused)
          << "step " << i << ": eager signal " << ea[i].signal.value_or(-1) << ", graphed "
          << gr[i].signal.value_or(-1);
      reused += ea[i].reused ? 1 : 0;
    }
    EXPECT_GT(reused, 0) << "the loop should exercise the reuse path too";
    EXPECT_GE(graphed.captures(), 1);
    EXPECT_EQ(graphed.replays(), steps - reused);
  }
}

TEST(GraphedTransformerEmulated, ReplaysGiveTheEagerOutputsStepAfterStep) {
  expect_replays_match_eager(at::TensorOptions().dtype(at::kFloat), Replay::emulated, 0.0);
}

TEST(GraphedTransformerEmulated, CachesDecideAsOnTheEagerModel) {
  expect_caches_decide_as_eager(at::TensorOptions().dtype(at::kFloat), Replay::emulated, 0.0);
}

class GraphedTransformerGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  }
  static at::TensorOptions gpu_bf16() {
    return at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  }
};

TEST_F(GraphedTransformerGpu, ReplaysGiveTheEagerOutputsStepAfterStep) {
  expect_replays_match_eager(gpu_bf16(), Replay::cuda_graph, 1e-2);
}

TEST_F(GraphedTransformerGpu, CachesDecideAsOnTheEagerModel) {
  expect_caches_decide_as_eager(gpu_bf16(), Replay::cuda_graph, 2e-2);
}

}  // namespace
}  // namespace ditbench
