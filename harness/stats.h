#pragma once
// Summary statistics of timing samples. Header-only on purpose: reports/ (which must not link the
// harness library) summarises per-step samples with the same definitions the runner records.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <vector>

namespace ditbench {

struct SampleStats {
  std::vector<double> samples_s;  // every sample, in the order taken
  double median_s = 0, min_s = 0, max_s = 0;
  double stdev_s = 0;  // sample (n - 1) standard deviation; 0 for a single sample
};

// Median: the middle sample, or the mean of the two middle ones for an even count.
inline double median(std::vector<double> samples) {
  if (samples.empty()) throw std::invalid_argument("median of no samples");
  const size_t n = samples.size(), mid = n / 2;
  std::nth_element(samples.begin(), samples.begin() + mid, samples.end());
  double upper = samples[mid];
  if (n % 2) return upper;
  double lower = *std::max_element(samples.begin(), samples.begin() + mid);
  return 0.5 * (lower + upper);
}

// Sample standard deviation (Bessel's n - 1): repeats are a sample of the run-to-run spread, not
// the whole population. One sample has no spread to estimate, so it reports 0.
inline double sample_stdev(const std::vector<double>& samples) {
  const size_t n = samples.size();
  if (n < 2) return 0.0;
  double mean = std::accumulate(samples.begin(), samples.end(), 0.0) / n;
  double squares = 0;
  for (double s : samples) squares += (s - mean) * (s - mean);
  return std::sqrt(squares / (n - 1));
}

inline SampleStats summarize(std::vector<double> samples) {
  if (samples.empty()) throw std::invalid_argument("summarize: no samples");
  SampleStats s;
  s.median_s = median(samples);
  auto [lo, hi] = std::minmax_element(samples.begin(), samples.end());
  s.min_s = *lo;
  s.max_s = *hi;
  s.stdev_s = sample_stdev(samples);
  s.samples_s = std::move(samples);
  return s;
}

}  // namespace ditbench
