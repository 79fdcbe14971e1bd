#include "reports/trace.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <stdexcept>
#include <vector>

namespace ditbench {
using nlohmann::json;

namespace {

constexpr int kProcessId = 1;
constexpr int kHostTrack = 1;
constexpr int kGpuTrack = 2;
constexpr int kProfileProcessId = 2;
constexpr double kMicrosPerSecond = 1e6;

// Complete events of one track, laid out by begin order and depth (see chrome_trace()).
void add_track(const TimingResult& timing, bool device_clock, int track, json& events) {
  struct Open {
    double start_us, cursor_us, end_us;
  };
  std::vector<Open> open;  // the enclosing spans of the current one, outermost first
  double root_cursor_us = 0;
  int step_index = 0;
  for (const StageSpan& span : timing.spans) {
    const double seconds = device_clock ? *span.device_s : span.host_s;
    const double full_us = std::max(0.0, seconds * kMicrosPerSecond);
    // Depth says how many spans enclose this one: close the ones that ended before it began.
    const size_t depth = static_cast<size_t>(std::max(0, span.depth));
    if (open.size() > depth) open.resize(depth);
    double start_us = open.empty() ? root_cursor_us : open.back().cursor_us;
    double dur_us = full_us;
    if (!open.empty()) {
      start_us = std::min(start_us, open.back().end_us);
      dur_us = std::min(full_us, open.back().end_us - start_us);
      open.back().cursor_us = start_us + dur_us;
    } else {
      root_cursor_us = start_us + dur_us;
    }
    open.push_back({start_us, start_us, start_us + dur_us});

    json args = {{"host_ms", span.host_s * 1e3}};
    if (span.device_s) args["device_ms"] = *span.device_s * 1e3;
    if (dur_us < full_us) args["cut_to_parent"] = true;
    std::string name = span.name;
    if (span.name == "step") {
      args["step"] = step_index;
      name += " " + std::to_string(step_index++);
    }
    events.push_back({{"name", name},
                      {"cat", span.name},
                      {"ph", "X"},
                      {"ts", start_us},
                      {"dur", dur_us},
                      {"pid", kProcessId},
                      {"tid", track},
                      {"args", args}});
  }
}

json thread_name(int track, const std::string& name, int process = kProcessId) {
  return {{"name", "thread_name"},
          {"ph", "M"},
          {"pid", process},
          {"tid", track},
          {"args", {{"name", name}}}};
}

// The profiled generation's kernels, one track per stream (tid = stream id).
void add_kernel_tracks(const std::vector<KernelSlice>& kernels, json& events) {
  events.push_back({{"name", "process_name"},
                    {"ph", "M"},
                    {"pid", kProfileProcessId},
                    {"args", {{"name", "profiled generation (CUPTI kernels)"}}}});
  std::set<uint32_t> streams;
  for (const auto& k : kernels) {
    if (streams.insert(k.stream).second) {
      events.push_back(thread_name(static_cast<int>(k.stream),
                                   "GPU stream " + std::to_string(k.stream), kProfileProcessId));
    }
    events.push_back({{"name", k.name},
                      {"cat", k.category},
                      {"ph", "X"},
                      {"ts", k.start_us},
                      {"dur", k.dur_us},
                      {"pid", kProfileProcessId},
                      {"tid", static_cast<int>(k.stream)},
                      {"args", {{"category", k.category}, {"stage", k.stage}}}});
  }
}

}  // namespace

json chrome_trace(const TimingResult& timing, const std::string& config_id,
                  const std::vector<KernelSlice>& kernels) {
  json events = json::array();
  events.push_back({{"name", "process_name"},
                    {"ph", "M"},
                    {"pid", kProcessId},
                    {"args", {{"name", "ditbench " + config_id}}}});
  events.push_back(thread_name(kHostTrack, "host clock"));
  add_track(timing, /*device_clock=*/false, kHostTrack, events);
  const bool all_on_device = !timing.spans.empty() &&
                             std::all_of(timing.spans.begin(), timing.spans.end(),
                                         [](const StageSpan& s) { return s.device_s.has_value(); });
  if (all_on_device) {
    events.push_back(thread_name(kGpuTrack, "GPU (CUDA events)"));
    add_track(timing, /*device_clock=*/true, kGpuTrack, events);
  }
  if (!kernels.empty()) add_kernel_tracks(kernels, events);
  return {{"traceEvents", events},
          {"displayTimeUnit", "ms"},
          {"otherData",
           {{"config_id", config_id},
            {"layout", "spans placed by order and nesting; durations measured, gaps not"}}}};
}

std::string write_chrome_trace(const std::filesystem::path& out_dir, const std::string& file_stem,
                               const TimingResult& timing, const std::string& config_id,
                               const std::vector<KernelSlice>& kernels) {
  const std::filesystem::path relative = std::filesystem::path("traces") / (file_stem + ".json");
  std::filesystem::create_directories(out_dir / "traces");
  std::ofstream out(out_dir / relative);
  out << chrome_trace(timing, config_id, kernels).dump() << "\n";
  if (!out) throw std::runtime_error((out_dir / relative).string() + ": cannot write the trace");
  return relative.string();
}

}  // namespace ditbench
