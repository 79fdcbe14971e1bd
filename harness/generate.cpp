#include "harness/generate.h"

#include <c10/core/InferenceMode.h>

#include <stdexcept>
#include <string>

#include "models/common/flop_count.h"
#include "optimizations/parallel/parallel_context.h"
#include "optimizations/parallel/sequence_shard.h"

namespace ditbench {
namespace {

// The CFG pair of this rank thread when CFG parallelism is on, else null.
Communicator* cfg_parallel_group() {
  const ParallelGroups* groups = current_parallel_groups();
  if (!groups || !groups->cfg || groups->cfg->size() < 2) return nullptr;
  return groups->cfg.get();
}

}  // namespace

Generation generate(DiffusionPipeline& pipeline, std::vector<std::unique_ptr<CachePolicy>>& caches,
                    StageTimer& timer, const GenerationSettings& settings) {
  c10::InferenceMode inference;
  Generation g;
  {
    auto e2e = timer.scope("e2e");
    PromptEmbeds prompt;
    {
      auto stage = timer.scope("text_embed");
      prompt = pipeline.encode_prompt(settings.seed);
    }
    at::Tensor latents;
    {
      auto stage = timer.scope("prepare_latents");
      latents = pipeline.prepare_latents(settings.seed);
    }
    {
      auto denoise = timer.scope("denoise");
      const int n = pipeline.set_timesteps(settings.steps);
      BlockTransformer& model =
          settings.transformer ? *settings.transformer : pipeline.transformer();
      for (int i = 0; i < n; ++i) {
        if (settings.check_interrupt) settings.check_interrupt();
        if (settings.deadline && std::chrono::steady_clock::now() > *settings.deadline) {
          throw std::runtime_error("timed out at step " + std::to_string(i));
        }
        if (settings.on_step_begin) settings.on_step_begin(i);
        auto step = timer.scope("step");
        std::vector<at::Tensor> outputs;
        {
          auto stage = timer.scope("transformer");
          FlopCount flops;
          auto inputs = pipeline.step_inputs(latents, i, prompt);
          if (inputs.size() > caches.size()) {
            throw std::logic_error("generate: fewer cache policies than CFG branches");
          }
          Communicator* cfg = cfg_parallel_group();
          if (cfg && inputs.size() == 2) {
            // CFG parallelism: this rank runs its own branch (cfg rank 0 uncond, 1 cond) and the
            // pair exchanges outputs, so both hold [uncond; cond] for the scheduler.
            const auto branch = static_cast<size_t>(cfg->rank());
            auto mine = caches[branch]->forward(model, inputs[branch], i, n);
            auto both = cfg_gather(mine, *cfg).chunk(2, 0);  // [2b, ...] -> 2 x [b, ...]
            outputs.assign(both.begin(), both.end());
          } else {
            for (size_t b = 0; b < inputs.size(); ++b) {
              outputs.push_back(caches[b]->forward(model, inputs[b], i, n));
            }
          }
          g.step_flops.push_back(flops.total());
        }
        {
          auto stage = timer.scope("scheduler");
          latents = pipeline.scheduler_step(outputs, i, latents);
        }
        if (settings.on_step_end) settings.on_step_end(i);
      }
    }
    g.latents = latents;
    if (settings.decode) {
      at::Tensor decoded;
      {
        auto stage = timer.scope("vae_decode");
        decoded = pipeline.decode(latents);
      }
      if (settings.postprocess) {
        auto stage = timer.scope("postprocess");
        g.frames = pipeline.postprocess(decoded);
      }
    }
  }
  g.timing = timer.collect();
  return g;
}

}  // namespace ditbench
