#include "reports/mann_whitney.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace ditbench {
namespace {

// Number of arrangements of n1 + n2 distinct values for which U of the first sample equals u,
// for every u in 0..n1*n2: the recurrence count(n1, n2, u) = count(n1 - 1, n2, u - n2) +
// count(n1, n2 - 1, u) (the largest value belongs to sample 1 or to sample 2), built up over n2.
// Counts are doubles: C(n1 + n2, n1) exceeds 64 bits only far beyond the sizes this runs on.
std::vector<double> exact_u_counts(int n1, int n2) {
  // table[a][u]: counts for a first-sample values and the current number b of second-sample ones.
  std::vector<std::vector<double>> table(n1 + 1);
  for (int a = 0; a <= n1; ++a) table[a] = {1.0};  // b = 0: U is always 0
  for (int b = 1; b <= n2; ++b) {
    std::vector<std::vector<double>> next(n1 + 1);
    next[0] = {1.0};  // a = 0: U is always 0
    for (int a = 1; a <= n1; ++a) {
      next[a].assign(static_cast<size_t>(a) * b + 1, 0.0);
      // Largest value in sample 1: it is above all b values of sample 2, adding b to U.
      for (size_t u = 0; u < next[a - 1].size(); ++u) next[a][u + b] += next[a - 1][u];
      // Largest value in sample 2: U unchanged.
      for (size_t u = 0; u < table[a].size(); ++u) next[a][u] += table[a][u];
    }
    table = std::move(next);
  }
  return table[n1];
}

double normal_sf(double z) { return 0.5 * std::erfc(z / std::sqrt(2.0)); }

}  // namespace

MannWhitneyResult mann_whitney_u(const std::vector<double>& x, const std::vector<double>& y) {
  if (x.empty() || y.empty()) throw std::invalid_argument("mann_whitney_u: empty sample");
  const int n1 = static_cast<int>(x.size()), n2 = static_cast<int>(y.size());
  const int n = n1 + n2;

  // Average ranks (1-based) of the pooled samples, and the size of every group of ties.
  std::vector<std::pair<double, int>> pooled;  // (value, 0 for x / 1 for y)
  for (double v : x) pooled.emplace_back(v, 0);
  for (double v : y) pooled.emplace_back(v, 1);
  std::sort(pooled.begin(), pooled.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  double rank_sum_x = 0, tie_term = 0;
  bool ties = false;
  for (int i = 0; i < n;) {
    int j = i;
    while (j < n && pooled[j].first == pooled[i].first) ++j;
    const double tied = j - i, average_rank = 0.5 * (i + 1 + j);
    for (int k = i; k < j; ++k)
      if (pooled[k].second == 0) rank_sum_x += average_rank;
    tie_term += tied * tied * tied - tied;
    ties |= tied > 1;
    i = j;
  }

  MannWhitneyResult result;
  result.u = rank_sum_x - n1 * (n1 + 1) / 2.0;
  const double u_max = std::max(result.u, static_cast<double>(n1) * n2 - result.u);

  result.exact = !(n1 > 8 && n2 > 8) && !ties;
  if (result.exact) {
    // P(U >= u_max) under the null, doubled for the two-sided test.
    const std::vector<double> counts = exact_u_counts(n1, n2);
    const double total = std::accumulate(counts.begin(), counts.end(), 0.0);
    const auto first = static_cast<size_t>(std::llround(u_max));
    double tail = 0;
    for (size_t u = first; u < counts.size(); ++u) tail += counts[u];
    result.p = std::min(1.0, 2.0 * tail / total);
    return result;
  }
  const double mu = n1 * static_cast<double>(n2) / 2.0;
  const double variance = n1 * static_cast<double>(n2) / 12.0 *
                          ((n + 1) - tie_term / (static_cast<double>(n) * (n - 1)));
  if (variance <= 0) {  // every value equal: no evidence of any difference
    result.p = 1.0;
    return result;
  }
  // Continuity correction: the survival function of a discrete U at u_max includes u_max itself.
  const double z = (u_max - mu - 0.5) / std::sqrt(variance);
  result.p = std::clamp(2.0 * normal_sf(z), 0.0, 1.0);
  return result;
}

double mann_whitney_min_p(int n1, int n2) {
  // C(n1 + n2, n1) in floating point: exact for the sizes that matter here.
  double combinations = 1;
  for (int k = 1; k <= n1; ++k) combinations = combinations * (n2 + k) / k;
  return std::min(1.0, 2.0 / combinations);
}

}  // namespace ditbench
