// GPU telemetry: the summary of hand-written samples, its JSON round trip and the path named for a
// bad field, a sampler without NVML saying why, and (on a GPU) a sampler reading a working card.
#include "harness/gpu_telemetry.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "models/common/error.h"

namespace ditbench {
namespace {

// Five readings: two under the software power cap (one also thermally slowed), an idle one, an
// unconstrained one, and one under the hardware power brake and hardware thermal slowdown.
std::vector<TelemetrySample> hand_samples() {
  return {{1500, 690, 60, kClockEventSwPowerCap},
          {1440, 700, 65, kClockEventSwPowerCap | kClockEventSwThermal},
          {1980, 120, 58, 0x1},
          {1485, 695, 63, 0},
          {1395, 640, 66, kClockEventHwPowerBrake | kClockEventHwThermal}};
}

TEST(GpuTelemetry, SummaryOfHandWrittenSamples) {
  const GpuTelemetryEntry e = summarize_telemetry(3, hand_samples(), 700.0, 1980.0);
  EXPECT_EQ(e.device, 3);
  EXPECT_EQ(e.samples, 5);
  // Clocks sorted: 1395 1440 1485 1500 1980.
  EXPECT_DOUBLE_EQ(e.sm_clock_mhz_median, 1485);
  EXPECT_DOUBLE_EQ(e.sm_clock_mhz_min, 1395);
  EXPECT_DOUBLE_EQ(e.sm_clock_mhz_max, 1980);
  EXPECT_DOUBLE_EQ(e.power_w_mean, (690.0 + 700 + 120 + 695 + 640) / 5);  // 569
  EXPECT_DOUBLE_EQ(e.power_w_max, 700);
  EXPECT_DOUBLE_EQ(e.temperature_c_max, 66);
  EXPECT_DOUBLE_EQ(e.power_capped, 3.0 / 5);      // samples 1, 2 and 5
  EXPECT_DOUBLE_EQ(e.thermal_slowdown, 2.0 / 5);  // samples 2 and 5
  EXPECT_EQ(e.power_limit_w, 700.0);
  EXPECT_EQ(e.max_sm_clock_mhz, 1980.0);
  // An even count: the mean of the two middle clocks.
  auto four = hand_samples();
  four.pop_back();
  EXPECT_DOUBLE_EQ(summarize_telemetry(0, four).sm_clock_mhz_median, (1485.0 + 1500) / 2);
  EXPECT_FALSE(summarize_telemetry(0, four).power_limit_w.has_value());
  EXPECT_THROW(summarize_telemetry(0, {}), std::invalid_argument);
}

ResultRecord record_with_telemetry() {
  ResultRecord r;
  r.suite = "s";
  r.config_id = "attn=cudnn";
  TelemetryRecord t;
  t.period_s = 0.1;
  t.devices.push_back(summarize_telemetry(0, hand_samples(), 700.0, 1980.0));
  auto second = hand_samples();
  second.pop_back();
  t.devices.push_back(summarize_telemetry(1, second));  // no limit or maximum known: null
  r.telemetry = t;
  return r;
}

TEST(GpuTelemetry, RecordRoundTripsThroughJson) {
  const ResultRecord r = record_with_telemetry();
  const nlohmann::json j = to_json(r);
  EXPECT_EQ(j["telemetry"]["source"], "nvml");
  EXPECT_EQ(j["telemetry"]["devices"][0]["sm_clock_mhz"]["median"], 1485.0);
  EXPECT_TRUE(j["telemetry"]["devices"][1]["power_limit_w"].is_null());
  const ResultRecord back = record_from_json(j);
  ASSERT_TRUE(back.telemetry.has_value());
  EXPECT_TRUE(back.extra.empty()) << back.extra.dump();  // a known key, not kept as extra
  ASSERT_EQ(back.telemetry->devices.size(), 2u);
  const GpuTelemetryEntry& d = back.telemetry->devices[0];
  EXPECT_EQ(d.samples, 5);
  EXPECT_DOUBLE_EQ(d.sm_clock_mhz_min, 1395);
  EXPECT_DOUBLE_EQ(d.power_w_mean, 569);
  EXPECT_DOUBLE_EQ(d.power_capped, 0.6);
  EXPECT_EQ(d.power_limit_w, 700.0);
  EXPECT_EQ(back.telemetry->devices[1].device, 1);
  EXPECT_FALSE(back.telemetry->devices[1].max_sm_clock_mhz.has_value());
  EXPECT_EQ(to_json(back), j);

  nlohmann::json bad = j;
  bad["telemetry"]["devices"][1]["samples"] = "many";
  try {
    record_from_json(bad);
    FAIL() << "a string sample count was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("/telemetry/devices/1/samples"), std::string::npos)
        << e.what();
  }
}

TEST(TelemetrySampler, WithoutTheLibraryRecordsWhy) {
  TelemetrySampler sampler({0}, std::chrono::milliseconds(5), "libditbench-no-such-nvml.so.1");
  const TelemetryRecord t = sampler.finish();
  EXPECT_TRUE(t.devices.empty());
  ASSERT_TRUE(t.note.has_value());
  EXPECT_NE(t.note->find("libditbench-no-such-nvml.so.1"), std::string::npos) << *t.note;
  EXPECT_DOUBLE_EQ(t.period_s, 0.005);
  EXPECT_EQ(sampler.finish().note, t.note);  // finishing again gives the same record
}

// A card under a stream of bf16 matrix products, sampled every 20 ms for about half a second:
// readings within what a GPU can report.
TEST(TelemetrySamplerGpu, ReadsAWorkingCard) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const auto options = at::TensorOptions().device(at::kCUDA, 0).dtype(at::kBFloat16);
  const at::Tensor a = at::randn({4096, 4096}, options);
  at::Tensor c;
  TelemetrySampler sampler({0}, std::chrono::milliseconds(20));
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  while (std::chrono::steady_clock::now() < until) {
    for (int i = 0; i < 20; ++i) c = at::mm(a, a);
    c.sum().item<float>();  // waits for the products
  }
  const TelemetryRecord t = sampler.finish();
  ASSERT_EQ(t.devices.size(), 1u) << t.note.value_or("");
  const GpuTelemetryEntry& d = t.devices[0];
  EXPECT_GE(d.samples, 10);
  EXPECT_GT(d.sm_clock_mhz_min, 100);
  ASSERT_TRUE(d.max_sm_clock_mhz.has_value());
  EXPECT_LE(d.sm_clock_mhz_max, *d.max_sm_clock_mhz + 1);
  ASSERT_TRUE(d.power_limit_w.has_value());
  EXPECT_GT(d.power_w_mean, 30);  // a card doing matrix products
  EXPECT_LT(d.power_w_max, *d.power_limit_w * 1.5);
  EXPECT_GT(d.temperature_c_max, 0);
  EXPECT_LT(d.temperature_c_max, 120);
}

}  // namespace
}  // namespace ditbench
