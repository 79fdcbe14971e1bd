// UniPC multistep scheduler in Wan's flow configuration against diffusers
// (tests/data/wan/unipc.safetensors, scripts/refdata/wan/unipc.py): sigma and timestep tables for
// shifts 3 and 5, and whole runs whose every step (predictor, corrector, lower-order warmup and
// final step) must match.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "model_test_util.h"
#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"
#include "models/schedulers/unipc_multistep.h"

namespace ditbench {
namespace {

using testing::rel_error;

const testing::TensorMap& refs() { return testing::test_data("wan/unipc.safetensors"); }

TEST(UniPC, SigmaAndTimestepTablesMatchDiffusers) {
  for (int shift : {3, 5}) {
    for (int n : {1, 2, 10, 30, 50}) {
      UniPCMultistepScheduler s(UniPCConfig::wan(shift));
      s.set_timesteps(n);
      const std::string key = "shift" + std::to_string(shift) + ".steps" + std::to_string(n);
      ASSERT_EQ(s.num_steps(), n);
      EXPECT_TRUE(at::equal(s.timesteps(), refs().at(key + ".timesteps"))) << key;
      EXPECT_TRUE(at::equal(s.sigmas(), refs().at(key + ".sigmas"))) << key;
    }
  }
  // By hand (models.md §8.3): shift 3 starts at 1 − 1e-6 and truncates: 999, 964, ...
  UniPCMultistepScheduler s;
  s.set_timesteps(10);
  EXPECT_EQ(s.timesteps()[0].item<int64_t>(), 999);
  EXPECT_EQ(s.timesteps()[1].item<int64_t>(), 964);
  EXPECT_FLOAT_EQ(s.sigmas()[0].item<float>(), 0.999999f);
  EXPECT_EQ(s.sigmas()[10].item<float>(), 0.0f);
}

TEST(UniPC, EveryStepOfWholeRunsMatchesDiffusers) {
  for (int n : {1, 4, 7}) {
    const std::string key = "run.steps" + std::to_string(n);
    UniPCMultistepScheduler s;
    s.set_timesteps(n);
    at::Tensor sample = refs().at(key + ".sample");
    for (int i = 0; i < n; ++i) {
      sample = s.step(refs().at(key + ".model_output." + std::to_string(i)), i, sample);
      const auto& expected = refs().at(key + ".prev_sample." + std::to_string(i));
      ASSERT_EQ(sample.scalar_type(), at::kFloat);
      EXPECT_LE(rel_error(sample, expected), 1e-6) << key << " step " << i;
    }
  }
}

TEST(UniPC, StartingAgainAtStepZeroForgetsTheHistory) {
  const std::string key = "run.steps4";
  UniPCMultistepScheduler s;
  s.set_timesteps(4);
  for (int pass = 0; pass < 2; ++pass) {
    at::Tensor sample = refs().at(key + ".sample");
    for (int i = 0; i < 4; ++i) {
      sample = s.step(refs().at(key + ".model_output." + std::to_string(i)), i, sample);
    }
    EXPECT_LE(rel_error(sample, refs().at(key + ".prev_sample.3")), 1e-6) << "pass " << pass;
  }
  EXPECT_THROW(s.step(refs().at(key + ".model_output.2"), 2, refs().at(key + ".sample")),
               c10::Error);  // out of order
}

TEST(UniPC, BadSettingsAreInputErrors) {
  EXPECT_THROW(UniPCMultistepScheduler(UniPCConfig::wan(0.0)), InputError);
  UniPCConfig c;
  c.solver_order = 4;
  EXPECT_THROW(UniPCMultistepScheduler{c}, InputError);
  UniPCMultistepScheduler s;
  EXPECT_THROW(s.set_timesteps(0), InputError);
}

}  // namespace
}  // namespace ditbench
