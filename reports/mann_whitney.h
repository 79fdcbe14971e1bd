#pragma once
// Two-sided Mann–Whitney U test, the rank test `ditbench compare` uses to decide whether two sets
// of timing samples differ. It assumes nothing about the shape of the timing distribution (run
// times are skewed and have outliers), only that the samples of each side are independent.
// Numbers match scipy.stats.mannwhitneyu(x, y, alternative="two-sided", method="auto").
#include <vector>

namespace ditbench {

struct MannWhitneyResult {
  double u = 0;        // U statistic of the first sample (scipy's "statistic")
  double p = 1;        // two-sided p-value
  bool exact = false;  // exact null distribution (else normal approximation)
};

// Exact distribution of U when both samples are small (one of them at most 8) and there are no
// ties; otherwise the normal approximation with tie correction and continuity correction, as
// scipy's method="auto" chooses. Throws std::invalid_argument when a sample is empty.
MannWhitneyResult mann_whitney_u(const std::vector<double>& x, const std::vector<double>& y);

// The smallest two-sided p-value the exact test can give with n1 and n2 samples (all of one side
// below all of the other): 2 / C(n1 + n2, n1). With 3 a side it is 0.1.
double mann_whitney_min_p(int n1, int n2);

}  // namespace ditbench
