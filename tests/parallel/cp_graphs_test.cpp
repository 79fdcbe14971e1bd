// Graph capture (GraphedTransformer) under context parallelism: tiny HunyuanVideo on 2 ranks in
// Ulysses and ring, its block segments captured once and replayed step after step, gives the
// eager outputs, and with FBCache every rank decides as the single-rank eager loop does. On the
// CPU the ranks are threads with the in-process communicator and the replay is emulated (same
// capture, input copying and output ownership, no graph); on 2 GPUs (NcclGraphedTransformer) the
// ranks are NCCL ranks and the segments real CUDA graphs holding the collectives, whose
// communication time is still measured at every replay.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include <mutex>
#include <string>
#include <vector>

#include "models/checkpoint/checkpoint.h"
#include "models/hunyuan_video/config.h"
#include "models/hunyuan_video/transformer.h"
#include "optimizations/attention/attention.h"
#include "optimizations/cache/cache_policy.h"
#include "optimizations/graphs/graphed_transformer.h"
#include "optimizations/parallel/context_parallel.h"
#include "optimizations/parallel/parallel_context.h"
#include "optimizations/parallel/timed_communicator.h"
#include "test_util.h"

#if defined(DITBENCH_HAS_NCCL)
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace ditbench {
namespace {

using testing::rel_error;

constexpr int kSteps = 3;

// The tiny preset with 4 heads (Ulysses over 2 ranks divides them), float32 on the CPU.
HunyuanVideoConfig tiny_config() {
  HunyuanVideoConfig config = hunyuan_video_preset("hunyuan-video-tiny");
  config.num_attention_heads = 4;
  return config;
}

// The inputs of `steps` denoising steps: slowly changing latents and timesteps of 27 image tokens,
// and 5 text tokens with one sample's text right-padded, so neither divides by 2 and the shards
// carry padding rows and a key mask. Drawn once, before any rank thread starts (the generator is
// process-wide).
std::vector<TransformerInputs> step_inputs(const HunyuanVideoConfig& config, int steps) {
  at::manual_seed(3);
  const at::Tensor latents = at::randn({2, config.in_channels, 3, 6, 6});
  const at::Tensor embeds = at::randn({2, 5, config.text_embed_dim});
  const at::Tensor pooled = at::randn({2, config.pooled_projection_dim});
  std::vector<TransformerInputs> out;
  for (int step = 0; step < steps; ++step) {
    TransformerInputs in;
    in.latents = latents * (1.0 - 0.02 * step);
    in.timestep = at::tensor({900.0f - 50 * step, 800.0f - 50 * step});
    in.guidance = at::tensor({6016.0f, 6016.0f});
    in.prompt.embeds = embeds;
    in.prompt.attention_mask = at::tensor({1, 1, 1, 0, 0, 1, 1, 1, 1, 1}).reshape({2, 5});
    in.prompt.pooled = pooled;
    out.push_back(std::move(in));
  }
  return out;
}

TransformerInputs to_device(const TransformerInputs& in, const at::TensorOptions& options) {
  TransformerInputs out = in;
  out.latents = in.latents.to(options);
  out.timestep = in.timestep.to(options);
  out.guidance = in.guidance.to(options);
  out.prompt.embeds = in.prompt.embeds.to(options);
  out.prompt.pooled = in.prompt.pooled.to(options);
  out.prompt.attention_mask = in.prompt.attention_mask.to(options.device());
  return out;
}

struct Layout {
  const char* name;
  int ulysses, ring;
};
const Layout kLayouts[] = {{"ulysses", 2, 1}, {"ring", 1, 2}};

// One rank's results of a layout.
struct RankRun {
  std::vector<at::Tensor> eager, graphed;  // per step, on the CPU in float32
  int captures = 0, replays = 0;
  std::vector<bool> eager_reused, graphed_reused;  // FBCache runs
  CommTimes comm;                                  // the graphed steps' communication time
};

at::Tensor on_cpu(const at::Tensor& t) { return t.to(at::kCPU, at::kFloat); }

// The rank's context-parallel setting (groups from `world`, attention `backend` behind the call
// site) around fn(groups).
template <typename Fn>
void with_context_parallelism(Communicator& world, const Layout& layout, int64_t heads,
                              const std::string& backend, Fn&& fn) {
  c10::InferenceMode inference;
  ParallelGroups groups = make_parallel_groups(world, 1, layout.ulysses, layout.ring);
  auto cp = make_context_parallel_attention(groups, heads);
  AttentionSettings attn;
  attn.backend = backend;
  attn.context_parallel = cp.get();
  AttentionScope attention_scope(attn);
  ParallelScope parallel_scope(&groups);
  fn(groups);
}

// ---- the CPU: in-process ranks, emulated replay ----

class GraphedTransformerCp : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    config_ = new HunyuanVideoConfig(tiny_config());
    model_ = new HunyuanVideoTransformer3DModel(*config_, at::TensorOptions().dtype(at::kFloat));
    random_init(**model_, 11);
  }
  static void TearDownTestSuite() {
    delete model_;
    delete config_;
  }
  static HunyuanVideoConfig* config_;
  static HunyuanVideoTransformer3DModel* model_;
};
HunyuanVideoConfig* GraphedTransformerCp::config_ = nullptr;
HunyuanVideoTransformer3DModel* GraphedTransformerCp::model_ = nullptr;

TEST_F(GraphedTransformerCp, UlyssesAndRingReplaysMatchTheEagerRanksAndTheSingleRank) {
  BlockTransformer& model = **model_;
  const std::vector<TransformerInputs> inputs = step_inputs(*config_, kSteps);
  std::vector<at::Tensor> single;
  {
    c10::InferenceMode inference;
    for (const auto& in : inputs) single.push_back(model.forward(in));
  }
  for (const Layout& layout : kLayouts) {
    SCOPED_TRACE(layout.name);
    std::vector<RankRun> runs(2);
    launch_ranks(2, [&](int rank, Communicator& world) {
      with_context_parallelism(world, layout, 4, "math", [&](const ParallelGroups&) {
        GraphedTransformer graphed(model, Replay::emulated);
        RankRun& run = runs[static_cast<size_t>(rank)];
        for (const auto& in : inputs) {
          run.eager.push_back(model.forward(in));
          run.graphed.push_back(graphed.forward(in));
        }
        run.captures = graphed.captures();
        run.replays = graphed.replays();
      });
    });
    for (int rank = 0; rank < 2; ++rank) {
      const RankRun& run = runs[static_cast<size_t>(rank)];
      for (int step = 0; step < kSteps; ++step) {
        EXPECT_LE(rel_error(run.graphed[step], run.eager[step]), 1e-5)
            << "rank " << rank << ", step " << step << ": replay against the eager ranks";
        EXPECT_LE(rel_error(run.graphed[step], single[static_cast<size_t>(step)]), 1e-5)
            << "rank " << rank << ", step " << step << ": replay against one rank";
      }
      // One capture (the step-0 layouts hold), then a replay at every step.
      EXPECT_EQ(run.captures, 1) << "rank " << rank;
      EXPECT_EQ(run.replays, kSteps) << "rank " << rank;
    }
  }
}

TEST_F(GraphedTransformerCp, FbcacheDecidesAlikeOnEveryRankAndAsOneRank) {
  BlockTransformer& model = **model_;
  const int steps = 6;
  CacheOptions options;
  // Inside this loop's signals (0.5 to 0.69, one rank in float32): steps 1 and 2 reuse, the others
  // compute.
  options.threshold = 0.6;
  const std::vector<TransformerInputs> inputs = step_inputs(*config_, steps);
  std::vector<bool> single_reused;
  std::vector<at::Tensor> single;
  {
    c10::InferenceMode inference;
    auto policy = make_cache_policy("fbcache", options);
    for (int step = 0; step < steps; ++step)
      single.push_back(policy->forward(model, inputs[static_cast<size_t>(step)], step, steps));
    for (const auto& r : policy->records()) single_reused.push_back(r.reused);
  }
  int reused = 0;
  for (bool r : single_reused) reused += r ? 1 : 0;
  ASSERT_GT(reused, 0) << "the loop should exercise the reuse path";
  ASSERT_LT(reused, steps - 1) << "the loop should exercise replays after a capture";

  for (const Layout& layout : kLayouts) {
    SCOPED_TRACE(layout.name);
    std::vector<RankRun> runs(2);
    launch_ranks(2, [&](int rank, Communicator& world) {
      with_context_parallelism(world, layout, 4, "math", [&](const ParallelGroups& groups) {
        auto eager_policy = make_cache_policy("fbcache", options);
        auto graphed_policy = make_cache_policy("fbcache", options);
        Communicator* sequence = groups.sequence.get();
        for (auto* policy : {eager_policy.get(), graphed_policy.get()}) {
          policy->set_all_reduce([sequence](at::Tensor& t) { sequence->all_reduce_sum(t); },
                                 [sequence] { sequence->synchronize("cache decision"); });
        }
        GraphedTransformer graphed(model, Replay::emulated);
        RankRun& run = runs[static_cast<size_t>(rank)];
        for (int step = 0; step < steps; ++step) {
          const TransformerInputs& in = inputs[static_cast<size_t>(step)];
          run.eager.push_back(eager_policy->forward(model, in, step, steps));
          run.graphed.push_back(graphed_policy->forward(graphed, in, step, steps));
        }
        for (const auto& r : eager_policy->records()) run.eager_reused.push_back(r.reused);
        for (const auto& r : graphed_policy->records()) run.graphed_reused.push_back(r.reused);
        run.captures = graphed.captures();
        run.replays = graphed.replays();
      });
    });
    for (int rank = 0; rank < 2; ++rank) {
      const RankRun& run = runs[static_cast<size_t>(rank)];
      EXPECT_EQ(run.graphed_reused, single_reused) << "rank " << rank;
      EXPECT_EQ(run.eager_reused, single_reused) << "rank " << rank;
      for (int step = 0; step < steps; ++step) {
        EXPECT_LE(rel_error(run.graphed[step], run.eager[step]), 1e-5)
            << "rank " << rank << ", step " << step;
        EXPECT_LE(rel_error(run.graphed[step], single[static_cast<size_t>(step)]), 1e-5)
            << "rank " << rank << ", step " << step;
      }
      // Blocks 1..N, captured once at step 0, run (replayed) on the computed steps only.
      EXPECT_EQ(run.captures, 1) << "rank " << rank;
      EXPECT_EQ(run.replays, steps - reused) << "rank " << rank;
    }
  }
}

// ---- 2 GPUs: NCCL ranks, CUDA graphs ----

#if defined(DITBENCH_HAS_NCCL)

// The test's name stays out of the single-GPU filter (*Gpu*, *Cuda*) of scripts/device.sh: it
// runs with the NCCL tests (Nccl*).
TEST(NcclGraphedTransformer, UlyssesAndRingReplaysMatchTheEagerRanksAndAreTimed) {
  const int gpus = static_cast<int>(c10::cuda::device_count());
  if (gpus < 2) GTEST_SKIP() << "needs 2 GPUs, found " << gpus;
  const HunyuanVideoConfig config = tiny_config();
  const std::vector<TransformerInputs> cpu_inputs = step_inputs(config, kSteps);
  LaunchOptions nccl;
  nccl.backend = CommBackend::kNccl;
  nccl.comm.timeout = std::chrono::seconds(60);
  for (const Layout& layout : kLayouts) {
    SCOPED_TRACE(layout.name);
    std::vector<RankRun> runs(2);
    std::mutex mutex;
    launch_ranks(
        2,
        [&](int rank, Communicator& world) {
          const auto options = at::TensorOptions().device(at::kCUDA, rank).dtype(at::kBFloat16);
          // The same weights on both GPUs: drawn on the CPU, then copied.
          HunyuanVideoTransformer3DModel model(config, options);
          {
            HunyuanVideoTransformer3DModel drawn(config, at::TensorOptions().dtype(at::kFloat));
            random_init(*drawn, 11);
            const auto source = drawn->named_parameters(/*recurse=*/true);
            torch::NoGradGuard no_grad;
            for (auto& p : model->named_parameters(/*recurse=*/true))
              p.value().copy_(source[p.key()]);
          }
          auto counter = std::make_shared<CommTimeCounter>();
          TimedCommunicator timed(world, counter);
          RankRun run;
          with_context_parallelism(timed, layout, 4, "sdpa", [&](const ParallelGroups& groups) {
            std::vector<TransformerInputs> inputs;
            for (const auto& in : cpu_inputs) inputs.push_back(to_device(in, options));
            std::vector<at::Tensor> eager, replayed;
            for (const auto& in : inputs) eager.push_back(model->forward(in));
            groups.synchronize("eager steps");
            counter->take();
            GraphedTransformer graphed(*model, Replay::cuda_graph);
            for (int step = 0; step < kSteps; ++step) {
              groups.synchronize("step " + std::to_string(step));
              counter->set_step(step);
              replayed.push_back(graphed.forward(inputs[static_cast<size_t>(step)]).clone());
              counter->set_step(-1);
            }
            // Host copies only once the collectives are done (a peer's failure ends this wait).
            groups.synchronize("graphed steps");
            for (int step = 0; step < kSteps; ++step) {
              run.eager.push_back(on_cpu(eager[static_cast<size_t>(step)]));
              run.graphed.push_back(on_cpu(replayed[static_cast<size_t>(step)]));
            }
            run.comm = counter->take();
            run.captures = graphed.captures();
            run.replays = graphed.replays();
          });
          std::lock_guard<std::mutex> lock(mutex);
          runs[static_cast<size_t>(rank)] = std::move(run);
        },
        nccl);
    for (int rank = 0; rank < 2; ++rank) {
      const RankRun& run = runs[static_cast<size_t>(rank)];
      ASSERT_EQ(run.graphed.size(), static_cast<size_t>(kSteps)) << "rank " << rank;
      for (int step = 0; step < kSteps; ++step) {
        // bf16: the graph's kernels may take other cuBLAS algorithms than the eager pass.
        EXPECT_LE(rel_error(run.graphed[step], run.eager[step]), 1e-2)
            << "rank " << rank << ", step " << step;
      }
      EXPECT_EQ(run.captures, 1) << "rank " << rank;
      EXPECT_EQ(run.replays, kSteps) << "rank " << rank;
      // Every step communicated, the replayed ones inside the graph: timed, not left out.
      EXPECT_EQ(run.comm.not_measured, "") << "rank " << rank;
      ASSERT_EQ(run.comm.steps_s.size(), static_cast<size_t>(kSteps)) << "rank " << rank;
      for (int step = 0; step < kSteps; ++step)
        EXPECT_GT(run.comm.steps_s[step], 0) << "rank " << rank << ", step " << step;
    }
  }
}

#endif

}  // namespace
}  // namespace ditbench
