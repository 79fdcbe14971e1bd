// The regression verdict of `ditbench compare` on constructed records whose answer is known by
// construction: clearly separated samples, noise inside the threshold, too few samples for the
// rank test, quality drops, a changed environment and configs present on one side only.
#include "reports/compare.h"

#include <gtest/gtest.h>

#include "models/common/error.h"

namespace ditbench {
namespace {
using nlohmann::json;

const json kEnv = {{"gpu", "NVIDIA H100 80GB HBM3"},
                   {"driver", "570.86"},
                   {"cuda", "12.8"},
                   {"torch", "2.11.0"},
                   {"git", "abc"},
                   {"host", "ci-1"}};

ResultRecord timed_record(const std::string& id, std::vector<double> e2e) {
  ResultRecord r;
  r.suite = "ci-regression";
  r.config_id = id;
  r.env = kEnv;
  TimingsRecord t;
  t.e2e = summarize(std::move(e2e));
  r.timings = t;
  return r;
}

std::vector<double> scaled(std::vector<double> v, double factor) {
  for (double& x : v) x *= factor;
  return v;
}

QualityRecord quality(std::optional<double> psnr, double ssim) {
  QualityRecord q;
  q.psnr_mean = psnr;
  q.psnr_min = psnr;
  q.identical = !psnr;
  q.ssim_mean = ssim;
  q.ssim_min = ssim;
  return q;
}

const std::vector<double> kFive = {1.00, 1.01, 0.99, 1.02, 1.005};

const ConfigComparison& only_config(const CompareResult& r) {
  EXPECT_EQ(r.configs.size(), 1u);
  return r.configs.at(0);
}

TEST(Compare, ClearSlowdownWithFiveSamplesIsARegression) {
  // Every NEW sample 20% above: fully separated, exact two-sided p = 2 / C(10, 5).
  auto result = compare_results({timed_record("a", kFive)}, {timed_record("a", scaled(kFive, 1.2))},
                                CompareOptions{});
  const auto& c = only_config(result);
  EXPECT_TRUE(result.regression);
  EXPECT_EQ(c.timing, TimingVerdict::kSlower);
  EXPECT_FALSE(c.magnitude_rule);
  ASSERT_TRUE(c.p_value);
  EXPECT_NEAR(*c.p_value, 2.0 / 252.0, 1e-12);
  EXPECT_NEAR(*c.change, 0.2, 1e-12);
  EXPECT_NE(result.markdown.find("REGRESSION"), std::string::npos);
  EXPECT_NE(result.markdown.find("### Regressions"), std::string::npos);
}

TEST(Compare, SignificantButSmallSlowdownIsNoRegression) {
  // 4% slower and separated: the samples differ, but by less than the 5% threshold.
  auto result = compare_results({timed_record("a", kFive)},
                                {timed_record("a", scaled(kFive, 1.04))}, CompareOptions{});
  const auto& c = only_config(result);
  EXPECT_FALSE(result.regression);
  EXPECT_LT(*c.p_value, 0.05);
  EXPECT_EQ(c.timing, TimingVerdict::kSame);
  // The same samples against a 3% threshold do regress.
  CompareOptions strict;
  strict.max_slowdown = 0.03;
  EXPECT_TRUE(
      compare_results({timed_record("a", kFive)}, {timed_record("a", scaled(kFive, 1.04))}, strict)
          .regression);
}

TEST(Compare, NoisyLargeMedianShiftWithoutEvidenceIsNoRegression) {
  // Median 8% higher, but the samples interleave: p well above 0.05.
  std::vector<double> base = {1.00, 1.20, 0.90, 1.30, 0.95};
  std::vector<double> now = {1.08, 0.92, 1.35, 0.98, 1.25};
  auto result = compare_results({timed_record("a", base)}, {timed_record("a", now)}, {});
  const auto& c = only_config(result);
  EXPECT_FALSE(result.regression);
  EXPECT_GT(*c.change, 0.05);
  EXPECT_GT(*c.p_value, 0.05);
  ASSERT_EQ(c.notes.size(), 1u);
  EXPECT_NE(c.notes[0].find("not significant"), std::string::npos);
}

TEST(Compare, SpeedupIsReportedNotARegression) {
  auto result = compare_results({timed_record("a", kFive)}, {timed_record("a", scaled(kFive, 0.7))},
                                CompareOptions{});
  EXPECT_FALSE(result.regression);
  EXPECT_EQ(only_config(result).timing, TimingVerdict::kFaster);
}

TEST(Compare, ThreeSamplesDecideOnMagnitudeAlone) {
  // 10% slower with no overlap: a regression though Mann–Whitney's p could not be below 0.1.
  std::vector<double> base = {1.00, 1.01, 0.99};
  auto slower = compare_results({timed_record("a", base)}, {timed_record("a", scaled(base, 1.10))},
                                CompareOptions{});
  const auto& c = only_config(slower);
  EXPECT_TRUE(slower.regression);
  EXPECT_TRUE(c.magnitude_rule);
  EXPECT_FALSE(c.p_value);
  EXPECT_NE(slower.markdown.find("magnitude alone"), std::string::npos);

  // 10% slower median, but one NEW sample below BASE's maximum: not enough.
  auto overlapping = compare_results({timed_record("a", base)},
                                     {timed_record("a", {1.10, 1.12, 1.005})}, CompareOptions{});
  EXPECT_FALSE(overlapping.regression);
  EXPECT_TRUE(only_config(overlapping).magnitude_rule);
  EXPECT_EQ(only_config(overlapping).notes.size(), 1u);

  // Separated but only 3% slower: within the threshold.
  EXPECT_FALSE(compare_results({timed_record("a", base)}, {timed_record("a", scaled(base, 1.03))},
                               CompareOptions{})
                   .regression);
  // Four a side may use the rank test (smallest p 2/70 < 0.05).
  std::vector<double> four = {1.00, 1.01, 0.99, 1.02};
  auto tested =
      compare_results({timed_record("a", four)}, {timed_record("a", scaled(four, 1.2))}, {});
  EXPECT_FALSE(only_config(tested).magnitude_rule);
  EXPECT_TRUE(tested.regression);
}

TEST(Compare, QualityDropsBeyondThresholdsRegress) {
  auto with_quality = [](std::optional<double> psnr, double ssim) {
    ResultRecord r = timed_record("fbcache", kFive);
    r.quality = quality(psnr, ssim);
    return r;
  };
  CompareOptions options;
  options.max_psnr_drop = 1.0;
  options.max_ssim_drop = 0.01;
  // 3 dB lower PSNR.
  auto psnr_drop =
      compare_results({with_quality(35.0, 0.98)}, {with_quality(32.0, 0.975)}, options);
  EXPECT_TRUE(psnr_drop.regression);
  ASSERT_EQ(only_config(psnr_drop).reasons.size(), 1u);
  EXPECT_NE(only_config(psnr_drop).reasons[0].find("PSNR dropped 3.00 dB"), std::string::npos);
  // Within both thresholds.
  EXPECT_FALSE(
      compare_results({with_quality(35.0, 0.98)}, {with_quality(34.5, 0.975)}, options).regression);
  // SSIM 0.05 lower.
  auto ssim_drop = compare_results({with_quality(35.0, 0.98)}, {with_quality(35.0, 0.93)}, options);
  EXPECT_TRUE(ssim_drop.regression);
  EXPECT_NE(only_config(ssim_drop).reasons.at(0).find("SSIM"), std::string::npos);
  // Identical before, different now: an unbounded drop.
  auto lost_identity =
      compare_results({with_quality(std::nullopt, 1.0)}, {with_quality(60.0, 1.0)}, options);
  EXPECT_TRUE(lost_identity.regression);
  EXPECT_NE(only_config(lost_identity).reasons.at(0).find("identical"), std::string::npos);
  // Identical now: no drop; identical on both sides: none either.
  EXPECT_FALSE(
      compare_results({with_quality(40.0, 0.99)}, {with_quality(std::nullopt, 1.0)}, options)
          .regression);
  EXPECT_FALSE(
      compare_results({with_quality(std::nullopt, 1.0)}, {with_quality(std::nullopt, 1.0)}, options)
          .regression);
  // Without thresholds quality never regresses.
  EXPECT_FALSE(
      compare_results({with_quality(35.0, 0.98)}, {with_quality(20.0, 0.5)}, {}).regression);
  // An absolute floor.
  CompareOptions floor;
  floor.min_psnr = 33.0;
  EXPECT_TRUE(
      compare_results({with_quality(35.0, 0.98)}, {with_quality(32.0, 0.98)}, floor).regression);
}

TEST(Compare, DifferentEnvironmentIsALoudWarningNotARegression) {
  ResultRecord now = timed_record("a", kFive);
  now.env["gpu"] = "NVIDIA A100-SXM4-80GB";
  now.env["torch"] = "2.10.0";
  now.env["git"] = "def";  // a new commit is expected
  now.env["host"] = "ci-2";
  auto result = compare_results({timed_record("a", kFive)}, {now}, CompareOptions{});
  EXPECT_FALSE(result.regression);
  ASSERT_EQ(result.env_differences.size(), 2u);
  EXPECT_NE(result.env_differences[0].find("A100"), std::string::npos);
  EXPECT_NE(result.env_differences[1].find("torch"), std::string::npos);
  EXPECT_NE(result.markdown.find("environments differ"), std::string::npos);

  auto same = compare_results({timed_record("a", kFive)}, {timed_record("a", kFive)}, {});
  EXPECT_TRUE(same.env_differences.empty());
  EXPECT_EQ(same.markdown.find("environments differ"), std::string::npos);
}

// The same card held to another power limit (telemetry's enforced limit) is an environment
// difference too; a side without readings says nothing about it.
TEST(Compare, DifferentGpuPowerLimitIsAnEnvironmentDifference) {
  auto limited = [](std::optional<double> watts) {
    ResultRecord r = timed_record("a", kFive);
    GpuTelemetryEntry e;
    e.sm_clock_mhz_median = 1500;
    e.power_limit_w = watts;
    r.telemetry = TelemetryRecord{0.1, {e}, std::nullopt};
    return r;
  };
  auto result = compare_results({limited(700.0)}, {limited(500.0)}, CompareOptions{});
  EXPECT_FALSE(result.regression);
  ASSERT_EQ(result.env_differences.size(), 1u);
  EXPECT_EQ(result.env_differences[0], "GPU power limit: 700 W → 500 W");
  EXPECT_NE(result.markdown.find("environments differ"), std::string::npos);
  EXPECT_TRUE(compare_results({limited(700.0)}, {limited(700.0)}, {}).env_differences.empty());
  EXPECT_TRUE(
      compare_results({limited(700.0)}, {timed_record("a", kFive)}, {}).env_differences.empty());
  EXPECT_EQ(compare_results({limited(700.0)}, {limited(std::nullopt)}, {}).env_differences,
            std::vector<std::string>{"GPU power limit: 700 W → unknown"});
}

// The slowest GPU's median SM clock, 1500 MHz in BASE: 1350 in NEW (-10 %) is worth a note,
// 1470 (-2 %, inside the 5 % threshold) is not; a record without readings compares nothing.
TEST(Compare, GpuClockThatMovedIsANote) {
  auto with_clocks = [](std::vector<double> medians) {
    ResultRecord r = timed_record("a", kFive);
    TelemetryRecord t;
    t.period_s = 0.1;
    for (double m : medians) {
      GpuTelemetryEntry e;
      e.device = static_cast<int>(t.devices.size());
      e.sm_clock_mhz_median = m;
      t.devices.push_back(e);
    }
    r.telemetry = t;
    return r;
  };
  auto moved =
      compare_results({with_clocks({1500, 1600})}, {with_clocks({1350, 1600})}, CompareOptions{});
  EXPECT_FALSE(moved.regression);
  const auto& c = only_config(moved);
  ASSERT_EQ(c.notes.size(), 1u);
  EXPECT_NE(c.notes[0].find("median SM clock 1500 → 1350 MHz (-10.0%)"), std::string::npos)
      << c.notes[0];
  EXPECT_NE(moved.markdown.find("GPU clock moved"), std::string::npos);
  auto steady = compare_results({with_clocks({1500})}, {with_clocks({1470})}, CompareOptions{});
  EXPECT_TRUE(only_config(steady).notes.empty());
  auto unread =
      compare_results({with_clocks({1500})}, {timed_record("a", kFive)}, CompareOptions{});
  EXPECT_TRUE(only_config(unread).notes.empty());
}

TEST(Compare, ConfigsOnOneSideAreListed) {
  auto result = compare_results({timed_record("a", kFive), timed_record("gone", kFive)},
                                {timed_record("a", kFive), timed_record("added", kFive)}, {});
  EXPECT_FALSE(result.regression);
  EXPECT_EQ(result.only_in_base, std::vector<std::string>{"gone"});
  EXPECT_EQ(result.only_in_new, std::vector<std::string>{"added"});
  EXPECT_NE(result.markdown.find("Only in BASE"), std::string::npos);
  EXPECT_NE(result.markdown.find("`added`"), std::string::npos);
}

TEST(Compare, FailureInNewRegressesAndLastRecordCounts) {
  ResultRecord failed = timed_record("a", kFive);
  failed.status = RunStatus::kFailed;
  failed.reason = "CUDA out of memory";
  auto result = compare_results({timed_record("a", kFive)}, {failed}, {});
  EXPECT_TRUE(result.regression);
  EXPECT_NE(only_config(result).reasons.at(0).find("out of memory"), std::string::npos);
  // Redone with --resume: the later, passing record counts.
  EXPECT_FALSE(compare_results({timed_record("a", kFive)}, {failed, timed_record("a", kFive)}, {})
                   .regression);
}

TEST(Compare, EmptySideIsBadInput) {
  EXPECT_THROW(compare_results({}, {timed_record("a", kFive)}, {}, "base.jsonl"), InputError);
  EXPECT_THROW(compare_results({timed_record("a", kFive)}, {}, {}), InputError);
}

}  // namespace
}  // namespace ditbench
