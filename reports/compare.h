#pragma once
// The regression check of `ditbench compare BASE.jsonl NEW.jsonl` (DESIGN.md "CLI contract"):
// configs matched by config_id; a config regresses when it got slower beyond a threshold with
// evidence that the timing samples differ, when its quality dropped beyond a threshold, or when it
// failed in NEW after running in BASE. The verdict comes with a Markdown summary for a CI comment.
#include <optional>
#include <string>
#include <vector>

#include "harness/record.h"

namespace ditbench {

struct CompareOptions {
  double max_slowdown = 0.05;  // fraction: NEW's e2e median may be this much above BASE's
  double alpha = 0.05;         // two-sided Mann–Whitney significance level
  // Below this many samples on either side the rank test cannot reach alpha (3 a side: its
  // smallest p is 0.1), so the verdict rests on the magnitude alone.
  int min_samples_for_test = 4;
  std::optional<double> max_psnr_drop;  // dB of psnr_mean
  std::optional<double> max_ssim_drop;  // of ssim_mean
  std::optional<double> min_psnr;       // dB: NEW's psnr_mean must stay at or above it
};

enum class TimingVerdict {
  kNotCompared,  // no timings on one side
  kSame,         // within threshold or no evidence of a difference
  kSlower,       // regression
  kFaster,       // faster beyond the threshold, with the same evidence a slowdown needs
};

struct ConfigComparison {
  std::string config_id;
  std::string base_status, new_status;
  std::optional<double> base_median_s, new_median_s;
  std::optional<double> change;  // new / base - 1
  int base_samples = 0, new_samples = 0;
  std::optional<double> p_value;  // absent when decided on magnitude alone
  bool magnitude_rule = false;    // too few samples for the rank test
  TimingVerdict timing = TimingVerdict::kNotCompared;
  std::optional<QualityRecord> base_quality, new_quality;
  bool regression = false;
  std::vector<std::string> reasons;  // why it regressed
  std::vector<std::string> notes;    // what is worth knowing but is no regression
};

struct CompareResult {
  bool regression = false;
  std::vector<ConfigComparison> configs;  // in BASE's order
  std::vector<std::string> only_in_base, only_in_new;
  std::vector<std::string> env_differences;  // "gpu: \"H100\" -> \"A100\"", ...
  std::string markdown;                      // the summary
};

// base_label/new_label name the two files in the summary. Records of one config that appear
// several times (a failed run redone with --resume) count by their last line. Throws InputError
// when a side holds no records.
CompareResult compare_results(const std::vector<ResultRecord>& base,
                              const std::vector<ResultRecord>& now, const CompareOptions& options,
                              const std::string& base_label = "BASE",
                              const std::string& new_label = "NEW");

}  // namespace ditbench
