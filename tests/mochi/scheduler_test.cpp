// Mochi's sampling schedule against diffusers (tests/data/mochi/scheduler_refs.safetensors, made
// by scripts/refdata/mochi/scheduler.py): FlowMatchEulerScheduler with inverted sigmas over
// linear_quadratic_schedule(N, 0.025), the bf16 timesteps the transformer receives, and the
// pipeline's loop arithmetic (CFG mix and Euler step in f32, latents back to bf16).
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "model_test_util.h"
#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"
#include "models/schedulers/flow_match_euler.h"

namespace ditbench {
namespace {

using testing::rel_error;

const testing::TensorMap& refs() { return testing::test_data("mochi/scheduler_refs.safetensors"); }

TEST(MochiSchedule, SigmasAndTimestepsMatchDiffusersForEveryStepCount) {
  for (int n : {2, 3, 8, 64}) {
    SCOPED_TRACE(n);
    const std::string prefix = "steps" + std::to_string(n);
    FlowMatchEulerScheduler scheduler(FlowMatchEulerConfig::mochi());
    scheduler.set_timesteps(n, mochi_sigmas(n));
    ASSERT_EQ(scheduler.sigmas().sizes(), refs().at(prefix + ".sigmas").sizes());
    EXPECT_LT((scheduler.sigmas() - refs().at(prefix + ".sigmas")).abs().max().item<double>(),
              1e-7);
    EXPECT_LT((scheduler.timesteps() - refs().at(prefix + ".timesteps")).abs().max().item<double>(),
              1e-4);
    // What the model receives: t.expand(2).to(bfloat16).
    for (int i = 0; i < n; ++i) {
      auto t = scheduler.timesteps()[i].expand({2}).to(at::kBFloat16);
      EXPECT_TRUE(at::equal(t, refs().at(prefix + ".model_timesteps")[i])) << "step " << i;
    }
  }
}

// The stand-in model of scheduler.py: branch outputs x (1 - t/1000) -/+ 0.25 in bf16, mixed in
// f32 with guidance 4.5, stepped in f32, cast back to bf16.
TEST(MochiSchedule, CfgEulerLoopInBf16MatchesDiffusers) {
  FlowMatchEulerScheduler scheduler(FlowMatchEulerConfig::mochi());
  scheduler.set_timesteps(8, mochi_sigmas(8));
  at::Tensor latents = refs().at("loop.latents0");
  ASSERT_EQ(latents.scalar_type(), at::kBFloat16);
  for (int i = 0; i < 8; ++i) {
    auto scale = scheduler.timesteps()[i].expand({1}).to(at::kBFloat16) / 1000;
    auto base = latents * (1 - scale.view({-1, 1, 1, 1, 1}));
    auto uncond = (base - 0.25).to(at::kFloat), cond = (base + 0.25).to(at::kFloat);
    auto noise_pred = uncond + 4.5 * (cond - uncond);
    latents = scheduler.step(noise_pred, i, latents.to(at::kFloat)).to(at::kBFloat16);
    EXPECT_LT(rel_error(latents, refs().at("loop.latents")[i]), 1e-6) << "step " << i;
  }
}

TEST(MochiSchedule, LinearQuadraticScheduleByHand) {
  // n = 3: one linear step (1.0), then 1 - (qc i² + lc i + k) for i = 1, 2 with d = 1 - 0.075,
  // qc = d / 4, lc = 0.025 - d / 2, k = qc: 0.975 and 0.71875 (diffusers: 1 - 0.025, 1 - 0.28125).
  const auto sigmas = mochi_sigmas(3);
  ASSERT_EQ(sigmas.size(), 3u);
  EXPECT_DOUBLE_EQ(sigmas[0], 1.0);
  EXPECT_NEAR(sigmas[1], 0.975, 1e-15);
  EXPECT_NEAR(sigmas[2], 0.71875, 1e-15);
  EXPECT_THROW(mochi_sigmas(1), InputError);
}

}  // namespace
}  // namespace ditbench
