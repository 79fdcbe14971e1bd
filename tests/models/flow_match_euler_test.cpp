// FlowMatchEulerScheduler against diffusers' FlowMatchEulerDiscreteScheduler: schedules and one
// Euler step from ../shared/fixtures/diffusers/schedulers, pipeline inputs derived by hand from
// specs/models.md §8.1, and the bf16 dtype rules of §1.10.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "model_test_util.h"
#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"
#include "models/schedulers/flow_match_euler.h"

namespace ditbench {
namespace {

using testing::rel_error;

const testing::TensorMap& scheduler_fixtures() {
  return testing::cached_tensors(testing::fixtures_dir() +
                                 "/diffusers/schedulers/schedulers.safetensors");
}

const at::Tensor& fixture(const std::string& name) {
  const auto& tensors = scheduler_fixtures();
  auto it = tensors.find(name);
  if (it == tensors.end()) throw std::runtime_error("fixture tensor missing: " + name);
  return it->second;
}

// The fixtures were made with set_timesteps(N) and no sigmas: the scheduler's default schedule,
// which diffusers shifts twice (construction and set_timesteps).
TEST(FlowMatchEuler, DefaultScheduleMatchesDiffusersForEveryShiftAndStepCount) {
  for (double shift : {1.0, 3.0, 5.0, 7.0}) {
    for (int steps : {10, 30, 50}) {
      FlowMatchEulerConfig config;
      config.shift = shift;
      FlowMatchEulerScheduler scheduler(config);
      scheduler.set_timesteps(steps);
      const std::string prefix = "flow_match_euler.shift" + std::to_string(shift).substr(0, 3) +
                                 ".steps" + std::to_string(steps);
      SCOPED_TRACE(prefix);
      ASSERT_EQ(scheduler.sigmas().sizes(), fixture(prefix + ".sigmas").sizes());
      ASSERT_EQ(scheduler.timesteps().sizes(), fixture(prefix + ".timesteps").sizes());
      EXPECT_EQ(scheduler.sigmas().scalar_type(), at::kFloat);
      EXPECT_EQ(scheduler.timesteps().scalar_type(), at::kFloat);
      EXPECT_LT(rel_error(scheduler.sigmas(), fixture(prefix + ".sigmas")), 1e-6);
      EXPECT_LT(rel_error(scheduler.timesteps(), fixture(prefix + ".timesteps")), 1e-6);
      EXPECT_EQ(scheduler.sigmas()[steps].item<float>(), 0.0f);
    }
  }
}

TEST(FlowMatchEuler, FluxDynamicShiftingMatchesDiffusers) {
  for (const char* mu : {"0.5", "1.15"}) {
    FlowMatchEulerScheduler scheduler(FlowMatchEulerConfig::flux_dev());
    scheduler.set_timesteps(28, flux_sigmas(28), std::stod(mu));
    const std::string prefix = std::string("flow_match_euler.dynamic.mu") + mu + ".steps28";
    SCOPED_TRACE(prefix);
    ASSERT_EQ(scheduler.sigmas().sizes(), fixture(prefix + ".sigmas").sizes());
    EXPECT_LT(rel_error(scheduler.sigmas(), fixture(prefix + ".sigmas")), 1e-6);
    EXPECT_LT(rel_error(scheduler.timesteps(), fixture(prefix + ".timesteps")), 1e-6);
  }
}

TEST(FlowMatchEuler, EulerStepMatchesDiffusers) {
  FlowMatchEulerScheduler scheduler(FlowMatchEulerConfig::hunyuan_video());
  scheduler.set_timesteps(30);
  const int64_t index = fixture("flow_match_euler.step.index")[0].item<int64_t>();
  const auto prev = scheduler.step(fixture("flow_match_euler.step.model_output"), index,
                                   fixture("flow_match_euler.step.sample"));
  EXPECT_EQ(prev.scalar_type(), at::kFloat);
  EXPECT_LT(rel_error(prev, fixture("flow_match_euler.step.prev_sample")), 1e-6);
}

// σ' = 7σ/(1 + 6σ) on linspace(1, 0, 51)[:-1] (spec §8.1): 0.98 → 6.86/6.88, 0.02 → 0.14/1.12.
TEST(FlowMatchEuler, HunyuanVideoPipelineSigmas) {
  FlowMatchEulerScheduler scheduler(FlowMatchEulerConfig::hunyuan_video());
  scheduler.set_timesteps(50, hunyuan_video_sigmas(50));
  const auto& sigmas = scheduler.sigmas();
  ASSERT_EQ(sigmas.size(0), 51);
  EXPECT_FLOAT_EQ(sigmas[0].item<float>(), 1.0f);
  EXPECT_NEAR(sigmas[1].item<double>(), 6.86 / 6.88, 1e-7);
  EXPECT_NEAR(sigmas[49].item<double>(), 0.125, 1e-7);
  EXPECT_EQ(sigmas[50].item<float>(), 0.0f);
  EXPECT_NEAR(scheduler.timesteps()[1].item<double>(), 6860.0 / 6.88, 1e-4);
}

// Values from diffusers (shift 1, invert_sigmas) on linear_quadratic_schedule(64, 0.025).
TEST(FlowMatchEuler, MochiInvertedSigmas) {
  const auto sigmas_in = mochi_sigmas(64);
  ASSERT_EQ(sigmas_in.size(), 64u);
  EXPECT_DOUBLE_EQ(sigmas_in[0], 1.0);
  EXPECT_DOUBLE_EQ(sigmas_in[1], 1.0 - 0.025 / 32);
  FlowMatchEulerScheduler scheduler(FlowMatchEulerConfig::mochi());
  scheduler.set_timesteps(64, sigmas_in);
  const auto& sigmas = scheduler.sigmas();
  ASSERT_EQ(sigmas.size(0), 65);
  const std::vector<std::pair<int, double>> expected = {{0, 0.0},
                                                        {1, 0.0007812380790710449},
                                                        {31, 0.024218738079071045},
                                                        {32, 0.02499997615814209},
                                                        {33, 0.02670896053314209},
                                                        {63, 0.9407714605331421},
                                                        {64, 1.0}};
  for (const auto& [i, value] : expected) EXPECT_NEAR(sigmas[i].item<double>(), value, 1e-7) << i;
  EXPECT_NEAR(scheduler.timesteps()[63].item<double>(), 940.771484375, 1e-4);
  EXPECT_EQ(scheduler.timesteps()[0].item<float>(), 0.0f);  // the model sees t = 0 at pure noise
}

// mu = N·0.65/3840 + (0.5 − 256·0.65/3840): the two ends of the range and 512×512 (1024 tokens).
TEST(FlowMatchEuler, FluxMu) {
  EXPECT_NEAR(flux_mu(256), 0.5, 1e-12);
  EXPECT_NEAR(flux_mu(4096), 1.15, 1e-12);
  EXPECT_NEAR(flux_mu(1024), 0.5 + 768 * 0.65 / 3840, 1e-12);
  const auto sigmas = flux_sigmas(4);
  ASSERT_EQ(sigmas.size(), 4u);
  EXPECT_DOUBLE_EQ(sigmas[0], 1.0);
  EXPECT_DOUBLE_EQ(sigmas[3], 0.25);
  EXPECT_DOUBLE_EQ(sigmas[1], 0.75);
}

// Expected values from the venv's torch 2.11 + diffusers (script: FlowMatchEulerDiscreteScheduler(
// shift=7.0).set_timesteps(4, sigmas=np.linspace(1, 0, 5)[:-1]); _step_index = 1; step(mo, t, s)
// with the sample below in f32 and the model output below cast to bf16). Element 4 tells the
// rules apart: an f32 product would give −0.0275878906 after the final bf16 cast.
TEST(FlowMatchEuler, Bf16ModelOutputRoundsTheProductAndReturnsBf16) {
  FlowMatchEulerScheduler scheduler(FlowMatchEulerConfig::hunyuan_video());
  scheduler.set_timesteps(4, hunyuan_video_sigmas(4));
  const auto sample = at::tensor({0.1, -0.3, 1.7, 2.5, 0.123456, -5.4321}, at::kFloat);
  const auto model_output =
      at::tensor({0.7, -1.3, 3.1, 0.01, 1.9, -0.77}, at::kFloat).to(at::kBFloat16);
  const auto prev = scheduler.step(model_output, 1, sample);
  EXPECT_EQ(prev.scalar_type(), at::kBFloat16);
  const std::vector<double> expected = {0.0444335938, -0.197265625,  1.453125,
                                        2.5,          -0.0279541016, -5.375};
  const auto got = prev.to(at::kDouble);
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(got[i].item<double>(), expected[i], 1e-9) << "element " << i;
  }
}

TEST(FlowMatchEuler, BadInputIsRejected) {
  FlowMatchEulerScheduler dynamic(FlowMatchEulerConfig::flux_dev());
  EXPECT_THROW(dynamic.set_timesteps(28, flux_sigmas(28)), InputError);  // no mu
  FlowMatchEulerScheduler fixed(FlowMatchEulerConfig::hunyuan_video());
  EXPECT_THROW(fixed.set_timesteps(10, hunyuan_video_sigmas(9)), InputError);
  EXPECT_THROW(fixed.set_timesteps(0), InputError);
  EXPECT_THROW(mochi_sigmas(1), InputError);
}

TEST(FlowMatchEuler, RunsOnTheSampleDevice) {
#ifdef DITBENCH_HAS_CUDA
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  FlowMatchEulerScheduler scheduler(FlowMatchEulerConfig::hunyuan_video());
  scheduler.set_timesteps(30, std::nullopt, std::nullopt, at::Device(at::kCUDA));
  const int64_t index = fixture("flow_match_euler.step.index")[0].item<int64_t>();
  const auto prev = scheduler.step(fixture("flow_match_euler.step.model_output").cuda(), index,
                                   fixture("flow_match_euler.step.sample").cuda());
  EXPECT_TRUE(prev.is_cuda());
  EXPECT_LT(rel_error(prev.cpu(), fixture("flow_match_euler.step.prev_sample")), 1e-6);
#else
  GTEST_SKIP() << "built without CUDA";
#endif
}

}  // namespace
}  // namespace ditbench
