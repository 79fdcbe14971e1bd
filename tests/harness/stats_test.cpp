// Summary statistics against values worked out by hand.
#include "harness/stats.h"

#include <gtest/gtest.h>

#include <cmath>

namespace ditbench {
namespace {

TEST(StatsTest, MedianOfOddAndEvenCounts) {
  EXPECT_DOUBLE_EQ(median({3.0, 1.0, 2.0}), 2.0);
  EXPECT_DOUBLE_EQ(median({4.0, 1.0, 3.0, 2.0}), 2.5);
  EXPECT_DOUBLE_EQ(median({7.0}), 7.0);
  EXPECT_THROW(median({}), std::invalid_argument);
}

TEST(StatsTest, SampleStdevUsesBesselsCorrection) {
  // mean 5, squared deviations sum to 32: sample variance 32/7 (population would give 2).
  EXPECT_NEAR(sample_stdev({2, 4, 4, 4, 5, 5, 7, 9}), std::sqrt(32.0 / 7.0), 1e-12);
  EXPECT_DOUBLE_EQ(sample_stdev({1.5}), 0.0);
  EXPECT_DOUBLE_EQ(sample_stdev({1.0, 3.0}), std::sqrt(2.0));
}

TEST(StatsTest, SummarizeKeepsSamplesInOrder) {
  SampleStats s = summarize({0.30, 0.10, 0.20});
  EXPECT_EQ(s.samples_s, (std::vector<double>{0.30, 0.10, 0.20}));
  EXPECT_DOUBLE_EQ(s.median_s, 0.20);
  EXPECT_DOUBLE_EQ(s.min_s, 0.10);
  EXPECT_DOUBLE_EQ(s.max_s, 0.30);
  EXPECT_NEAR(s.stdev_s, 0.1, 1e-12);  // deviations -0.1, 0, 0.1: (0.01 + 0.01) / 2
  SampleStats one = summarize({2.0});
  EXPECT_DOUBLE_EQ(one.stdev_s, 0.0);
  EXPECT_DOUBLE_EQ(one.median_s, 2.0);
}

}  // namespace
}  // namespace ditbench
