#include "reports/compare.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <sstream>

#include "models/common/error.h"
#include "reports/mann_whitney.h"

namespace ditbench {
using nlohmann::json;

namespace {

// Environment keys whose change makes timings incomparable. git and host are left out: a new
// commit is the point of the comparison, and CI runners of one pool differ in host name only.
const char* const kEnvKeys[] = {
    "gpu", "compute_capability", "driver", "cuda", "torch", "nccl", "device", "build"};

std::string format(const char* pattern, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, pattern, value);
  return buf;
}

// Last record per config id, in the order ids first appeared.
std::vector<ResultRecord> last_record_per_config(const std::vector<ResultRecord>& records) {
  std::vector<ResultRecord> out;
  std::map<std::string, size_t> position;
  for (const auto& r : records) {
    auto [it, inserted] = position.emplace(r.config_id, out.size());
    if (inserted) {
      out.push_back(r);
    } else {
      out[it->second] = r;
    }
  }
  return out;
}

// The environment of a file: that of its first record that ran (skips may carry it too).
json file_env(const std::vector<ResultRecord>& records) {
  for (const auto& r : records)
    if (r.status == RunStatus::kOk && !r.env.empty()) return r.env;
  for (const auto& r : records)
    if (!r.env.empty()) return r.env;
  return json::object();
}

// The power limits of a file's GPUs ("700 W" per GPU of its first record with readings), or
// empty: a card held to another limit runs the same kernels at other clocks.
std::string file_power_limits(const std::vector<ResultRecord>& records) {
  for (const auto& r : records) {
    if (r.status != RunStatus::kOk || !r.telemetry || r.telemetry->devices.empty()) continue;
    std::string limits;
    for (const auto& d : r.telemetry->devices) {
      limits += limits.empty() ? "" : ", ";
      limits += d.power_limit_w ? format("%.0f W", *d.power_limit_w) : "unknown";
    }
    return limits;
  }
  return "";
}

std::vector<std::string> env_differences(const json& base, const json& now) {
  std::vector<std::string> out;
  for (const char* key : kEnvKeys) {
    json a = base.value(key, json()), b = now.value(key, json());
    if (a != b) out.push_back(std::string(key) + ": " + a.dump() + " → " + b.dump());
  }
  return out;
}

std::string percent(double fraction) { return format("%+.1f%%", 100.0 * fraction); }

std::string psnr_text(const std::optional<QualityRecord>& q) {
  if (!q) return "—";
  if (q->identical || !q->psnr_mean) return "identical";
  return format("%.2f", *q->psnr_mean);
}

void compare_timings(const ResultRecord& base, const ResultRecord& now,
                     const CompareOptions& options, ConfigComparison& c) {
  if (!base.timings || !now.timings || base.timings->e2e.samples_s.empty() ||
      now.timings->e2e.samples_s.empty())
    return;
  const SampleStats &b = base.timings->e2e, &n = now.timings->e2e;
  c.base_median_s = b.median_s;
  c.new_median_s = n.median_s;
  c.base_samples = static_cast<int>(b.samples_s.size());
  c.new_samples = static_cast<int>(n.samples_s.size());
  if (b.median_s <= 0) return;
  c.change = n.median_s / b.median_s - 1.0;
  const bool beyond_slower = *c.change > options.max_slowdown;
  // A speedup of the same relative size: NEW at most base / (1 + threshold).
  const bool beyond_faster = n.median_s * (1.0 + options.max_slowdown) < b.median_s;
  c.timing = TimingVerdict::kSame;

  if (std::min(c.base_samples, c.new_samples) < options.min_samples_for_test) {
    // The rank test cannot reach alpha with so few samples; require that the samples do not
    // overlap at all, which is what the smallest p would have meant.
    c.magnitude_rule = true;
    const double base_min = *std::min_element(b.samples_s.begin(), b.samples_s.end());
    const double base_max = *std::max_element(b.samples_s.begin(), b.samples_s.end());
    const double new_min = *std::min_element(n.samples_s.begin(), n.samples_s.end());
    const double new_max = *std::max_element(n.samples_s.begin(), n.samples_s.end());
    if (beyond_slower && new_min > base_max) c.timing = TimingVerdict::kSlower;
    if (beyond_faster && new_max < base_min) c.timing = TimingVerdict::kFaster;
    if (beyond_slower && c.timing != TimingVerdict::kSlower)
      c.notes.push_back("median " + percent(*c.change) +
                        " but the samples overlap (too few samples for a rank test)");
  } else {
    c.p_value = mann_whitney_u(b.samples_s, n.samples_s).p;
    const bool differ = *c.p_value < options.alpha;
    if (differ && beyond_slower) c.timing = TimingVerdict::kSlower;
    if (differ && beyond_faster) c.timing = TimingVerdict::kFaster;
    if (beyond_slower && !differ)
      c.notes.push_back("median " + percent(*c.change) +
                        " but not significant (p = " + format("%.3g", *c.p_value) + ")");
  }
  if (c.timing == TimingVerdict::kSlower) {
    c.regression = true;
    c.reasons.push_back("e2e median " + percent(*c.change) + " (" + format("%.4g", b.median_s) +
                        " s → " + format("%.4g", n.median_s) + " s), above the " +
                        format("%.1f", 100.0 * options.max_slowdown) + "% threshold" +
                        (c.magnitude_rule ? ", every NEW sample above every BASE sample"
                                          : ", p = " + format("%.3g", *c.p_value)));
  }
}

void compare_quality(const CompareOptions& options, ConfigComparison& c) {
  const auto &bq = c.base_quality, &nq = c.new_quality;
  const bool thresholds = options.max_psnr_drop || options.max_ssim_drop || options.min_psnr;
  if (!nq) {
    if (bq && thresholds) c.notes.push_back("quality not measured in NEW");
    return;
  }
  const bool new_identical = nq->identical || !nq->psnr_mean;
  if (options.min_psnr && !new_identical && *nq->psnr_mean < *options.min_psnr) {
    c.regression = true;
    c.reasons.push_back("PSNR " + format("%.2f", *nq->psnr_mean) + " dB below the minimum " +
                        format("%.2f", *options.min_psnr) + " dB");
  }
  if (!bq) return;
  const bool base_identical = bq->identical || !bq->psnr_mean;
  if (options.max_psnr_drop) {
    // Identical frames have infinite PSNR: losing identity is an unbounded drop, gaining it none.
    double drop = 0;
    if (base_identical && !new_identical) drop = std::numeric_limits<double>::infinity();
    if (!base_identical && !new_identical) drop = *bq->psnr_mean - *nq->psnr_mean;
    if (drop > *options.max_psnr_drop) {
      c.regression = true;
      c.reasons.push_back(base_identical
                              ? "frames were identical to the reference in BASE, PSNR " +
                                    format("%.2f", *nq->psnr_mean) + " dB in NEW"
                              : "PSNR dropped " + format("%.2f", drop) + " dB (" +
                                    format("%.2f", *bq->psnr_mean) + " → " +
                                    format("%.2f", *nq->psnr_mean) + "), above the " +
                                    format("%.2f", *options.max_psnr_drop) + " dB threshold");
    }
  }
  if (options.max_ssim_drop) {
    const double drop = bq->ssim_mean - nq->ssim_mean;
    if (drop > *options.max_ssim_drop) {
      c.regression = true;
      c.reasons.push_back("SSIM dropped " + format("%.4f", drop) + " (" +
                          format("%.4f", bq->ssim_mean) + " → " + format("%.4f", nq->ssim_mean) +
                          "), above the " + format("%.4f", *options.max_ssim_drop) + " threshold");
    }
  }
}

ConfigComparison compare_config(const ResultRecord& base, const ResultRecord& now,
                                const CompareOptions& options) {
  ConfigComparison c;
  c.config_id = base.config_id;
  c.base_status = to_string(base.status);
  c.new_status = to_string(now.status);
  if (base.status != RunStatus::kOk) {
    c.notes.push_back("not compared: " + c.base_status + " in BASE" +
                      (base.reason.empty() ? "" : " (" + base.reason + ")"));
    return c;
  }
  if (now.status == RunStatus::kFailed) {
    c.regression = true;
    c.reasons.push_back("failed in NEW" + (now.reason.empty() ? "" : ": " + now.reason));
    return c;
  }
  if (now.status == RunStatus::kSkipped) {
    c.notes.push_back("skipped in NEW" + (now.reason.empty() ? "" : ": " + now.reason));
    return c;
  }
  compare_timings(base, now, options, c);
  // Clocks that moved by more than the slowdown threshold: the card's doing, not the code's.
  const auto base_clock = slowest_sm_clock_mhz(base.telemetry);
  const auto new_clock = slowest_sm_clock_mhz(now.telemetry);
  if (base_clock && new_clock && *base_clock > 0 &&
      std::abs(*new_clock / *base_clock - 1.0) > options.max_slowdown) {
    c.notes.push_back("GPU clock moved: median SM clock " + format("%.0f", *base_clock) + " → " +
                      format("%.0f", *new_clock) + " MHz (" +
                      percent(*new_clock / *base_clock - 1.0) +
                      "); part of a timing change may be the card's, not the code's");
  }
  c.base_quality = base.quality;
  c.new_quality = now.quality;
  compare_quality(options, c);
  return c;
}

std::string verdict_cell(const ConfigComparison& c) {
  if (c.regression) return "**REGRESSION**";
  if (c.base_status != "ok") return "not compared";
  if (c.new_status != "ok") return c.new_status;
  switch (c.timing) {
    case TimingVerdict::kFaster:
      return "faster";
    case TimingVerdict::kNotCompared:
      return "no timings";
    default:
      return "ok";
  }
}

std::string markdown_summary(const CompareResult& result, const CompareOptions& options,
                             const std::string& base_label, const std::string& new_label,
                             const json& base_env, const json& new_env) {
  std::ostringstream out;
  int regressions = 0;
  for (const auto& c : result.configs) regressions += c.regression;
  out << "## ditbench compare: "
      << (result.regression
              ? "❌ " + std::to_string(regressions) + " regression" + (regressions == 1 ? "" : "s")
              : std::string("✅ no regression"))
      << "\n\n";
  auto env_line = [](const json& env) {
    auto text = [&](const char* key) {
      const json v = env.value(key, json());
      return v.is_string() ? v.get<std::string>() : v.is_null() ? std::string("none") : v.dump();
    };
    return "GPU " + text("gpu") + ", driver " + text("driver") + ", torch " + text("torch") +
           ", git " + text("git");
  };
  out << "- BASE: `" << base_label << "` (" << env_line(base_env) << ")\n";
  out << "- NEW: `" << new_label << "` (" << env_line(new_env) << ")\n";
  out << "- Thresholds: e2e median slowdown > " << format("%.1f", 100.0 * options.max_slowdown)
      << "% with two-sided Mann–Whitney p < " << format("%.3g", options.alpha);
  if (options.max_psnr_drop)
    out << "; PSNR drop > " << format("%.2f", *options.max_psnr_drop) << " dB";
  if (options.max_ssim_drop) out << "; SSIM drop > " << format("%.4f", *options.max_ssim_drop);
  if (options.min_psnr) out << "; PSNR < " << format("%.2f", *options.min_psnr) << " dB";
  out << "\n\n";

  if (!result.env_differences.empty()) {
    out << "> [!WARNING]\n> **The environments differ: timings are not comparable.**\n";
    for (const auto& d : result.env_differences) out << "> - " << d << "\n";
    out << "\n";
  }

  out << "| config | BASE median (s) | NEW median (s) | change | p | samples | PSNR (dB) | "
         "SSIM | verdict |\n";
  out << "|---|--:|--:|--:|--:|--:|--:|--:|---|\n";
  bool any_magnitude = false;
  for (const auto& c : result.configs) {
    auto seconds = [](const std::optional<double>& v) {
      return v ? format("%.4f", *v) : std::string("—");
    };
    std::string p = c.p_value          ? format("%.3g", *c.p_value)
                    : c.magnitude_rule ? "n<" + std::to_string(options.min_samples_for_test) + "†"
                                       : "—";
    any_magnitude |= c.magnitude_rule;
    std::string ssim = "—";
    if (c.base_quality || c.new_quality) {
      ssim = (c.base_quality ? format("%.4f", c.base_quality->ssim_mean) : "—") + " → " +
             (c.new_quality ? format("%.4f", c.new_quality->ssim_mean) : "—");
    }
    std::string psnr = "—";
    if (c.base_quality || c.new_quality)
      psnr = psnr_text(c.base_quality) + " → " + psnr_text(c.new_quality);
    out << "| `" << c.config_id << "` | " << seconds(c.base_median_s) << " | "
        << seconds(c.new_median_s) << " | " << (c.change ? percent(*c.change) : "—") << " | " << p
        << " | "
        << (c.base_samples ? std::to_string(c.base_samples) + "/" + std::to_string(c.new_samples)
                           : std::string("—"))
        << " | " << psnr << " | " << ssim << " | " << verdict_cell(c) << " |\n";
  }
  if (any_magnitude) {
    out << "\n† Fewer than " << options.min_samples_for_test
        << " samples a side: the rank test cannot reach p < " << format("%.3g", options.alpha)
        << " (with 3 a side its smallest two-sided p is "
        << format("%.2g", mann_whitney_min_p(3, 3))
        << "), so these configs were decided on the magnitude alone: median slower by more than "
           "the threshold and every NEW sample above every BASE sample. Run more repeats for a "
           "statistical verdict.\n";
  }

  if (result.regression) {
    out << "\n### Regressions\n\n";
    for (const auto& c : result.configs)
      for (const auto& r : c.reasons) out << "- `" << c.config_id << "`: " << r << "\n";
  }
  bool any_notes = false;
  for (const auto& c : result.configs) any_notes |= !c.notes.empty();
  if (any_notes) {
    out << "\n### Notes\n\n";
    for (const auto& c : result.configs)
      for (const auto& n : c.notes) out << "- `" << c.config_id << "`: " << n << "\n";
  }
  if (!result.only_in_base.empty()) {
    out << "\n### Only in BASE (not run in NEW)\n\n";
    for (const auto& id : result.only_in_base) out << "- `" << id << "`\n";
  }
  if (!result.only_in_new.empty()) {
    out << "\n### Only in NEW (no baseline to compare with)\n\n";
    for (const auto& id : result.only_in_new) out << "- `" << id << "`\n";
  }
  return out.str();
}

}  // namespace

CompareResult compare_results(const std::vector<ResultRecord>& base_records,
                              const std::vector<ResultRecord>& new_records,
                              const CompareOptions& options, const std::string& base_label,
                              const std::string& new_label) {
  if (base_records.empty()) throw InputError(base_label + ": no result records");
  if (new_records.empty()) throw InputError(new_label + ": no result records");
  if (!(options.max_slowdown >= 0))
    throw InputError("--max-slowdown must be a non-negative percentage");
  const auto base = last_record_per_config(base_records);
  const auto now = last_record_per_config(new_records);
  std::map<std::string, const ResultRecord*> new_by_id;
  for (const auto& r : now) new_by_id[r.config_id] = &r;

  CompareResult result;
  std::map<std::string, bool> in_base;
  for (const auto& b : base) {
    in_base[b.config_id] = true;
    auto it = new_by_id.find(b.config_id);
    if (it == new_by_id.end()) {
      result.only_in_base.push_back(b.config_id);
      continue;
    }
    result.configs.push_back(compare_config(b, *it->second, options));
    result.regression |= result.configs.back().regression;
  }
  for (const auto& n : now)
    if (!in_base.count(n.config_id)) result.only_in_new.push_back(n.config_id);

  const json base_env = file_env(base), new_env = file_env(now);
  result.env_differences = env_differences(base_env, new_env);
  const std::string base_limits = file_power_limits(base), new_limits = file_power_limits(now);
  if (!base_limits.empty() && !new_limits.empty() && base_limits != new_limits)
    result.env_differences.push_back("GPU power limit: " + base_limits + " → " + new_limits);
  result.markdown = markdown_summary(result, options, base_label, new_label, base_env, new_env);
  return result;
}

}  // namespace ditbench
