#pragma once
// `ditbench tune`: finds the fastest cache threshold whose output keeps a quality floor against
// the uncached baseline (cache-dit #99), running each candidate through the real run protocol.
//
// The reuse decisions are monotone in the threshold, so the search brackets by doubling from a
// start value and then bisects. A threshold whose decisions would be exactly those of a run
// already made (replayed from that run's recorded per-step signals) gives the same output, so it
// is settled without running (for models without CFG: records hold the first branch's decisions
// only, so with two branches every threshold runs).
#include <array>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "harness/record.h"
#include "harness/suite.h"

namespace ditbench {

struct TuneOptions {
  // "fbcache" or "teacache"; empty: the first of them on the suite's cache axis, else fbcache.
  std::string cache;
  // The floor: exactly one of the two (mean over frames against the baseline's frames).
  std::optional<double> min_psnr;  // dB
  std::optional<double> min_ssim;  // in (0, 1]
  // Every evaluated record goes to out_dir/results.jsonl (which must not exist yet).
  std::filesystem::path out_dir;
  // First threshold tried; default: the suite's first positive threshold for the policy, else the
  // median per-step signal of the threshold-0 run (FBCache; TeaCache: of its rescaled signal).
  std::optional<double> start;
  // Candidate runs beyond the baseline and threshold 0.
  int max_evaluations = 8;
};

// One threshold the search looked at.
struct TuneStep {
  double threshold = 0;
  size_t record = 0;  // index into TuneResult::records of the run that gives its output
  bool ran = false;   // false: same decisions as that run, not run again
  bool meets_floor = false;
};

struct TuneResult {
  std::string policy;
  ResultRecord baseline;
  std::vector<ResultRecord> records;  // every evaluated cached run, in order (threshold 0 first)
  std::vector<TuneStep> steps;        // the search in order
  // Index into records: most reused steps among the runs meeting the floor (the lower e2e median
  // on a tie); none when only runs that never reuse meet it.
  std::optional<size_t> chosen;
};

// Runs the search, writing a line per threshold looked at to `log`. InputError on a bad floor,
// policy or suite (no decoded frames, an existing results file); a run that fails or is skipped
// throws std::runtime_error with its reason.
TuneResult tune_cache_threshold(const Suite& suite, const TuneOptions& options, std::ostream& log);

// The verdict after the search: "chosen: threshold ..." with its reuse, e2e, speedup and quality
// (or why none was chosen), then one JSON line for scripts: policy, floor, chosen_threshold (null
// when none), config_id, reused_steps, total_steps, e2e_median_s, speedup, psnr_mean (null when
// identical), ssim_mean, evaluated (runs made), results.
std::string tune_summary(const TuneResult& result, const TuneOptions& options);

// The per-step reuse decisions `policy` would make at `threshold` on the trajectory of a recorded
// run (its signals), with the suite's warmup and caps; for TeaCache `coefficients` rescale the
// signal. Equal to the run's own decisions exactly when a run at `threshold` repeats that run.
std::vector<bool> replay_cache_decisions(const std::string& policy, const CacheRecord& run,
                                         double threshold, const SuiteCacheOptions& limits,
                                         const std::array<double, 5>& coefficients);

}  // namespace ditbench
