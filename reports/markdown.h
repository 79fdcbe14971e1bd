#pragma once
// Report tables built from result records only (DESIGN.md: reporters read results.jsonl, never
// the runner's state): the Markdown speedup table of `ditbench run`, the same columns as CSV, and
// the Pareto front that sweep reports mark.
#include <string>
#include <vector>

#include "harness/record.h"

namespace ditbench {

// The speedup table: config, status, e2e median, speedup vs the baseline config, denoise,
// per-step median, VAE decode, PSNR and SSIM (mean / min), reused/total steps (flagged when a cache
// never reused), peak memory, GPUs; then the median of every stage per config, skipped and failed
// configs with their reasons, a note when any config ran on random weights, and the cache
// threshold sweep section (reports/sweep.h) when configs ran caches with thresholds. Records of
// several suites may be mixed: speedups are against each suite's own baseline.
std::string markdown_report(const std::vector<ResultRecord>& records);

// One record per config (suite and config id), the last one when a config has several (a failed
// run redone with --resume), in the order configs first appeared. Every table uses this.
std::vector<ResultRecord> latest_per_config(const std::vector<ResultRecord>& records);

// The same columns as comma-separated values with full-precision numbers and empty cells for
// values that do not apply; one header line, one line per config.
std::string csv_report(const std::vector<ResultRecord>& records);

// A (speedup, PSNR) point of a sweep; identical frames have PSNR +infinity.
struct ParetoPoint {
  double speedup = 0;
  double psnr = 0;
};

// true for every point no other point dominates (at least as fast and at least as good, and
// strictly better in one of the two). Equal points are all on the front.
std::vector<bool> pareto_front(const std::vector<ParetoPoint>& points);

}  // namespace ditbench
