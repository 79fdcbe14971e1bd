// Two-sided Mann–Whitney U against scipy.stats.mannwhitneyu(x, y, alternative="two-sided") (scipy
// 1.17, method "auto"), computed once with the project's Python environment.
#include "reports/mann_whitney.h"

#include <gtest/gtest.h>

namespace ditbench {
namespace {

struct Case {
  const char* name;
  std::vector<double> x, y;
  double scipy_u, scipy_p;
  bool exact;
};

TEST(MannWhitney, MatchesScipy) {
  const std::vector<Case> cases = {
      {"separated 5x5",
       {1.0, 1.1, 1.2, 1.3, 1.4},
       {2.0, 2.1, 2.2, 2.3, 2.4},
       0.0,
       0.007936507936507936,
       true},
      {"interleaved 5x6",
       {1.0, 1.3, 1.5, 2.2, 2.9},
       {1.1, 1.2, 1.6, 2.0, 2.5, 3.1},
       13.0,
       0.7922077922077921,
       true},
      {"separated 3x3", {1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}, 0.0, 0.1, true},
      {"4x8",
       {0.5, 0.9, 1.7, 2.8},
       {0.6, 0.7, 1.0, 1.1, 1.9, 2.0, 3.5, 4.0},
       12.0,
       0.5696969696969697,
       true},
      // Ties send scipy to the normal approximation with tie and continuity correction.
      {"ties 5x5",
       {1.0, 1.0, 2.0, 3.0, 3.0},
       {2.0, 3.0, 4.0, 4.0, 5.0},
       3.5,
       0.06960100257898734,
       false},
      // Both samples above 8: normal approximation.
      {"9x10",
       {3.1, 2.7, 4.4, 5.0, 3.3, 2.9, 4.1, 3.8, 3.6},
       {4.2, 4.9, 5.3, 3.9, 6.1, 5.5, 4.7, 5.8, 6.4, 5.1},
       7.0,
       0.002199647061113056,
       false},
      {"all equal", {1.0, 1.0, 1.0, 1.0}, {1.0, 1.0, 1.0, 1.0}, 8.0, 1.0, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto r = mann_whitney_u(c.x, c.y);
    EXPECT_DOUBLE_EQ(r.u, c.scipy_u);
    EXPECT_NEAR(r.p, c.scipy_p, 1e-12);
    EXPECT_EQ(r.exact, c.exact);
  }
}

TEST(MannWhitney, SymmetricInItsSamples) {
  std::vector<double> x = {1.0, 1.3, 1.5, 2.2, 2.9}, y = {1.1, 1.2, 1.6, 2.0, 2.5, 3.1};
  auto xy = mann_whitney_u(x, y), yx = mann_whitney_u(y, x);
  EXPECT_DOUBLE_EQ(xy.p, yx.p);
  EXPECT_DOUBLE_EQ(xy.u + yx.u, 30.0);  // U1 + U2 = n1 * n2
}

TEST(MannWhitney, SmallestPValue) {
  // 2 / C(6, 3) = 0.1: three samples a side can never reach 0.05.
  EXPECT_DOUBLE_EQ(mann_whitney_min_p(3, 3), 0.1);
  EXPECT_NEAR(mann_whitney_min_p(4, 4), 2.0 / 70.0, 1e-15);
  EXPECT_NEAR(mann_whitney_min_p(5, 5), 2.0 / 252.0, 1e-15);
}

TEST(MannWhitney, EmptySampleThrows) {
  EXPECT_THROW(mann_whitney_u({}, {1.0}), std::invalid_argument);
}

}  // namespace
}  // namespace ditbench
