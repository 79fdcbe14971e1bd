#include "reports/sweep.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <optional>
#include <sstream>

#include "harness/stats.h"
#include "reports/markdown.h"

namespace ditbench {
using nlohmann::json;

namespace {

constexpr const char* kMissing = "—";

std::string format(const char* pattern, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, pattern, value);
  return buf;
}

const json& axes_of(const ResultRecord& r) {
  static const json empty = json::object();
  if (r.config.is_object() && r.config.contains("axes") && r.config["axes"].is_object())
    return r.config["axes"];
  return empty;
}

std::string cache_of(const ResultRecord& r) {
  const json& axes = axes_of(r);
  if (axes.contains("cache") && axes["cache"].is_string()) return axes["cache"].get<std::string>();
  return r.cache ? r.cache->policy : std::string("none");
}

std::optional<double> threshold_of(const ResultRecord& r) {
  const json& axes = axes_of(r);
  if (axes.contains("cache_threshold") && axes["cache_threshold"].is_number())
    return axes["cache_threshold"].get<double>();
  if (r.cache) return r.cache->threshold;
  return std::nullopt;
}

// Configs that differ only in the cache and its threshold share a group: model, preset, weights
// and the config id without its cache and threshold parts.
std::string group_of(const ResultRecord& r) {
  std::string rest;
  std::stringstream parts(r.config_id);
  for (std::string part; std::getline(parts, part, '/');) {
    if (part.rfind("cache=", 0) == 0 || part.rfind("thr=", 0) == 0) continue;
    rest += (rest.empty() ? "" : "/") + part;
  }
  std::string title = "`" + r.config.value("model", std::string("?")) + "`";
  const std::string preset = r.config.value("preset", std::string());
  if (!preset.empty()) title += " preset `" + preset + "`";
  const std::string weights = r.config.value("weights", std::string());
  if (!weights.empty()) title += ", weights `" + weights + "`";
  return title + ", " + (rest.empty() ? std::string("(no other axes)") : "`" + rest + "`");
}

// PSNR for the Pareto front: identical frames are infinitely good.
std::optional<double> pareto_psnr(const ResultRecord& r) {
  if (!r.quality) return std::nullopt;
  if (r.quality->identical) return std::numeric_limits<double>::infinity();
  return r.quality->psnr_mean;
}

std::string psnr_text(const ResultRecord& r) {
  if (!r.quality) return kMissing;
  const QualityRecord& q = *r.quality;
  if (q.identical) return "identical";
  return (q.psnr_mean ? format("%.2f", *q.psnr_mean) : std::string(kMissing)) + " / " +
         (q.psnr_min ? format("%.2f", *q.psnr_min) : std::string(kMissing));
}

std::string ssim_text(const ResultRecord& r) {
  if (!r.quality) return kMissing;
  return format("%.4f", r.quality->ssim_mean) + " / " + format("%.4f", r.quality->ssim_min);
}

// Median [min, max] of the per-step signal: where thresholds would fire.
std::string signal_cell(const ResultRecord& r) {
  if (!r.cache) return kMissing;
  std::vector<double> signals;
  for (const auto& s : r.cache->per_step)
    if (s.signal) signals.push_back(*s.signal);
  if (signals.empty()) return kMissing;
  const auto [lo, hi] = std::minmax_element(signals.begin(), signals.end());
  return format("%.3g", median(signals)) + " [" + format("%.3g", *lo) + ", " + format("%.3g", *hi) +
         "]";
}

}  // namespace

std::string sweep_report(const std::vector<ResultRecord>& all_records) {
  const std::vector<ResultRecord> records = latest_per_config(all_records);
  bool any_threshold = false;
  for (const auto& r : records) any_threshold |= cache_of(r) != "none" && threshold_of(r);
  if (!any_threshold) return "";

  std::map<std::string, double> base_e2e;  // suite -> baseline e2e median
  for (const auto& r : records)
    if (r.baseline && r.status == RunStatus::kOk && r.timings && r.timings->e2e.median_s > 0 &&
        !base_e2e.count(r.suite))
      base_e2e[r.suite] = r.timings->e2e.median_s;
  auto speedup = [&](const ResultRecord& r) -> std::optional<double> {
    auto it = base_e2e.find(r.suite);
    if (r.status != RunStatus::kOk || !r.timings || it == base_e2e.end() ||
        r.timings->e2e.median_s <= 0)
      return std::nullopt;
    return it->second / r.timings->e2e.median_s;
  };

  // Groups in the order they first appear; inside, the uncached config and each policy's configs.
  std::vector<std::string> group_order;
  std::map<std::string, std::vector<const ResultRecord*>> groups;
  for (const auto& r : records) {
    const std::string g = group_of(r);
    if (!groups.count(g)) group_order.push_back(g);
    groups[g].push_back(&r);
  }

  std::ostringstream out;
  out << "\n## Cache threshold sweep\n\n"
         "Speedup is against the suite's baseline (e2e medians); PSNR and SSIM are mean / min over "
         "frames against the baseline's frames. ★ marks the Pareto front of speedup vs mean PSNR "
         "over the group's configs, the uncached one included. Signal: the policy's per-step "
         "signal (median [min, max]) that the threshold is compared against (TeaCache: before "
         "rescaling and accumulation).\n";
  for (const auto& g : group_order) {
    const auto& members = groups[g];
    bool group_has_threshold = false;
    for (const auto* r : members) group_has_threshold |= cache_of(*r) != "none" && threshold_of(*r);
    if (!group_has_threshold) continue;

    // The Pareto front over every finished config of the group with a speedup and a PSNR.
    std::vector<ParetoPoint> points;
    std::vector<const ResultRecord*> point_owner;
    for (const auto* r : members) {
      auto s = speedup(*r);
      auto p = pareto_psnr(*r);
      if (s && p) {
        points.push_back({*s, *p});
        point_owner.push_back(r);
      }
    }
    const std::vector<bool> front = pareto_front(points);
    auto on_front = [&](const ResultRecord* r) -> std::optional<bool> {
      for (size_t i = 0; i < point_owner.size(); ++i)
        if (point_owner[i] == r) return front[i];
      return std::nullopt;
    };

    out << "\n### " << g << "\n";
    for (const auto* r : members) {
      if (cache_of(*r) != "none") continue;
      out << "\nUncached `" << r->config_id << "`" << (r->baseline ? " (baseline)" : "") << ": ";
      if (r->status != RunStatus::kOk) {
        out << to_string(r->status) << ".\n";
        continue;
      }
      auto s = speedup(*r);
      out << "e2e " << format("%.3f", r->timings ? r->timings->e2e.median_s : 0.0) << " s, "
          << (s ? format("%.2fx", *s) : std::string(kMissing)) << ", PSNR " << psnr_text(*r)
          << ", SSIM " << ssim_text(*r) << (on_front(r).value_or(false) ? ", ★ Pareto front" : "")
          << ".\n";
    }

    std::vector<std::string> policies;
    for (const auto* r : members) {
      const std::string p = cache_of(*r);
      if (p != "none" && std::find(policies.begin(), policies.end(), p) == policies.end())
        policies.push_back(p);
    }
    for (const auto& policy : policies) {
      std::vector<const ResultRecord*> rows;
      for (const auto* r : members)
        if (cache_of(*r) == policy) rows.push_back(r);
      std::stable_sort(rows.begin(), rows.end(), [](const ResultRecord* a, const ResultRecord* b) {
        return threshold_of(*a).value_or(0) < threshold_of(*b).value_or(0);
      });
      out << "\n**" << policy << "**\n\n"
          << "| threshold | reused/total steps | e2e median (s) | speedup | PSNR mean/min (dB) | "
             "SSIM mean/min | signal median [min, max] | Pareto | note |\n"
          << "|--:|--:|--:|--:|--:|--:|--:|:-:|---|\n";
      for (const auto* r : rows) {
        const auto thr = threshold_of(*r);
        out << "| " << (thr ? format("%g", *thr) : std::string(kMissing)) << " | ";
        if (r->status != RunStatus::kOk) {
          out << kMissing << " | " << kMissing << " | " << kMissing << " | " << kMissing << " | "
              << kMissing << " | " << kMissing << " | " << kMissing << " | " << to_string(r->status)
              << ": " << r->reason << " |\n";
          continue;
        }
        std::string note;
        if (r->cache) {
          out << r->cache->reused_steps << "/"
              << (r->cache->reused_steps + r->cache->computed_steps);
          if (r->cache->reused_steps == 0)
            note = thr && *thr > 0 ? "**0 reused: threshold never fired, only adds cost**"
                                   : "reuse off (threshold 0)";
        } else {
          out << kMissing;
        }
        auto s = speedup(*r);
        auto f = on_front(r);
        out << " | " << (r->timings ? format("%.3f", r->timings->e2e.median_s) : kMissing) << " | "
            << (s ? format("%.2fx", *s) : std::string(kMissing)) << " | " << psnr_text(*r) << " | "
            << ssim_text(*r) << " | " << signal_cell(*r) << " | "
            << (f ? (*f ? "★" : "") : kMissing) << " | " << note << " |\n";
      }
    }
  }
  return out.str();
}

}  // namespace ditbench
