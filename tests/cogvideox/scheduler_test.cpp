// CogVideoX DDIM and DPM schedulers against diffusers: the fixture's tables and the reference
// steps of scripts/refdata/cogvideox_schedulers.py (tests/data/cogvideox/schedulers.safetensors).
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include "model_test_util.h"
#include "models/checkpoint/safetensors.h"
#include "models/cogvideox/scheduler.h"
#include "models/common/error.h"

namespace ditbench {
namespace {

using ditbench::testing::input_error_of;
using ditbench::testing::rel_error;

const testing::TensorMap& refs() { return testing::test_data("cogvideox/schedulers.safetensors"); }

CogVideoXSchedulerConfig config_of(const std::string& name) {
  return name == "2b" ? CogVideoXSchedulerConfig::cogvideox_2b()
                      : CogVideoXSchedulerConfig::cogvideox_5b();
}

TEST(CogVideoXScheduler, FixtureTablesMatch) {
  const auto& fixture =
      testing::cached_tensors(testing::diffusers_fixture("schedulers") + "/schedulers.safetensors");
  CogVideoXDDIMScheduler ddim;  // snr_shift_scale 3.0
  ddim.set_timesteps(50);
  EXPECT_LT(rel_error(ddim.alphas_cumprod(), fixture.at("cogvideox_ddim.alphas_cumprod")), 1e-6);
  EXPECT_TRUE(
      ddim.timesteps().to(at::kFloat).equal(fixture.at("cogvideox_ddim.steps50.timesteps")));
  CogVideoXDPMScheduler dpm;
  dpm.set_timesteps(50);
  EXPECT_LT(rel_error(dpm.alphas_cumprod(), fixture.at("cogvideox_dpm.alphas_cumprod")), 1e-6);
  EXPECT_TRUE(dpm.timesteps().to(at::kFloat).equal(fixture.at("cogvideox_dpm.steps50.timesteps")));
  EXPECT_EQ(ddim.timesteps().scalar_type(), at::kLong);
}

TEST(CogVideoXScheduler, TablesAndTimestepsOfBothReleases) {
  for (const std::string name : {"2b", "5b"}) {
    CogVideoXDDIMScheduler s(config_of(name));
    EXPECT_LT(rel_error(s.alphas_cumprod(), refs().at(name + ".alphas_cumprod")), 1e-12) << name;
    EXPECT_EQ(s.alphas_cumprod()[-1].item<double>(), 0.0);  // zero terminal SNR
    for (int n : {1, 3, 7, 50}) {
      s.set_timesteps(n);
      EXPECT_TRUE(
          s.timesteps().equal(refs().at(name + ".steps" + std::to_string(n) + ".timesteps")))
          << name << " " << n;
    }
  }
}

TEST(CogVideoXScheduler, DdimStepsInFloat32AndWithABfloat16Sample) {
  for (const std::string name : {"2b", "5b"}) {
    CogVideoXDDIMScheduler s(config_of(name));
    s.set_timesteps(3);
    for (int i = 0; i < 3; ++i) {
      const std::string p = name + ".ddim.step" + std::to_string(i) + ".";
      const auto& sample = refs().at(p + "sample");
      const auto& v = refs().at(p + "model_output");
      EXPECT_LT(rel_error(s.step(v, i, sample), refs().at(p + "prev_f32")), 1e-6) << p;
      // The pipeline's dtypes: bf16 latents, f32 guided output -> f32 result, rounded alike.
      auto prev = s.step(v, i, sample.to(at::kBFloat16));
      EXPECT_EQ(prev.scalar_type(), at::kFloat);
      EXPECT_LT(rel_error(prev, refs().at(p + "prev_bf16_sample")), 1e-6) << p;
    }
  }
}

TEST(CogVideoXScheduler, DpmRunWithASeededGeneratorMatches) {
  for (const std::string name : {"2b", "5b"}) {
    CogVideoXDPMScheduler s(config_of(name));
    s.set_timesteps(4);
    s.set_generator(at::make_generator<at::CPUGeneratorImpl>(5));
    at::Tensor sample = refs().at(name + ".dpm.sample0");
    for (int i = 0; i < 4; ++i) {
      const std::string p = name + ".dpm.step" + std::to_string(i) + ".";
      sample = s.step(refs().at(p + "model_output"), i, sample);
      EXPECT_LT(rel_error(sample, refs().at(p + "prev")), 1e-5) << p;
    }
  }
}

TEST(CogVideoXScheduler, ConfigFromJsonAndUnsupportedSettings) {
  nlohmann::json j = {{"_class_name", "CogVideoXDDIMScheduler"},
                      {"snr_shift_scale", 1.0},
                      {"timestep_spacing", "trailing"},
                      {"prediction_type", "v_prediction"}};
  EXPECT_EQ(CogVideoXSchedulerConfig::from_json(j, "s.json").snr_shift_scale, 1.0);
  j["prediction_type"] = "epsilon";
  EXPECT_THROW(CogVideoXSchedulerConfig::from_json(j, "s.json"), Unsupported);
  j = {{"snr_shift_scale", "three"}};
  EXPECT_NE(input_error_of([&] {
              CogVideoXSchedulerConfig::from_json(j, "s.json");
            }).find("snr_shift_scale"),
            std::string::npos);
  CogVideoXDDIMScheduler s;
  EXPECT_NE(input_error_of([&] { s.set_timesteps(0); }).find("steps"), std::string::npos);
}

}  // namespace
}  // namespace ditbench
