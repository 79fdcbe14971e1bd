#include "reports/markdown.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "harness/stats.h"
#include "reports/sweep.h"

namespace ditbench {
using nlohmann::json;

namespace {

constexpr double kBytesPerGiB = 1024.0 * 1024.0 * 1024.0;
constexpr const char* kMissing = "—";

std::string format(const char* pattern, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, pattern, value);
  return buf;
}

// A value in `pattern`, or a dash when absent.
std::string cell(const std::optional<double>& v, const char* pattern) {
  return v ? format(pattern, *v) : std::string(kMissing);
}

// The numbers of one table row; absent values print as a dash (Markdown) or nothing (CSV).
struct Row {
  std::string config_id, status, reason;
  bool baseline = false;
  std::optional<double> e2e_s, speedup, denoise_s, step_s, vae_s;
  std::optional<QualityRecord> quality;
  std::optional<int> reused, total;
  bool cache_never_reused = false;
  std::optional<double> peak_gib;
  std::optional<int64_t> gpus;
  // The transformer's arithmetic over its time: step_flops summed over the median transformer
  // stage (a generation's total), in TFLOP/s; per GPU for several ranks.
  std::optional<double> tflop_s;
  // The GPUs over the timed repeats: the lowest of their median SM clocks (the slowest GPU sets
  // the pace) and their mean power draw, averaged over the GPUs.
  std::optional<double> sm_clock_mhz, power_w;
};

std::optional<double> stage_median(const ResultRecord& r, const std::string& stage) {
  if (!r.timings) return std::nullopt;
  auto it = r.timings->stages.find(stage);
  if (it == r.timings->stages.end()) return std::nullopt;
  return it->second.median_s;
}

// The median of a [repeat][step] series over every step of every repeat.
std::optional<double> median_step(const std::vector<std::vector<double>>& series) {
  std::vector<double> steps;
  for (const auto& repeat : series) steps.insert(steps.end(), repeat.begin(), repeat.end());
  if (steps.empty()) return std::nullopt;
  return median(steps);
}

// The median communication time of one step (multi-rank runs).
std::optional<double> median_comm_step(const ResultRecord& r) {
  return r.timings ? median_step(r.timings->comm_steps_s) : std::nullopt;
}

// Each suite's baseline e2e median (the first finished baseline of the suite).
using BaselineTimes = std::map<std::string, double>;
BaselineTimes baseline_e2e(const std::vector<ResultRecord>& records) {
  BaselineTimes times;
  for (const auto& r : records)
    if (r.baseline && r.status == RunStatus::kOk && r.timings && r.timings->e2e.median_s > 0 &&
        !times.count(r.suite))
      times[r.suite] = r.timings->e2e.median_s;
  return times;
}

// Stages in pipeline order; stages this list does not know follow in name order.
std::vector<std::string> stage_columns(const std::vector<ResultRecord>& records) {
  static const std::vector<std::string> order = {"text_embed", "prepare_latents", "denoise",
                                                 "step",       "transformer",     "cache",
                                                 "scheduler",  "vae_decode",      "postprocess"};
  std::set<std::string> present;
  for (const auto& r : records)
    if (r.status == RunStatus::kOk && r.timings)
      for (const auto& [name, stats] : r.timings->stages) present.insert(name);
  std::vector<std::string> columns;
  for (const auto& name : order)
    if (present.erase(name)) columns.push_back(name);
  columns.insert(columns.end(), present.begin(), present.end());
  return columns;
}

// A generation's step_flops over its median transformer stage, in TFLOP/s (null without either).
std::optional<double> transformer_tflop_s(const ResultRecord& r) {
  const auto transformer_s = stage_median(r, "transformer");
  if (!r.timings || r.timings->step_flops.empty() || !transformer_s || *transformer_s <= 0)
    return std::nullopt;
  double flops = 0;
  for (double f : r.timings->step_flops) flops += f;
  return flops / *transformer_s / 1e12;
}

Row make_row(const ResultRecord& r, const BaselineTimes& baselines) {
  const auto base = baselines.find(r.suite);
  const std::optional<double> base_e2e =
      base == baselines.end() ? std::nullopt : std::optional<double>(base->second);
  Row row;
  row.config_id = r.config_id;
  row.status = to_string(r.status);
  row.reason = r.reason;
  row.baseline = r.baseline;
  if (r.timings && r.status == RunStatus::kOk) {
    row.e2e_s = r.timings->e2e.median_s;
    if (base_e2e && *row.e2e_s > 0) row.speedup = *base_e2e / *row.e2e_s;
    row.denoise_s = stage_median(r, "denoise");
    row.vae_s = stage_median(r, "vae_decode");
    row.step_s = median_step(r.timings->steps_s);
    row.tflop_s = transformer_tflop_s(r);
  }
  if (r.status == RunStatus::kOk) row.quality = r.quality;
  if (r.cache && r.status == RunStatus::kOk) {
    row.reused = r.cache->reused_steps;
    row.total = r.cache->reused_steps + r.cache->computed_steps;
    row.cache_never_reused = r.cache->policy != "none" && r.cache->reused_steps == 0;
  }
  if (r.peak_bytes) row.peak_gib = static_cast<double>(*r.peak_bytes) / kBytesPerGiB;
  if (r.telemetry && r.status == RunStatus::kOk && !r.telemetry->devices.empty()) {
    row.sm_clock_mhz = slowest_sm_clock_mhz(r.telemetry);
    double power = 0;
    for (const auto& d : r.telemetry->devices) power += d.power_w_mean;
    row.power_w = power / r.telemetry->devices.size();
  }
  const json& axes = r.config.is_object() && r.config.contains("axes") ? r.config["axes"] : json();
  if (axes.is_object() && axes.contains("gpus") && axes["gpus"].is_number_integer())
    row.gpus = axes["gpus"].get<int64_t>();
  return row;
}

bool any_random_weights(const std::vector<ResultRecord>& records) {
  for (const auto& r : records) {
    if (r.weights_note && r.weights_note->find("random") != std::string::npos) return true;
    if (r.config.is_object() && r.config.value("weights", std::string()) == "random") return true;
  }
  return false;
}

std::string env_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "none";
  return v.dump();
}

std::string csv_cell(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// Links to each config's video and frames (paths are relative to the results folder, where the
// report sits), the external quality reference when the suite named one, and why an artifact is
// missing.
std::string artifacts_section(const std::vector<ResultRecord>& records) {
  std::ostringstream out;
  std::set<std::string> references;
  for (const auto& r : records)
    if (r.quality && r.quality->reference != "baseline") references.insert(r.quality->reference);
  for (const auto& r : records) {
    if (r.status != RunStatus::kOk || !r.artifacts) continue;
    const ArtifactsRecord& a = *r.artifacts;
    if (!a.video && !a.png && !a.frames && !a.note) continue;
    out << "- `" << r.config_id << "`:";
    if (a.video) out << " [video](" << *a.video << ")";
    if (a.png) out << " [frames](" << *a.png << ")";
    if (a.frames) out << " [exact frames](" << *a.frames << ")";
    if (a.note) out << " (" << *a.note << ")";
    out << "\n";
  }
  if (out.tellp() == 0 && references.empty()) return "";
  std::string head = "\n## Frames and videos\n\n";
  for (const auto& ref : references) head += "Quality reference: `" + ref + "`.\n\n";
  return head + out.str();
}

}  // namespace

std::vector<ResultRecord> latest_per_config(const std::vector<ResultRecord>& records) {
  std::vector<ResultRecord> out;
  std::map<std::pair<std::string, std::string>, size_t> position;
  for (const auto& r : records) {
    auto [it, inserted] = position.emplace(std::make_pair(r.suite, r.config_id), out.size());
    if (inserted) {
      out.push_back(r);
    } else {
      out[it->second] = r;
    }
  }
  return out;
}

// Per config with a kernel profile: GPU time per kernel category for each stage, the union of its
// kernels (busy) and the launch gaps, then the longest kernels.
std::string kernel_profile_section(const std::vector<ResultRecord>& records) {
  std::ostringstream out;
  bool header = false;
  for (const auto& r : records) {
    if (r.status != RunStatus::kOk || !r.profile) continue;
    if (!header) {
      out << "\n## Kernel profile (s)\n\nOne extra generation per config under CUPTI (not one "
             "of the timed repeats; profiling slows launches). Per stage: GPU time per kernel "
             "category (kernels of nested stages included, repeated stages summed), `busy` = "
             "the union of its kernels' intervals, `gaps` = stage time - busy.\n";
      header = true;
    }
    const ProfileRecord& p = *r.profile;
    out << "\n### `" << r.config_id << "`\n\n";
    if (p.note) out << p.note.value() << "\n";
    if (p.stages.empty()) continue;
    std::vector<std::string> stages = {"e2e"};
    for (const auto& s : stage_columns({r})) stages.push_back(s);
    for (const auto& [name, entry] : p.stages)
      if (std::find(stages.begin(), stages.end(), name) == stages.end()) stages.push_back(name);
    out << "| stage | time |";
    for (const auto& c : profile_categories()) out << " " << c << " |";
    out << " busy | gaps | kernels |\n|---|--:|";
    for (size_t i = 0; i < profile_categories().size() + 3; ++i) out << "--:|";
    out << "\n";
    for (const auto& name : stages) {
      const auto it = p.stages.find(name);
      if (it == p.stages.end()) continue;
      const ProfileStageEntry& s = it->second;
      out << "| " << name << " | " << format("%.4f", s.wall_s) << " |";
      for (const auto& c : profile_categories()) {
        const auto cat = s.category_s.find(c);
        out << " " << (cat == s.category_s.end() ? "-" : format("%.4f", cat->second)) << " |";
      }
      out << " " << format("%.4f", s.busy_s) << " | " << format("%.4f", s.launch_gaps_s) << " | "
          << s.kernels << " |\n";
    }
    if (p.unattributed_s > 0)
      out << "\nKernels launched outside every stage: " << format("%.4f", p.unattributed_s)
          << " s.\n";
    if (!p.top_kernels.empty()) {
      out << "\n| longest kernels | category | total | count |\n|---|---|--:|--:|\n";
      for (const auto& k : p.top_kernels)
        out << "| `" << k.name << "` | " << k.category << " | " << format("%.4f", k.total_s)
            << " | " << k.count << " |\n";
    }
  }
  return out.str();
}

// Per config run on GPUs: their SM clock, power and temperature over the timed repeats (the
// record's telemetry), or why there are none.
std::string telemetry_section(const std::vector<ResultRecord>& records) {
  std::vector<const ResultRecord*> sampled;
  for (const auto& r : records)
    if (r.status == RunStatus::kOk && r.telemetry) sampled.push_back(&r);
  if (sampled.empty()) return "";
  std::ostringstream out;
  out << "\n## GPU clocks and power\n\nSampled through NVML every "
      << format("%g", sampled.front()->telemetry->period_s)
      << " s while the timed repeats ran. `power-capped` and `thermal`: the share of samples in "
         "which the driver held the clocks down for power or for temperature.\n\n"
         "| config | GPU | samples | SM clock median (min-max) (MHz) | max SM clock (MHz) | power "
         "mean / max (W) | power limit (W) | power-capped | thermal | max temp (C) |\n"
         "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n";
  for (const ResultRecord* r : sampled) {
    const std::string config = "| `" + r->config_id + "` | ";
    for (const auto& d : r->telemetry->devices) {
      out << config << d.device << " | " << d.samples << " | "
          << format("%.0f", d.sm_clock_mhz_median) << " (" << format("%.0f", d.sm_clock_mhz_min)
          << "-" << format("%.0f", d.sm_clock_mhz_max) << ") | " << cell(d.max_sm_clock_mhz, "%.0f")
          << " | " << format("%.0f", d.power_w_mean) << " / " << format("%.0f", d.power_w_max)
          << " | " << cell(d.power_limit_w, "%.0f") << " | "
          << format("%.0f%%", 100 * d.power_capped) << " | "
          << format("%.0f%%", 100 * d.thermal_slowdown) << " | "
          << format("%.0f", d.temperature_c_max) << " |\n";
    }
    if (r->telemetry->devices.empty())
      out << config << "- | 0 | " << r->telemetry->note.value_or("no readings")
          << " | | | | | | |\n";
  }
  return out.str();
}

std::string markdown_report(const std::vector<ResultRecord>& all_records) {
  const std::vector<ResultRecord> records = latest_per_config(all_records);
  const BaselineTimes base_e2e = baseline_e2e(records);
  std::ostringstream out;

  std::vector<std::string> suites;
  for (const auto& r : records)
    if (std::find(suites.begin(), suites.end(), r.suite) == suites.end()) suites.push_back(r.suite);
  std::string title;
  for (const auto& name : suites) title += (title.empty() ? "" : ", ") + name;
  out << "# ditbench report: " << (title.empty() ? std::string("(no results)") : title) << "\n\n";
  for (const auto& r : records) {
    if (r.env.empty()) continue;
    out << "Environment: GPU " << env_text(r.env.value("gpu", json())) << ", torch "
        << env_text(r.env.value("torch", json())) << ", CUDA "
        << env_text(r.env.value("cuda", json())) << ", git " << env_text(r.env.value("git", json()))
        << ", host " << env_text(r.env.value("host", json())) << ".\n\n";
    break;
  }
  for (const auto& r : records)
    if (r.baseline) out << "Baseline: `" << r.config_id << "`.\n\n";
  if (base_e2e.empty()) out << "No baseline config finished, so there are no speedups.\n\n";
  if (any_random_weights(records))
    out << "> **Note:** random weights: timings exact, quality meaningless for caches.\n\n";

  out << "| config | status | e2e median (s) | speedup | denoise (s) | step median (s) | "
         "VAE decode (s) | PSNR mean/min (dB) | SSIM mean/min | reused/total steps | "
         "peak mem (GiB) | GPUs |\n";
  out << "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n";
  for (const auto& r : records) {
    // Skipped configs have nothing to show here; they are listed with their reasons below.
    if (r.status == RunStatus::kSkipped) continue;
    Row row = make_row(r, base_e2e);
    std::string psnr = kMissing, ssim = kMissing;
    if (row.quality) {
      const QualityRecord& q = *row.quality;
      if (q.identical) {
        psnr = "identical";
      } else {
        psnr = (q.psnr_mean ? format("%.2f", *q.psnr_mean) : std::string("inf")) + " / " +
               (q.psnr_min ? format("%.2f", *q.psnr_min) : std::string("inf"));
      }
      ssim = format("%.4f", q.ssim_mean) + " / " + format("%.4f", q.ssim_min);
    }
    std::string steps = kMissing;
    if (row.total) {
      steps = std::to_string(*row.reused) + "/" + std::to_string(*row.total);
      if (row.cache_never_reused) steps += " **0 reused!**";
    }
    out << "| `" << row.config_id << "`" << (row.baseline ? " (baseline)" : "") << " | "
        << row.status << " | " << cell(row.e2e_s, "%.3f") << " | " << cell(row.speedup, "%.2fx")
        << " | " << cell(row.denoise_s, "%.3f") << " | " << cell(row.step_s, "%.4f") << " | "
        << cell(row.vae_s, "%.3f") << " | " << psnr << " | " << ssim << " | " << steps << " | "
        << cell(row.peak_gib, "%.2f") << " | "
        << (row.gpus ? std::to_string(*row.gpus) : std::string(kMissing)) << " |\n";
  }

  const std::vector<std::string> stages = stage_columns(records);
  bool any_comm_steps = false;
  for (const auto& r : records)
    any_comm_steps |= r.status == RunStatus::kOk && r.timings && !r.timings->comm_steps_s.empty();
  bool any_flops = false;
  for (const auto& r : records)
    any_flops |= r.status == RunStatus::kOk && r.timings && !r.timings->step_flops.empty();
  if (!stages.empty()) {
    // step, transformer and scheduler are a generation's totals over its steps (runner.cpp).
    out << "\n## Stage medians (s)\n\nMedian over the timed repeats; `step`, `transformer` and "
           "`scheduler` are totals over a generation's steps.";
    if (any_comm_steps)
      out << " `comm/step` is the median communication time of one step (every step of every "
             "repeat); `comm` is a generation's total.";
    out << "\n\n| config | e2e |";
    for (const auto& s : stages) out << " " << s << " |";
    if (any_comm_steps) out << " comm/step |";
    if (any_flops) out << " TFLOP/s |";
    out << "\n|---|--:|";
    for (size_t i = 0; i < stages.size() + (any_comm_steps ? 1 : 0) + (any_flops ? 1 : 0); ++i)
      out << "--:|";
    out << "\n";
    for (const auto& r : records) {
      if (r.status != RunStatus::kOk || !r.timings) continue;
      out << "| `" << r.config_id << "` | " << format("%.3f", r.timings->e2e.median_s) << " |";
      for (const auto& s : stages) out << " " << cell(stage_median(r, s), "%.3f") << " |";
      if (any_comm_steps) out << " " << cell(median_comm_step(r), "%.4f") << " |";
      if (any_flops) out << " " << cell(transformer_tflop_s(r), "%.3g") << " |";
      out << "\n";
    }
  }

  bool any_not_ok = false;
  for (const auto& r : records) any_not_ok |= r.status != RunStatus::kOk;
  if (any_not_ok) {
    out << "\n## Skipped and failed\n\n";
    for (const auto& r : records)
      if (r.status != RunStatus::kOk)
        out << "- `" << r.config_id << "`: " << to_string(r.status) << ": "
            << (r.reason.empty() ? std::string("(no reason recorded)") : r.reason) << "\n";
  }
  out << kernel_profile_section(records);
  out << telemetry_section(records);
  out << artifacts_section(records);
  out << sweep_report(records);
  return out.str();
}

std::string csv_report(const std::vector<ResultRecord>& all_records) {
  const std::vector<ResultRecord> records = latest_per_config(all_records);
  const BaselineTimes base_e2e = baseline_e2e(records);
  std::ostringstream out;
  out << "config_id,status,baseline,e2e_median_s,speedup,denoise_median_s,step_median_s,"
         "vae_decode_median_s,psnr_mean,psnr_min,ssim_mean,ssim_min,identical,reused_steps,"
         "total_steps,peak_gib,gpus,transformer_tflop_s,sm_clock_mhz,power_w,reason\n";
  auto num = [](const std::optional<double>& v) { return v ? format("%.9g", *v) : std::string(); };
  for (const auto& r : records) {
    Row row = make_row(r, base_e2e);
    std::optional<double> psnr_mean, psnr_min, ssim_mean, ssim_min;
    std::string identical;
    if (row.quality) {
      // Identical frames have no finite PSNR; the identical column says so.
      if (!row.quality->identical) {
        psnr_mean = row.quality->psnr_mean;
        psnr_min = row.quality->psnr_min;
      }
      ssim_mean = row.quality->ssim_mean;
      ssim_min = row.quality->ssim_min;
      identical = row.quality->identical ? "true" : "false";
    }
    out << csv_cell(row.config_id) << "," << row.status << "," << (row.baseline ? "true" : "false")
        << "," << num(row.e2e_s) << "," << num(row.speedup) << "," << num(row.denoise_s) << ","
        << num(row.step_s) << "," << num(row.vae_s) << "," << num(psnr_mean) << "," << num(psnr_min)
        << "," << num(ssim_mean) << "," << num(ssim_min) << "," << identical << ","
        << (row.reused ? std::to_string(*row.reused) : "") << ","
        << (row.total ? std::to_string(*row.total) : "") << "," << num(row.peak_gib) << ","
        << (row.gpus ? std::to_string(*row.gpus) : "") << "," << num(row.tflop_s) << ","
        << num(row.sm_clock_mhz) << "," << num(row.power_w) << "," << csv_cell(row.reason) << "\n";
  }
  return out.str();
}

std::vector<bool> pareto_front(const std::vector<ParetoPoint>& points) {
  std::vector<bool> on_front(points.size(), true);
  for (size_t i = 0; i < points.size(); ++i)
    for (size_t j = 0; j < points.size() && on_front[i]; ++j) {
      const ParetoPoint &a = points[i], &b = points[j];
      bool dominates =
          b.speedup >= a.speedup && b.psnr >= a.psnr && (b.speedup > a.speedup || b.psnr > a.psnr);
      if (dominates) on_front[i] = false;
    }
  return on_front;
}

}  // namespace ditbench
