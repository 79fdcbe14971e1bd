#include "reports/html.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "reports/markdown.h"

namespace ditbench {
using nlohmann::json;

namespace {

// Top-level stages in pipeline order; other recorded stages follow in name order. "step" and its
// parts are inside "denoise" and "e2e" spans them all, so neither is stacked.
const char* const kStageOrder[] = {"text_embed", "prepare_latents", "denoise", "vae_decode",
                                   "postprocess"};
const std::set<std::string> kNotStacked = {"e2e", "step", "transformer", "cache", "scheduler"};
const char* const kPalette[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
                                "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
constexpr int kPaletteSize = sizeof(kPalette) / sizeof(kPalette[0]);

std::string fmt(const char* pattern, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, pattern, value);
  return buf;
}

// Coordinates with two decimals: enough for a screen, short in the file.
std::string num(double v) { return fmt("%.2f", v); }

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

bool timed(const ResultRecord& r) {
  return r.status == RunStatus::kOk && r.timings && r.timings->e2e.median_s > 0;
}

// Each suite's baseline e2e median: records of several suites may share one report.
using BaselineTimes = std::map<std::string, double>;
BaselineTimes baseline_e2e(const std::vector<ResultRecord>& records) {
  BaselineTimes out;
  for (const auto& r : records)
    if (r.baseline && timed(r)) out.emplace(r.suite, r.timings->e2e.median_s);
  return out;
}

std::optional<double> speedup_of(const ResultRecord& r, const BaselineTimes& baselines) {
  auto it = baselines.find(r.suite);
  if (!timed(r) || it == baselines.end()) return std::nullopt;
  return it->second / r.timings->e2e.median_s;
}

const json& axes_of(const ResultRecord& r) {
  static const json empty = json::object();
  if (r.config.is_object() && r.config.contains("axes") && r.config["axes"].is_object())
    return r.config["axes"];
  return empty;
}

int gpus_of(const ResultRecord& r) {
  const json& axes = axes_of(r);
  if (axes.contains("gpus") && axes["gpus"].is_number_integer()) return axes["gpus"].get<int>();
  return 1;
}

// Linear map of [lo, hi] onto [out_lo, out_hi]; a degenerate range maps to the middle.
struct Scale {
  double lo, hi, out_lo, out_hi;
  double operator()(double v) const {
    if (hi <= lo) return 0.5 * (out_lo + out_hi);
    return out_lo + (v - lo) / (hi - lo) * (out_hi - out_lo);
  }
};

// Round tick values for an axis over [lo, hi].
std::vector<double> ticks(double lo, double hi, int wanted = 5) {
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / wanted;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = magnitude;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * magnitude) {
      step = m * magnitude;
      break;
    }
  std::vector<double> out;
  for (double t = std::ceil(lo / step) * step; t <= hi + 1e-9 * step; t += step) out.push_back(t);
  return out;
}

std::string tick_label(double v) {
  return std::fabs(v - std::round(v)) < 1e-9 ? fmt("%.0f", v) : fmt("%.3g", v);
}

// Axes, ticks and labels of an x/y chart.
void draw_axes(std::ostream& out, const Scale& x, const Scale& y, const std::string& x_label,
               const std::string& y_label) {
  out << "<g class=\"axes\">";
  out << "<line x1=\"" << num(x.out_lo) << "\" y1=\"" << num(y.out_lo) << "\" x2=\""
      << num(x.out_hi) << "\" y2=\"" << num(y.out_lo) << "\"/>";
  out << "<line x1=\"" << num(x.out_lo) << "\" y1=\"" << num(y.out_lo) << "\" x2=\""
      << num(x.out_lo) << "\" y2=\"" << num(y.out_hi) << "\"/>";
  for (double t : ticks(x.lo, x.hi))
    out << "<text x=\"" << num(x(t)) << "\" y=\"" << num(y.out_lo + 16)
        << "\" text-anchor=\"middle\">" << tick_label(t) << "</text>";
  for (double t : ticks(y.lo, y.hi))
    out << "<text x=\"" << num(x.out_lo - 6) << "\" y=\"" << num(y(t) + 4)
        << "\" text-anchor=\"end\">" << tick_label(t) << "</text>";
  out << "<text x=\"" << num(0.5 * (x.out_lo + x.out_hi)) << "\" y=\"" << num(y.out_lo + 34)
      << "\" text-anchor=\"middle\">" << escape(x_label) << "</text>";
  out << "<text transform=\"translate(14," << num(0.5 * (y.out_lo + y.out_hi))
      << ") rotate(-90)\" text-anchor=\"middle\">" << escape(y_label) << "</text>";
  out << "</g>";
}

// Stacked horizontal bars: one row per timed config, one segment per top-level stage median.
void stage_bars(std::ostream& out, const std::vector<ResultRecord>& records) {
  std::vector<const ResultRecord*> rows;
  std::vector<std::string> stages(std::begin(kStageOrder), std::end(kStageOrder));
  std::set<std::string> seen;
  for (const auto& r : records) {
    if (!timed(r)) continue;
    rows.push_back(&r);
    for (const auto& [name, stats] : r.timings->stages) seen.insert(name);
  }
  out << "<h2>Stage times (median seconds)</h2>\n";
  if (rows.empty()) {
    out << "<p>No config has timings.</p>\n";
    return;
  }
  for (const auto& name : seen)
    if (!kNotStacked.count(name) && std::find(stages.begin(), stages.end(), name) == stages.end())
      stages.push_back(name);
  stages.erase(std::remove_if(stages.begin(), stages.end(),
                              [&](const std::string& s) { return !seen.count(s); }),
               stages.end());

  double longest = 0;
  for (const auto* r : rows) {
    double total = 0;
    for (const auto& s : stages)
      if (auto it = r->timings->stages.find(s); it != r->timings->stages.end())
        total += it->second.median_s;
    longest = std::max({longest, total, r->timings->e2e.median_s});
  }
  const double label_w = 330, plot_w = 520, row_h = 22, top = 30;
  const double height = top + row_h * rows.size() + 40;
  const Scale x{0, longest, label_w, label_w + plot_w};
  out << "<svg class=\"chart stages\" xmlns=\"http://www.w3.org/2000/svg\" width=\""
      << num(label_w + plot_w + 30) << "\" height=\"" << num(height) << "\" viewBox=\"0 0 "
      << num(label_w + plot_w + 30) << " " << num(height) << "\">";
  // Legend across the top.
  double legend_x = label_w;
  for (size_t s = 0; s < stages.size(); ++s) {
    out << "<rect x=\"" << num(legend_x) << "\" y=\"6\" width=\"10\" height=\"10\" fill=\""
        << kPalette[s % kPaletteSize] << "\"/><text x=\"" << num(legend_x + 14) << "\" y=\"15\">"
        << escape(stages[s]) << "</text>";
    legend_x += 24 + 7.0 * stages[s].size();
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    const ResultRecord& r = *rows[i];
    const double y = top + row_h * i;
    out << "<g class=\"bar\" data-config=\"" << escape(r.config_id) << "\">";
    out << "<text x=\"" << num(label_w - 6) << "\" y=\"" << num(y + 14) << "\" text-anchor=\"end\">"
        << escape(r.config_id) << "</text>";
    double at = 0;
    for (size_t s = 0; s < stages.size(); ++s) {
      auto it = r.timings->stages.find(stages[s]);
      if (it == r.timings->stages.end()) continue;
      const double seconds = it->second.median_s;
      out << "<rect class=\"segment\" x=\"" << num(x(at)) << "\" y=\"" << num(y + 3)
          << "\" width=\"" << num(x(at + seconds) - x(at)) << "\" height=\"" << num(row_h - 6)
          << "\" fill=\"" << kPalette[s % kPaletteSize] << "\"><title>" << escape(stages[s]) << ": "
          << fmt("%.4g", seconds) << " s</title></rect>";
      at += seconds;
    }
    out << "<text x=\"" << num(x(std::max(at, r.timings->e2e.median_s)) + 4) << "\" y=\""
        << num(y + 14) << "\">" << fmt("%.3g", r.timings->e2e.median_s) << " s</text>";
    out << "</g>";
  }
  const double axis_y = top + row_h * rows.size() + 4;
  out << "<line class=\"axes\" x1=\"" << num(label_w) << "\" y1=\"" << num(axis_y) << "\" x2=\""
      << num(label_w + plot_w) << "\" y2=\"" << num(axis_y) << "\"/>";
  for (double t : ticks(0, longest))
    out << "<text x=\"" << num(x(t)) << "\" y=\"" << num(axis_y + 16)
        << "\" text-anchor=\"middle\">" << tick_label(t) << "</text>";
  out << "</svg>\n";
}

// Speedup against PSNR mean, the Pareto front joined by a line. Identical frames (infinite PSNR)
// sit on a separate "identical" row above the finite ones.
void speedup_psnr_scatter(std::ostream& out, const std::vector<ResultRecord>& records,
                          const BaselineTimes& baselines) {
  struct Point {
    const ResultRecord* record;
    double speedup;
    std::optional<double> psnr;  // none when identical
  };
  std::vector<Point> points;
  for (const auto& r : records)
    if (auto speedup = speedup_of(r, baselines); speedup && r.quality) {
      const bool identical = r.quality->identical || !r.quality->psnr_mean;
      points.push_back({&r, *speedup, identical ? std::nullopt : r.quality->psnr_mean});
    }
  out << "<h2>Speedup vs PSNR</h2>\n";
  if (points.empty()) {
    out << "<p>No config has both a speedup over the baseline and a quality score.</p>\n";
    return;
  }
  double s_lo = 1, s_hi = 1, p_lo = 1e300, p_hi = -1e300;
  bool any_identical = false;
  for (const auto& p : points) {
    s_lo = std::min(s_lo, p.speedup);
    s_hi = std::max(s_hi, p.speedup);
    if (p.psnr) {
      p_lo = std::min(p_lo, *p.psnr);
      p_hi = std::max(p_hi, *p.psnr);
    } else {
      any_identical = true;
    }
  }
  if (p_lo > p_hi) p_lo = p_hi = 40;  // only identical points
  p_lo = std::floor(p_lo - 1);
  p_hi = std::ceil(p_hi + 1);
  const double identical_psnr = p_hi + 0.15 * (p_hi - p_lo);
  const double left = 60, width = 520, top = 20, height = 300;
  const Scale x{std::floor(s_lo * 10 - 1) / 10, std::ceil(s_hi * 10 + 1) / 10, left, left + width};
  const Scale y{p_lo, any_identical ? identical_psnr : p_hi, top + height, top};

  std::vector<ParetoPoint> pareto;
  for (const auto& p : points)
    pareto.push_back({p.speedup, p.psnr.value_or(std::numeric_limits<double>::infinity())});
  const std::vector<bool> front = pareto_front(pareto);

  out << "<svg class=\"chart scatter\" xmlns=\"http://www.w3.org/2000/svg\" width=\""
      << num(left + width + 40) << "\" height=\"" << num(top + height + 50) << "\" viewBox=\"0 0 "
      << num(left + width + 40) << " " << num(top + height + 50) << "\">";
  draw_axes(out, x, y, "speedup over the baseline (x)", "PSNR mean (dB)");
  if (any_identical)
    out << "<text x=\"" << num(left + 4) << "\" y=\"" << num(y(identical_psnr) - 8)
        << "\">identical</text><line class=\"guide\" x1=\"" << num(left) << "\" y1=\""
        << num(y(identical_psnr)) << "\" x2=\"" << num(left + width) << "\" y2=\""
        << num(y(identical_psnr)) << "\"/>";
  // The front from the slowest to the fastest point.
  std::vector<size_t> on_front;
  for (size_t i = 0; i < points.size(); ++i)
    if (front[i]) on_front.push_back(i);
  std::sort(on_front.begin(), on_front.end(),
            [&](size_t a, size_t b) { return points[a].speedup < points[b].speedup; });
  out << "<polyline class=\"front-line\" points=\"";
  for (size_t i : on_front)
    out << num(x(points[i].speedup)) << "," << num(y(points[i].psnr.value_or(identical_psnr)))
        << " ";
  out << "\"/>";
  for (size_t i = 0; i < points.size(); ++i) {
    const Point& p = points[i];
    out << "<circle class=\"point" << (front[i] ? " front" : "") << "\" cx=\"" << num(x(p.speedup))
        << "\" cy=\"" << num(y(p.psnr.value_or(identical_psnr))) << "\" r=\"5\"><title>"
        << escape(p.record->config_id) << ": " << fmt("%.2f", p.speedup) << "x, "
        << (p.psnr ? fmt("%.2f", *p.psnr) + " dB" : std::string("identical"))
        << (front[i] ? " (Pareto front)" : "") << "</title></circle>";
  }
  out << "</svg>\n";
}

// Speedup against GPU count for configs alike in every axis but the parallel ones, relative to
// the single-GPU config of the same kind, with the ideal (linear) line.
void scaling_chart(std::ostream& out, const std::vector<ResultRecord>& records) {
  std::set<int> gpu_counts;
  for (const auto& r : records)
    if (timed(r)) gpu_counts.insert(gpus_of(r));
  if (gpu_counts.size() < 2) return;  // nothing scales: the chart is left out
  out << "<h2>Scaling with GPUs</h2>\n";
  static const std::set<std::string> kParallelAxes = {"gpus", "cp_mode", "ulysses_degree",
                                                      "ring_degree", "cfg_parallel"};
  auto kind_of = [](const ResultRecord& r) {
    json kind = {{"suite", r.suite}};  // axes of one suite share model and size
    for (const auto& [k, v] : axes_of(r).items())
      if (!kParallelAxes.count(k)) kind[k] = v;
    return kind.dump();
  };
  std::map<std::string, double> single_gpu_e2e;  // kind -> fastest 1-GPU median
  for (const auto& r : records)
    if (timed(r) && gpus_of(r) == 1) {
      auto [it, inserted] = single_gpu_e2e.emplace(kind_of(r), r.timings->e2e.median_s);
      if (!inserted) it->second = std::min(it->second, r.timings->e2e.median_s);
    }
  struct Point {
    const ResultRecord* record;
    int gpus;
    double speedup;
  };
  std::map<std::string, std::vector<Point>> series;  // cp mode -> points
  double max_speedup = 1;
  for (const auto& r : records) {
    if (!timed(r) || gpus_of(r) == 1) continue;
    auto base = single_gpu_e2e.find(kind_of(r));
    if (base == single_gpu_e2e.end()) continue;
    const json& axes = axes_of(r);
    std::string mode = axes.contains("cp_mode") && axes["cp_mode"].is_string()
                           ? axes["cp_mode"].get<std::string>()
                           : std::string("none");
    if (axes.value("cfg_parallel", false) == true) mode += "+cfg";
    Point p{&r, gpus_of(r), base->second / r.timings->e2e.median_s};
    max_speedup = std::max(max_speedup, p.speedup);
    series[mode].push_back(p);
  }
  if (series.empty()) {
    out << "<p>No multi-GPU config has a single-GPU config of the same kind to scale from.</p>\n";
    return;
  }
  const int max_gpus = *gpu_counts.rbegin();
  const double left = 60, width = 420, top = 20, height = 260;
  const Scale x{1, static_cast<double>(max_gpus), left, left + width};
  const Scale y{0, std::max<double>(max_gpus, std::ceil(max_speedup)), top + height, top};
  out << "<svg class=\"chart scaling\" xmlns=\"http://www.w3.org/2000/svg\" width=\""
      << num(left + width + 150) << "\" height=\"" << num(top + height + 50) << "\" viewBox=\"0 0 "
      << num(left + width + 150) << " " << num(top + height + 50) << "\">";
  draw_axes(out, x, y, "GPUs", "speedup over 1 GPU (x)");
  out << "<line class=\"ideal\" x1=\"" << num(x(1)) << "\" y1=\"" << num(y(1)) << "\" x2=\""
      << num(x(max_gpus)) << "\" y2=\"" << num(y(max_gpus)) << "\"><title>ideal (linear)</title>"
      << "</line><text x=\"" << num(x(max_gpus) + 4) << "\" y=\"" << num(y(max_gpus) + 4)
      << "\">ideal</text>";
  size_t color = 0;
  double legend_y = top + 36;  // below the "ideal" label
  for (auto& [mode, points] : series) {
    std::sort(points.begin(), points.end(),
              [](const Point& a, const Point& b) { return a.gpus < b.gpus; });
    const char* fill = kPalette[color++ % kPaletteSize];
    out << "<polyline class=\"series\" stroke=\"" << fill << "\" points=\"" << num(x(1)) << ","
        << num(y(1));
    for (const auto& p : points) out << " " << num(x(p.gpus)) << "," << num(y(p.speedup));
    out << "\"/>";
    for (const auto& p : points)
      out << "<circle class=\"scaling-point\" cx=\"" << num(x(p.gpus)) << "\" cy=\""
          << num(y(p.speedup)) << "\" r=\"5\" fill=\"" << fill << "\"><title>"
          << escape(p.record->config_id) << ": " << p.gpus << " GPUs, " << fmt("%.2f", p.speedup)
          << "x</title></circle>";
    out << "<rect x=\"" << num(left + width + 30) << "\" y=\"" << num(legend_y - 9)
        << "\" width=\"10\" height=\"10\" fill=\"" << fill << "\"/><text x=\""
        << num(left + width + 44) << "\" y=\"" << num(legend_y) << "\">" << escape(mode)
        << "</text>";
    legend_y += 18;
  }
  out << "</svg>\n";
}

// One strip per cache config: a cell per step, filled when the step reused the cache.
void cache_strips(std::ostream& out, const std::vector<ResultRecord>& records) {
  std::vector<const ResultRecord*> rows;
  size_t max_steps = 0;
  for (const auto& r : records)
    if (r.status == RunStatus::kOk && r.cache && r.cache->policy != "none" &&
        !r.cache->per_step.empty()) {
      rows.push_back(&r);
      max_steps = std::max(max_steps, r.cache->per_step.size());
    }
  out << "<h2>Cache decisions per step</h2>\n";
  if (rows.empty()) {
    out << "<p>No cache config recorded per-step decisions.</p>\n";
    return;
  }
  const double label_w = 330, row_h = 20, top = 24;
  const double cell_w = std::max(3.0, std::min(14.0, 520.0 / max_steps));
  const double width = label_w + cell_w * max_steps + 120, height = top + row_h * rows.size() + 10;
  out << "<svg class=\"chart cache\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" << num(width)
      << "\" height=\"" << num(height) << "\" viewBox=\"0 0 " << num(width) << " " << num(height)
      << "\">";
  out << "<rect class=\"step reused legend\" x=\"" << num(label_w)
      << "\" y=\"4\" width=\"10\" "
         "height=\"10\"/><text x=\""
      << num(label_w + 14) << "\" y=\"13\">reused</text><rect class=\"step computed legend\" x=\""
      << num(label_w + 80) << "\" y=\"4\" width=\"10\" height=\"10\"/><text x=\""
      << num(label_w + 94) << "\" y=\"13\">computed</text>";
  for (size_t i = 0; i < rows.size(); ++i) {
    const CacheRecord& cache = *rows[i]->cache;
    const double y = top + row_h * i;
    out << "<g class=\"strip\" data-config=\"" << escape(rows[i]->config_id) << "\">";
    out << "<text x=\"" << num(label_w - 6) << "\" y=\"" << num(y + 13) << "\" text-anchor=\"end\">"
        << escape(rows[i]->config_id) << "</text>";
    for (size_t s = 0; s < cache.per_step.size(); ++s) {
      const CacheStepEntry& e = cache.per_step[s];
      out << "<rect class=\"step " << (e.reused ? "reused" : "computed") << "\" x=\""
          << num(label_w + cell_w * s) << "\" y=\"" << num(y + 2) << "\" width=\""
          << num(cell_w - 1) << "\" height=\"" << num(row_h - 4) << "\"><title>step " << e.step
          << ": " << (e.reused ? "reused" : "computed")
          << (e.signal ? ", signal " + fmt("%.4g", *e.signal) : std::string())
          << (e.accumulated ? ", accumulated " + fmt("%.4g", *e.accumulated) : std::string())
          << "</title></rect>";
    }
    out << "<text x=\"" << num(label_w + cell_w * max_steps + 8) << "\" y=\"" << num(y + 13)
        << "\">" << cache.reused_steps << "/" << cache.reused_steps + cache.computed_steps
        << " reused</text>";
    out << "</g>";
  }
  out << "</svg>\n";
}

void summary_table(std::ostream& out, const std::vector<ResultRecord>& records,
                   const BaselineTimes& baselines) {
  out << "<h2>Configs</h2>\n<table>\n<tr><th>config</th><th>status</th><th>e2e median (s)</th>"
         "<th>speedup</th><th>PSNR mean (dB)</th><th>SSIM mean</th><th>note</th></tr>\n";
  for (const auto& r : records) {
    std::string e2e = "—", speedup = "—", psnr = "—", ssim = "—";
    if (timed(r)) {
      e2e = fmt("%.4f", r.timings->e2e.median_s);
      if (auto s = speedup_of(r, baselines)) speedup = fmt("%.2fx", *s);
    }
    if (r.status == RunStatus::kOk && r.quality) {
      psnr = r.quality->identical || !r.quality->psnr_mean ? "identical"
                                                           : fmt("%.2f", *r.quality->psnr_mean);
      ssim = fmt("%.4f", r.quality->ssim_mean);
    }
    out << "<tr class=\"" << to_string(r.status) << "\"><td><code>" << escape(r.config_id)
        << "</code>" << (r.baseline ? " (baseline)" : "") << "</td><td>" << to_string(r.status)
        << "</td><td>" << e2e << "</td><td>" << speedup << "</td><td>" << psnr << "</td><td>"
        << ssim << "</td><td>" << escape(r.reason) << "</td></tr>\n";
  }
  out << "</table>\n";
}

const char* const kStyle =
    "body{font-family:system-ui,sans-serif;margin:24px;color:#222}"
    "h1{font-size:22px}h2{font-size:17px;margin-top:28px}"
    "svg{font-size:11px;display:block;background:#fff}"
    ".axes line,line.axes{stroke:#444}.guide{stroke:#bbb;stroke-dasharray:4 3}"
    ".point{fill:#9aa;stroke:#fff}.point.front{fill:#e15759}"
    ".front-line{fill:none;stroke:#e15759;stroke-width:1.5}"
    ".ideal{stroke:#888;stroke-dasharray:6 4}.series{fill:none;stroke-width:1.5}"
    ".step.reused{fill:#59a14f}.step.computed{fill:#d9d9d9}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px}"
    "tr.failed td{background:#fde8e8}tr.skipped td{color:#888}";

}  // namespace

std::string html_report(const std::vector<ResultRecord>& all_records) {
  const std::vector<ResultRecord> records = latest_per_config(all_records);
  const BaselineTimes baselines = baseline_e2e(records);
  const std::string suite = records.empty() ? std::string("(no results)") : records.front().suite;
  std::ostringstream out;
  out << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>ditbench "
         "report: "
      << escape(suite) << "</title>\n<style>" << kStyle << "</style>\n</head>\n<body>\n";
  out << "<h1>ditbench report: " << escape(suite) << "</h1>\n";
  for (const auto& r : records) {
    if (r.env.empty()) continue;
    auto text = [&](const char* key) {
      const json v = r.env.value(key, json());
      return escape(v.is_string() ? v.get<std::string>() : v.is_null() ? "none" : v.dump());
    };
    out << "<p>GPU " << text("gpu") << ", driver " << text("driver") << ", torch " << text("torch")
        << ", CUDA " << text("cuda") << ", git " << text("git") << ", host " << text("host")
        << ".</p>\n";
    break;
  }
  if (baselines.empty()) out << "<p>No baseline config finished, so there are no speedups.</p>\n";
  stage_bars(out, records);
  speedup_psnr_scatter(out, records, baselines);
  scaling_chart(out, records);
  cache_strips(out, records);
  summary_table(out, records, baselines);
  out << "</body>\n</html>\n";
  return out.str();
}

}  // namespace ditbench
