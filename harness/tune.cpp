#include "harness/tune.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <ostream>
#include <stdexcept>

#include "harness/runner.h"
#include "harness/stats.h"
#include "models/common/error.h"
#include "optimizations/cache/cache_policy.h"

namespace ditbench {
namespace fs = std::filesystem;

namespace {

// Suites accept thresholds in [0, 10] (suite.cpp).
constexpr double kMaxThreshold = 10;
// Bisection stops after this many thresholds looked at, run or not.
constexpr int kMaxSearchSteps = 60;

std::string format(const char* pattern, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, pattern, value);
  return buf;
}

// Three significant digits: thresholds users can read and write back into a suite; two
// candidates that round alike end the bisection.
double round_threshold(double t) {
  if (t <= 0) return 0;
  const double scale = std::pow(10.0, 2 - std::floor(std::log10(t)));
  return std::min(kMaxThreshold, std::round(t * scale) / scale);
}

std::vector<bool> decisions_of(const CacheRecord& run) {
  std::vector<bool> reused;
  for (const auto& s : run.per_step) reused.push_back(s.reused);
  return reused;
}

double rescale(const std::array<double, 5>& c, double x) {
  double y = 0;
  for (double ci : c) y = y * x + ci;  // Horner, as TeaCache::rescale
  return y;
}

// The suite reduced to the tuning matrix: the uncached baseline and one cached config at
// `threshold`, every other axis fixed to the suite baseline's value.
Suite tuning_suite(const Suite& suite, const AxisValues& base, const std::string& policy,
                   double threshold) {
  Suite s = suite;
  s.name = suite.name + "-tune-" + policy;
  SuiteAxes axes;
  axes.attention = {base.attention};
  axes.cache = {"none", policy};
  axes.cache_threshold = {{policy, {threshold}}};
  axes.quant = {base.quant};
  axes.gpus = {base.gpus};
  axes.cp_mode = {base.cp_mode};
  if (!suite.axes.ulysses_degree.empty()) axes.ulysses_degree = {base.ulysses_degree};
  if (!suite.axes.ring_degree.empty()) axes.ring_degree = {base.ring_degree};
  axes.cfg_parallel = {base.cfg_parallel};
  axes.graphs = {base.graphs};
  s.axes = axes;
  s.baseline = {{"cache", "none"}};
  return s;
}

double speedup_of(const ResultRecord& baseline, const ResultRecord& r) {
  const double base = baseline.timings ? baseline.timings->e2e.median_s : 0;
  const double e2e = r.timings ? r.timings->e2e.median_s : 0;
  return base > 0 && e2e > 0 ? base / e2e : 0;
}

// "reused 3/10, e2e 0.950 s, 1.31x, PSNR 35.10 dB, SSIM 0.9812"
std::string describe_run(const ResultRecord& baseline, const ResultRecord& r) {
  const double speedup = speedup_of(baseline, r);
  const std::string psnr = r.quality->identical
                               ? std::string("identical")
                               : format("%.2f dB", r.quality->psnr_mean.value_or(0));
  return "reused " + std::to_string(r.cache->reused_steps) + "/" +
         std::to_string(r.cache->reused_steps + r.cache->computed_steps) + ", e2e " +
         format("%.3f s", r.timings->e2e.median_s) + ", " +
         (speedup > 0 ? format("%.2fx", speedup) : std::string("—")) + ", PSNR " + psnr +
         ", SSIM " + format("%.4f", r.quality->ssim_mean);
}

}  // namespace

std::vector<bool> replay_cache_decisions(const std::string& policy, const CacheRecord& run,
                                         double threshold, const SuiteCacheOptions& limits,
                                         const std::array<double, 5>& coefficients) {
  const int warmup = limits.warmup_steps.value_or(0);
  const int max_cached = limits.max_cached_steps.value_or(-1);
  const int max_consecutive = limits.max_consecutive_cached.value_or(-1);
  const int num_steps = static_cast<int>(run.per_step.size());
  int total_reused = 0, consecutive = 0;
  double accumulated = 0;
  std::vector<bool> decisions;
  for (const auto& s : run.per_step) {
    const bool caps_allow = (max_cached < 0 || total_reused < max_cached) &&
                            (max_consecutive < 0 || consecutive < max_consecutive);
    bool reused = false;
    if (policy == "fbcache") {
      // FirstBlockCache::forward; a step with a signal follows a computed step 0, so residuals
      // are stored.
      reused = threshold > 0 && s.step >= warmup && s.signal && *s.signal < threshold && caps_allow;
    } else if (policy == "teacache") {
      // TeaCache::forward
      if (s.step < std::max(1, warmup) || s.step == num_steps - 1 || !s.signal) {
        accumulated = 0;
      } else {
        accumulated += rescale(coefficients, *s.signal);
        reused = threshold > 0 && accumulated < threshold && caps_allow;
        if (!reused) accumulated = 0;
      }
    } else {
      throw InputError("tune: cache \"" + policy + "\" has no threshold to tune");
    }
    total_reused += reused;
    consecutive = reused ? consecutive + 1 : 0;
    decisions.push_back(reused);
  }
  return decisions;
}

TuneResult tune_cache_threshold(const Suite& suite, const TuneOptions& options, std::ostream& log) {
  if (options.min_psnr.has_value() == options.min_ssim.has_value())
    throw InputError("tune: give exactly one floor, --min-psnr or --min-ssim");
  if (options.min_psnr && !std::isfinite(*options.min_psnr))
    throw InputError("tune: --min-psnr must be a finite number of dB");
  if (options.min_ssim && !(*options.min_ssim > 0 && *options.min_ssim <= 1))
    throw InputError("tune: --min-ssim must be in (0, 1], got " + format("%g", *options.min_ssim));
  if (options.max_evaluations < 1) throw InputError("tune: --max-evals must be at least 1");
  if (options.start && !(*options.start > 0 && *options.start <= kMaxThreshold))
    throw InputError("tune: --start must be in (0, 10], got " + format("%g", *options.start));
  if (!suite.settings.decode)
    throw InputError(suite.file.string() +
                     ": /decode: tune scores frames against the baseline's, so it needs decode");

  TuneResult result;
  result.policy = options.cache;
  if (result.policy.empty()) {
    result.policy = "fbcache";
    for (const auto& c : suite.axes.cache)
      if (c == "fbcache" || c == "teacache") {
        result.policy = c;
        break;
      }
  }
  if (result.policy != "fbcache" && result.policy != "teacache")
    throw InputError("tune: --cache must be fbcache or teacache, got \"" + result.policy + "\"");

  const fs::path results_path = options.out_dir / "results.jsonl";
  if (fs::exists(results_path))
    throw InputError(results_path.string() +
                     ": already exists; tune writes a fresh results file (choose another --out)");

  AxisValues base_axes;
  for (const auto& c : expand_matrix(suite))
    if (c.baseline) base_axes = c.axes;

  const std::string floor_text = options.min_psnr
                                     ? "PSNR mean >= " + format("%g", *options.min_psnr) + " dB"
                                     : "SSIM mean >= " + format("%g", *options.min_ssim);
  auto meets_floor = [&](const ResultRecord& r) {
    if (!r.quality) return false;
    if (options.min_psnr)
      return r.quality->identical || r.quality->psnr_mean.value_or(-1e300) >= *options.min_psnr;
    return r.quality->ssim_mean >= *options.min_ssim;
  };

  // Runs the cached config at `threshold` (and the baseline on the first call) through run_suite;
  // later calls resume, so the baseline's frames come back from its artifact.
  auto run_threshold = [&](double threshold) -> ResultRecord {
    const Suite s = tuning_suite(suite, base_axes, result.policy, threshold);
    std::string cached_id, baseline_id;
    for (const auto& c : expand_matrix(s)) (c.baseline ? baseline_id : cached_id) = c.id;
    RunOptions run;
    run.out_dir = options.out_dir;
    run.resume = true;
    run.progress = false;
    const RunSummary summary = run_suite(s, run);
    if (summary.interrupted) throw std::runtime_error("tune: interrupted");
    std::optional<ResultRecord> cached;
    for (auto& r : read_results(results_path)) {
      if (r.config_id == baseline_id && r.baseline && result.baseline.config_id.empty())
        result.baseline = r;
      if (r.config_id == cached_id) cached = r;
    }
    for (const ResultRecord* r : {&result.baseline, cached ? &*cached : nullptr}) {
      // A skip is a config this build or device cannot serve; a failure is a failed run.
      if (r && r->status == RunStatus::kSkipped)
        throw Unsupported("tune: " + r->config_id + ": " + r->reason);
      if (r && r->status == RunStatus::kFailed)
        throw std::runtime_error("tune: " + r->config_id + " failed: " + r->reason);
    }
    if (!cached || !cached->cache || !cached->quality || !cached->timings)
      throw std::runtime_error("tune: " + cached_id + " left no record with quality and cache");
    return *cached;
  };

  std::array<double, 5> coefficients{};
  // The run giving `threshold`'s output: an earlier one whose decisions replay identically, or a
  // new one. Returns its index into result.records.
  // Records carry the first CFG branch's decisions only, so with two branches a replay cannot
  // vouch for the second one: every threshold runs.
  const ModelInfo* model = find_model(suite.settings.model);
  const bool replay_settles = !(model && model->has_cfg);
  auto evaluate = [&](double threshold) -> size_t {
    for (size_t i = 0; replay_settles && i < result.records.size(); ++i) {
      const CacheRecord& run = *result.records[i].cache;
      if (replay_cache_decisions(result.policy, run, threshold, suite.settings.cache_options,
                                 coefficients) == decisions_of(run)) {
        const bool same = run.threshold && *run.threshold == threshold;
        result.steps.push_back({threshold, i, false, meets_floor(result.records[i])});
        log << "  threshold " << format("%g", threshold) << ": "
            << (same ? "already run"
                     : "same decisions as threshold " + format("%g", run.threshold.value_or(0)) +
                           ", not run")
            << (result.steps.back().meets_floor ? ": meets the floor\n" : ": below the floor\n");
        return i;
      }
    }
    ResultRecord r = run_threshold(threshold);
    if (result.records.empty()) {
      log << "  baseline " << result.baseline.config_id << ": e2e "
          << format("%.3f s", result.baseline.timings->e2e.median_s) << "\n";
    }
    if (result.policy == "teacache")
      coefficients = parse_teacache_coefficients(r.cache->coefficients.value_or(""));
    result.records.push_back(r);
    result.steps.push_back({threshold, result.records.size() - 1, true, meets_floor(r)});
    log << "  threshold " << format("%g", threshold) << ": " << describe_run(result.baseline, r)
        << (result.steps.back().meets_floor ? ": meets the floor\n" : ": below the floor\n");
    return result.records.size() - 1;
  };

  log << "tune " << result.policy << " on " << suite.file.string() << ": fastest threshold with "
      << floor_text << " against the uncached baseline; records in " << results_path.string()
      << "\n";
  // Threshold 0: the baseline's output (never reuses) and its per-step signals.
  evaluate(0.0);
  if (!result.steps.back().meets_floor)
    throw std::runtime_error("tune: threshold 0 does not reproduce the baseline's frames");

  double start = 0;
  if (options.start) {
    start = *options.start;
  } else {
    auto listed = suite.axes.cache_threshold.find(result.policy);
    if (listed != suite.axes.cache_threshold.end())
      for (double t : listed->second)
        if (t > 0) {
          start = t;
          break;
        }
    if (start <= 0) {
      std::vector<double> values;
      for (const auto& s : result.records[0].cache->per_step)
        if (s.signal)
          values.push_back(result.policy == "teacache" ? rescale(coefficients, *s.signal)
                                                       : *s.signal);
      values.erase(std::remove_if(values.begin(), values.end(), [](double v) { return !(v > 0); }),
                   values.end());
      start = values.empty() ? default_cache_threshold(result.policy) : median(values);
    }
  }
  start = std::max(round_threshold(start), 1e-6);

  // Bracket [passing, failing] by doubling, then bisect on the threshold.
  double lo = 0;
  std::optional<double> hi;
  size_t lo_record = 0;
  int search_steps = 0;
  auto budget_left = [&] {
    const int candidate_runs = static_cast<int>(result.records.size()) - 1;  // beyond threshold 0
    return candidate_runs < options.max_evaluations && search_steps < kMaxSearchSteps;
  };
  auto look_at = [&](double t) {
    ++search_steps;
    const size_t i = evaluate(t);
    if (result.steps.back().meets_floor) {
      lo = t;
      lo_record = i;
    } else {
      hi = t;
    }
  };
  look_at(start);
  while (!hi && budget_left()) {
    // Stop once every step that may reuse does: larger thresholds cannot be faster.
    const CacheRecord& best = *result.records[lo_record].cache;
    if (replay_cache_decisions(result.policy, best, std::numeric_limits<double>::max(),
                               suite.settings.cache_options, coefficients) == decisions_of(best))
      break;
    const double next = round_threshold(2 * lo);
    if (next <= lo) break;
    look_at(next);
  }
  while (hi && budget_left()) {
    const double mid = round_threshold((lo + *hi) / 2);
    if (mid <= lo || mid >= *hi) break;
    look_at(mid);
  }

  for (size_t i = 0; i < result.records.size(); ++i) {
    const ResultRecord& r = result.records[i];
    if (!meets_floor(r) || r.cache->reused_steps == 0) continue;
    if (!result.chosen) {
      result.chosen = i;
      continue;
    }
    const ResultRecord& c = result.records[*result.chosen];
    if (r.cache->reused_steps > c.cache->reused_steps ||
        (r.cache->reused_steps == c.cache->reused_steps &&
         r.timings->e2e.median_s < c.timings->e2e.median_s))
      result.chosen = i;
  }
  return result;
}

std::string tune_summary(const TuneResult& result, const TuneOptions& options) {
  const std::string floor_text = options.min_psnr
                                     ? "PSNR mean >= " + format("%g", *options.min_psnr) + " dB"
                                     : "SSIM mean >= " + format("%g", *options.min_ssim);
  nlohmann::json j = {{"policy", result.policy},
                      {"floor", floor_text},
                      {"chosen_threshold", nullptr},
                      {"evaluated", result.records.size()},
                      {"results", (options.out_dir / "results.jsonl").string()}};
  std::string text;
  if (result.chosen) {
    const ResultRecord& r = result.records[*result.chosen];
    text = "chosen: threshold " + format("%g", r.cache->threshold.value_or(0)) + " (" +
           r.config_id + "): " + describe_run(result.baseline, r) + "\n";
    j["chosen_threshold"] = r.cache->threshold.value_or(0);
    j["config_id"] = r.config_id;
    j["reused_steps"] = r.cache->reused_steps;
    j["total_steps"] = r.cache->reused_steps + r.cache->computed_steps;
    j["e2e_median_s"] = r.timings->e2e.median_s;
    j["speedup"] = speedup_of(result.baseline, r);
    j["psnr_mean"] = r.quality->identical || !r.quality->psnr_mean
                         ? nlohmann::json(nullptr)
                         : nlohmann::json(*r.quality->psnr_mean);
    j["ssim_mean"] = r.quality->ssim_mean;
  } else {
    text = "none: no " + result.policy + " threshold that reuses a step keeps " + floor_text +
           "; only the uncached baseline does\n";
  }
  return text + j.dump() + "\n";
}

}  // namespace ditbench
