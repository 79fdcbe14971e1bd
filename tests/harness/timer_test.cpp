// StageTimer on the CPU: nesting, repeated stages kept in order, host durations that add up.
#include "harness/timer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <thread>

namespace ditbench {
namespace {

void work() { std::this_thread::sleep_for(std::chrono::milliseconds(1)); }

TEST(StageTimerTest, NestedAndRepeatedStagesOnCpu) {
  StageTimer timer(at::kCPU);
  {
    auto e2e = timer.scope("e2e");
    {
      auto denoise = timer.scope("denoise");
      for (int step = 0; step < 3; ++step) {
        auto s = timer.scope("step");
        work();
      }
    }
    auto vae = timer.scope("vae_decode");
    work();
  }
  TimingResult result = timer.collect();
  std::vector<std::string> names;
  std::vector<int> depths;
  for (const auto& span : result.spans) {
    names.push_back(span.name);
    depths.push_back(span.depth);
    EXPECT_GT(span.host_s, 0.0) << span.name;
    EXPECT_FALSE(span.device_s.has_value()) << "no GPU time on the CPU";
    EXPECT_EQ(span.seconds(), span.host_s);
  }
  EXPECT_EQ(names,
            (std::vector<std::string>{"e2e", "denoise", "step", "step", "step", "vae_decode"}));
  EXPECT_EQ(depths, (std::vector<int>{0, 1, 2, 2, 2, 1}));

  auto steps = result.seconds("step");
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(steps, result.host_seconds("step"));
  EXPECT_EQ(result.by_stage().at("step"), steps);
  double denoise = result.seconds("denoise").at(0), e2e = result.seconds("e2e").at(0);
  double vae = result.seconds("vae_decode").at(0);
  EXPECT_LE(steps[0] + steps[1] + steps[2], denoise);  // children lie inside their parent
  EXPECT_LE(denoise + vae, e2e);
}

TEST(StageTimerTest, CollectClearsAndRefusesOpenStages) {
  StageTimer timer(at::kCPU);
  { auto a = timer.scope("a"); }
  EXPECT_EQ(timer.collect().spans.size(), 1u);
  EXPECT_TRUE(timer.collect().spans.empty());

  auto open = timer.scope("open");
  EXPECT_THROW(timer.collect(), std::logic_error);
  open.end();  // ending early makes the destructor a no-op
  auto result = timer.collect();
  ASSERT_EQ(result.spans.size(), 1u);
  EXPECT_EQ(result.spans[0].name, "open");
}

TEST(StageTimerTest, ConsecutiveStagesKeepTheirOrder) {
  StageTimer timer(at::kCPU);
  for (const char* name : {"text_embed", "prepare_latents", "denoise", "postprocess"}) {
    auto s = timer.scope(name);
    work();
  }
  auto result = timer.collect();
  ASSERT_EQ(result.spans.size(), 4u);
  EXPECT_EQ(result.spans[0].name, "text_embed");
  EXPECT_EQ(result.spans[3].name, "postprocess");
  for (const auto& s : result.spans) EXPECT_EQ(s.depth, 0);
}

// On a GPU every span also has event time; nested events lie inside their parent's on one stream.
TEST(StageTimerTest, CudaEventsTimeTheStream) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  at::Device device(at::kCUDA, 0);
  at::Tensor x = at::randn({1024, 1024}, at::TensorOptions().device(device));
  StageTimer timer(device);
  {
    auto denoise = timer.scope("denoise");
    for (int step = 0; step < 3; ++step) {
      auto s = timer.scope("step");
      x = at::matmul(x, x);
      x = x / x.norm();
    }
  }
  TimingResult result = timer.collect();
  ASSERT_EQ(result.spans.size(), 4u);
  for (const auto& span : result.spans) {
    ASSERT_TRUE(span.device_s.has_value()) << span.name;
    EXPECT_GT(*span.device_s, 0.0) << span.name;
    EXPECT_EQ(span.seconds(), *span.device_s);
  }
  auto steps = result.seconds("step");
  double denoise = result.seconds("denoise").at(0);
  // Event timestamps have about half a microsecond of resolution.
  EXPECT_LE(steps[0] + steps[1] + steps[2], denoise + 2e-6);
}

}  // namespace
}  // namespace ditbench
