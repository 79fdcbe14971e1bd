#include "harness/record.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iostream>

#include "models/common/error.h"

namespace ditbench {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// JSON has no infinity or NaN: such values are written as null.
json number_or_null(const std::optional<double>& v) {
  if (!v || !std::isfinite(*v)) return nullptr;
  return *v;
}

json stats_to_json(const SampleStats& s) {
  return {{"samples_s", s.samples_s},
          {"median_s", s.median_s},
          {"min_s", s.min_s},
          {"max_s", s.max_s},
          {"stdev_s", s.stdev_s}};
}

// Reads fields of a record, naming the JSON path of the first one that is missing or mistyped.
struct FieldReader {
  [[noreturn]] static void fail(const std::string& path, const std::string& message) {
    throw InputError(path + ": " + message);
  }
  static const json& field(const json& obj, const std::string& path, const char* key) {
    if (!obj.is_object()) fail(path, "expected an object");
    auto it = obj.find(key);
    if (it == obj.end()) fail(path + "/" + key, "missing");
    return *it;
  }
  static const json& object(const json& obj, const std::string& path, const char* key) {
    const json& v = field(obj, path, key);
    if (!v.is_object()) fail(path + "/" + key, "expected an object, got " + v.dump());
    return v;
  }
  static std::string string(const json& obj, const std::string& path, const char* key) {
    const json& v = field(obj, path, key);
    if (!v.is_string()) fail(path + "/" + key, "expected a string, got " + v.dump());
    return v.get<std::string>();
  }
  static double number(const json& v, const std::string& path) {
    if (!v.is_number()) fail(path, "expected a number, got " + v.dump());
    return v.get<double>();
  }
  static double number(const json& obj, const std::string& path, const char* key) {
    return number(field(obj, path, key), path + "/" + key);
  }
  static std::optional<double> nullable_number(const json& obj, const std::string& path,
                                               const char* key) {
    if (!obj.contains(key) || obj[key].is_null()) return std::nullopt;
    return number(obj[key], path + "/" + key);
  }
  static int64_t integer(const json& obj, const std::string& path, const char* key) {
    const json& v = field(obj, path, key);
    if (!v.is_number_integer()) fail(path + "/" + key, "expected an integer, got " + v.dump());
    return v.get<int64_t>();
  }
  static bool boolean(const json& obj, const std::string& path, const char* key) {
    const json& v = field(obj, path, key);
    if (!v.is_boolean()) fail(path + "/" + key, "expected true or false, got " + v.dump());
    return v.get<bool>();
  }
  static std::optional<std::string> optional_string(const json& obj, const std::string& path,
                                                    const char* key) {
    if (!obj.contains(key) || obj[key].is_null()) return std::nullopt;
    return string(obj, path, key);
  }
  static std::vector<double> numbers(const json& v, const std::string& path) {
    if (!v.is_array()) fail(path, "expected a list of numbers, got " + v.dump());
    std::vector<double> out;
    for (size_t i = 0; i < v.size(); ++i)
      out.push_back(number(v[i], path + "/" + std::to_string(i)));
    return out;
  }
  static SampleStats stats(const json& v, const std::string& path) {
    if (!v.is_object()) fail(path, "expected an object, got " + v.dump());
    SampleStats s;
    s.samples_s = numbers(field(v, path, "samples_s"), path + "/samples_s");
    s.median_s = number(v, path, "median_s");
    s.min_s = number(v, path, "min_s");
    s.max_s = number(v, path, "max_s");
    s.stdev_s = number(v, path, "stdev_s");
    return s;
  }
};
using R = FieldReader;

TimingsRecord timings_from_json(const json& t) {
  TimingsRecord out;
  out.e2e = R::stats(R::field(t, "/timings", "e2e"), "/timings/e2e");
  if (t.contains("stages"))
    for (const auto& [name, s] : R::object(t, "/timings", "stages").items())
      out.stages[name] = R::stats(s, "/timings/stages/" + name);
  for (auto [name, series] : {std::make_pair("steps_s", &out.steps_s),
                              std::make_pair("comm_steps_s", &out.comm_steps_s)}) {
    if (!t.contains(name)) continue;
    const json& steps = t[name];
    const std::string path = std::string("/timings/") + name;
    if (!steps.is_array()) R::fail(path, "expected a list of lists");
    for (size_t i = 0; i < steps.size(); ++i)
      series->push_back(R::numbers(steps[i], path + "/" + std::to_string(i)));
  }
  if (t.contains("step_flops")) out.step_flops = R::numbers(t["step_flops"], "/timings/step_flops");
  return out;
}

}  // namespace

CacheRecord cache_record_from_json(const json& c) {
  const std::string path = "/cache";
  CacheRecord out;
  out.policy = R::string(c, path, "policy");
  out.threshold = R::nullable_number(c, path, "threshold");
  out.computed_steps = static_cast<int>(R::integer(c, path, "computed_steps"));
  out.reused_steps = static_cast<int>(R::integer(c, path, "reused_steps"));
  if (c.contains("per_step")) {
    const json& steps = c["per_step"];
    if (!steps.is_array()) R::fail(path + "/per_step", "expected a list");
    for (size_t i = 0; i < steps.size(); ++i) {
      std::string p = path + "/per_step/" + std::to_string(i);
      CacheStepEntry s;
      s.step = static_cast<int>(R::integer(steps[i], p, "step"));
      s.signal = R::nullable_number(steps[i], p, "signal");
      s.reused = R::boolean(steps[i], p, "reused");
      s.accumulated = R::nullable_number(steps[i], p, "accumulated");
      s.output_change = R::nullable_number(steps[i], p, "output_change");
      out.per_step.push_back(s);
    }
  }
  out.coefficients = R::optional_string(c, path, "coefficients");
  return out;
}

namespace {

QualityRecord quality_from_json(const json& q) {
  const std::string path = "/quality";
  QualityRecord out;
  out.reference = R::string(q, path, "reference");
  out.psnr_mean = R::nullable_number(q, path, "psnr_mean");
  out.psnr_min = R::nullable_number(q, path, "psnr_min");
  out.ssim_mean = R::number(q, path, "ssim_mean");
  out.ssim_min = R::number(q, path, "ssim_min");
  out.identical = q.contains("identical") && R::boolean(q, path, "identical");
  return out;
}

json profile_to_json(const ProfileRecord& p) {
  json stages = json::object();
  for (const auto& [name, st] : p.stages) {
    stages[name] = {{"wall_s", st.wall_s},
                    {"busy_s", st.busy_s},
                    {"launch_gaps_s", st.launch_gaps_s},
                    {"kernels", st.kernels},
                    {"category_s", st.category_s}};
  }
  json top = json::array();
  for (const auto& k : p.top_kernels) {
    top.push_back(
        {{"name", k.name}, {"category", k.category}, {"total_s", k.total_s}, {"count", k.count}});
  }
  json j = {{"source", p.source},
            {"kernels", p.kernels},
            {"unattributed_s", p.unattributed_s},
            {"stages", stages},
            {"top_kernels", top}};
  if (p.note) j["note"] = *p.note;
  return j;
}

ProfileRecord profile_from_json(const json& j) {
  const std::string path = "/profile";
  ProfileRecord p;
  p.source = R::string(j, path, "source");
  p.kernels = R::integer(j, path, "kernels");
  p.unattributed_s = R::number(j, path, "unattributed_s");
  p.note = R::optional_string(j, path, "note");
  for (const auto& [name, st] : R::object(j, path, "stages").items()) {
    const std::string sp = path + "/stages/" + name;
    ProfileStageEntry e;
    e.wall_s = R::number(st, sp, "wall_s");
    e.busy_s = R::number(st, sp, "busy_s");
    e.launch_gaps_s = R::number(st, sp, "launch_gaps_s");
    e.kernels = R::integer(st, sp, "kernels");
    for (const auto& [category, seconds] : R::object(st, sp, "category_s").items())
      e.category_s[category] = R::number(seconds, sp + "/category_s/" + category);
    p.stages[name] = e;
  }
  const json& top = R::field(j, path, "top_kernels");
  if (!top.is_array()) R::fail(path + "/top_kernels", "expected a list");
  for (size_t i = 0; i < top.size(); ++i) {
    const std::string kp = path + "/top_kernels/" + std::to_string(i);
    p.top_kernels.push_back({R::string(top[i], kp, "name"), R::string(top[i], kp, "category"),
                             R::number(top[i], kp, "total_s"), R::integer(top[i], kp, "count")});
  }
  return p;
}

json telemetry_to_json(const TelemetryRecord& t) {
  json devices = json::array();
  for (const auto& d : t.devices) {
    devices.push_back({{"device", d.device},
                       {"samples", d.samples},
                       {"sm_clock_mhz",
                        {{"median", d.sm_clock_mhz_median},
                         {"min", d.sm_clock_mhz_min},
                         {"max", d.sm_clock_mhz_max}}},
                       {"max_sm_clock_mhz", number_or_null(d.max_sm_clock_mhz)},
                       {"power_w", {{"mean", d.power_w_mean}, {"max", d.power_w_max}}},
                       {"power_limit_w", number_or_null(d.power_limit_w)},
                       {"temperature_c_max", d.temperature_c_max},
                       {"power_capped", d.power_capped},
                       {"thermal_slowdown", d.thermal_slowdown}});
  }
  return {{"source", "nvml"},
          {"period_s", t.period_s},
          {"devices", devices},
          {"note", t.note ? json(*t.note) : json(nullptr)}};
}

TelemetryRecord telemetry_from_json(const json& j) {
  const std::string path = "/telemetry";
  TelemetryRecord t;
  const json& devices = R::field(j, path, "devices");
  if (!devices.is_array()) R::fail(path + "/devices", "expected a list");
  for (size_t i = 0; i < devices.size(); ++i) {
    const std::string dp = path + "/devices/" + std::to_string(i);
    const json& d = devices[i];
    GpuTelemetryEntry e;
    e.device = static_cast<int>(R::integer(d, dp, "device"));
    e.samples = R::integer(d, dp, "samples");
    const json& clock = R::object(d, dp, "sm_clock_mhz");
    e.sm_clock_mhz_median = R::number(clock, dp + "/sm_clock_mhz", "median");
    e.sm_clock_mhz_min = R::number(clock, dp + "/sm_clock_mhz", "min");
    e.sm_clock_mhz_max = R::number(clock, dp + "/sm_clock_mhz", "max");
    e.max_sm_clock_mhz = R::nullable_number(d, dp, "max_sm_clock_mhz");
    const json& power = R::object(d, dp, "power_w");
    e.power_w_mean = R::number(power, dp + "/power_w", "mean");
    e.power_w_max = R::number(power, dp + "/power_w", "max");
    e.power_limit_w = R::nullable_number(d, dp, "power_limit_w");
    e.temperature_c_max = R::number(d, dp, "temperature_c_max");
    e.power_capped = R::number(d, dp, "power_capped");
    e.thermal_slowdown = R::number(d, dp, "thermal_slowdown");
    t.devices.push_back(e);
  }
  t.period_s = R::number(j, path, "period_s");
  t.note = R::optional_string(j, path, "note");
  return t;
}

const std::set<std::string>& known_keys() {
  static const std::set<std::string> keys = {
      "schema",    "suite",        "config_id",     "baseline",  "config",  "status",
      "reason",    "env",          "timings",       "memory",    "cache",   "quality",
      "artifacts", "weights_note", "prompt_source", "attention", "profile", "telemetry"};
  return keys;
}

}  // namespace

json to_json(const ResultRecord& r) {
  json j = {{"schema", r.schema},     {"suite", r.suite},   {"config_id", r.config_id},
            {"baseline", r.baseline}, {"config", r.config}, {"status", to_string(r.status)},
            {"reason", r.reason},     {"env", r.env}};
  if (r.timings) {
    json stages = json::object();
    for (const auto& [name, s] : r.timings->stages) stages[name] = stats_to_json(s);
    j["timings"] = {{"e2e", stats_to_json(r.timings->e2e)},
                    {"stages", stages},
                    {"steps_s", r.timings->steps_s}};
    if (!r.timings->comm_steps_s.empty()) j["timings"]["comm_steps_s"] = r.timings->comm_steps_s;
    if (!r.timings->step_flops.empty()) j["timings"]["step_flops"] = r.timings->step_flops;
  }
  if (r.peak_bytes) j["memory"] = {{"peak_bytes", *r.peak_bytes}};
  if (r.cache) {
    json steps = json::array();
    for (const auto& s : r.cache->per_step) {
      json step = {{"step", s.step}, {"signal", number_or_null(s.signal)}, {"reused", s.reused}};
      if (s.accumulated) step["accumulated"] = number_or_null(s.accumulated);
      if (s.output_change) step["output_change"] = number_or_null(s.output_change);
      steps.push_back(step);
    }
    j["cache"] = {{"policy", r.cache->policy},
                  {"threshold", number_or_null(r.cache->threshold)},
                  {"computed_steps", r.cache->computed_steps},
                  {"reused_steps", r.cache->reused_steps},
                  {"per_step", steps}};
    if (r.cache->coefficients) j["cache"]["coefficients"] = *r.cache->coefficients;
  }
  if (r.quality) {
    const QualityRecord& q = *r.quality;
    j["quality"] = {{"reference", q.reference},
                    {"psnr_mean", q.identical ? json(nullptr) : number_or_null(q.psnr_mean)},
                    {"psnr_min", q.identical ? json(nullptr) : number_or_null(q.psnr_min)},
                    {"ssim_mean", q.ssim_mean},
                    {"ssim_min", q.ssim_min},
                    {"identical", q.identical}};
  }
  if (r.artifacts) {
    json a = json::object();
    if (r.artifacts->frames) a["frames"] = *r.artifacts->frames;
    if (r.artifacts->video) a["video"] = *r.artifacts->video;
    if (r.artifacts->trace) a["trace"] = *r.artifacts->trace;
    if (r.artifacts->note) a["note"] = *r.artifacts->note;
    if (r.artifacts->png) a["png"] = *r.artifacts->png;
    j["artifacts"] = a;
  }
  if (r.weights_note) j["weights_note"] = *r.weights_note;
  if (r.prompt_source) j["prompt_source"] = *r.prompt_source;
  if (r.attention)
    j["attention"] = {{"requested", r.attention->requested}, {"kernels", r.attention->kernels}};
  if (r.profile) j["profile"] = profile_to_json(*r.profile);
  if (r.telemetry) j["telemetry"] = telemetry_to_json(*r.telemetry);
  for (const auto& [key, value] : r.extra.items())
    if (!j.contains(key)) j[key] = value;
  return j;
}

ResultRecord record_from_json(const json& j) {
  if (!j.is_object()) R::fail("/", "expected a JSON object per line");
  ResultRecord r;
  r.schema = R::string(j, "", "schema");
  if (r.schema.rfind("ditbench.result/1", 0) != 0 || r.schema.size() != 17)
    R::fail("/schema", "\"" + r.schema + "\" is not a schema this build reads (" +
                           std::string(kResultSchema) + ")");
  r.suite = R::string(j, "", "suite");
  r.config_id = R::string(j, "", "config_id");
  r.baseline = j.contains("baseline") && R::boolean(j, "", "baseline");
  if (j.contains("config")) r.config = R::object(j, "", "config");
  std::string status = R::string(j, "", "status");
  if (status == "ok") {
    r.status = RunStatus::kOk;
  } else if (status == "failed") {
    r.status = RunStatus::kFailed;
  } else if (status == "skipped") {
    r.status = RunStatus::kSkipped;
  } else {
    R::fail("/status", "unknown status \"" + status + "\" (allowed: ok, failed, skipped)");
  }
  r.reason = R::optional_string(j, "", "reason").value_or("");
  if (j.contains("env")) r.env = R::object(j, "", "env");
  if (j.contains("timings")) r.timings = timings_from_json(R::object(j, "", "timings"));
  if (j.contains("memory")) {
    const json& m = R::object(j, "", "memory");
    if (m.contains("peak_bytes") && !m["peak_bytes"].is_null())
      r.peak_bytes = R::integer(m, "/memory", "peak_bytes");
  }
  if (j.contains("cache") && !j["cache"].is_null())
    r.cache = cache_record_from_json(R::object(j, "", "cache"));
  if (j.contains("quality") && !j["quality"].is_null())
    r.quality = quality_from_json(R::object(j, "", "quality"));
  if (j.contains("artifacts")) {
    const json& a = R::object(j, "", "artifacts");
    r.artifacts = ArtifactsRecord{
        R::optional_string(a, "/artifacts", "frames"), R::optional_string(a, "/artifacts", "video"),
        R::optional_string(a, "/artifacts", "trace"), R::optional_string(a, "/artifacts", "note"),
        R::optional_string(a, "/artifacts", "png")};
  }
  r.weights_note = R::optional_string(j, "", "weights_note");
  r.prompt_source = R::optional_string(j, "", "prompt_source");
  if (j.contains("attention")) {
    const json& a = R::object(j, "", "attention");
    AttentionRecord att;
    att.requested = R::string(a, "/attention", "requested");
    const json& kernels = R::field(a, "/attention", "kernels");
    if (!kernels.is_array()) R::fail("/attention/kernels", "expected a list of strings");
    for (size_t i = 0; i < kernels.size(); ++i) {
      if (!kernels[i].is_string())
        R::fail("/attention/kernels/" + std::to_string(i), "expected a string");
      att.kernels.push_back(kernels[i].get<std::string>());
    }
    r.attention = att;
  }
  if (j.contains("profile")) r.profile = profile_from_json(R::object(j, "", "profile"));
  if (j.contains("telemetry")) r.telemetry = telemetry_from_json(R::object(j, "", "telemetry"));
  for (const auto& [key, value] : j.items())
    if (!known_keys().count(key)) r.extra[key] = value;
  return r;
}

ResultsWriter::ResultsWriter(const fs::path& dir) : path_(dir / "results.jsonl") {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw InputError(dir.string() + ": cannot create the output folder: " + ec.message());
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw InputError(path_.string() + ": cannot open for appending: " + std::strerror(errno));
  // Cut a partial last line (a crash mid-write) back to the last newline.
  struct stat st {};
  if (::fstat(fd_, &st) == 0 && st.st_size > 0) {
    off_t keep = st.st_size;
    char ch = 0;
    while (keep > 0 && ::pread(fd_, &ch, 1, keep - 1) == 1 && ch != '\n') --keep;
    if (keep != st.st_size) {
      std::cerr << "warning: " << path_.string() << ": dropping a partial last line ("
                << (st.st_size - keep) << " bytes) left by an interrupted run\n";
      if (::ftruncate(fd_, keep) != 0)
        throw InputError(path_.string() +
                         ": cannot cut the partial last line: " + std::strerror(errno));
    }
  }
}

ResultsWriter::~ResultsWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void ResultsWriter::append(const ResultRecord& record) {
  // One write() per line: O_APPEND keeps concurrent or interrupted writers from interleaving.
  std::string line = to_json(record).dump() + "\n";
  const char* data = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(fd_, data, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::runtime_error(path_.string() + ": write failed: " + std::strerror(errno));
    data += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd_) != 0)
    throw std::runtime_error(path_.string() + ": fsync failed: " + std::strerror(errno));
}

std::vector<ResultRecord> read_results(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path.string() + ": cannot open the results file");
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const bool ends_with_newline = !content.empty() && content.back() == '\n';
  std::vector<ResultRecord> records;
  size_t start = 0;
  int line_number = 0;
  while (start < content.size()) {
    size_t end = content.find('\n', start);
    const bool last = end == std::string::npos;
    std::string line = content.substr(start, last ? std::string::npos : end - start);
    start = last ? content.size() : end + 1;
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::parse_error& e) {
      if (last && !ends_with_newline) {
        std::cerr << "warning: " << path.string() << ":" << line_number
                  << ": ignoring a truncated last line (an interrupted run)\n";
        break;
      }
      throw InputError(path.string() + ":" + std::to_string(line_number) +
                       ": not valid JSON: " + e.what());
    }
    try {
      records.push_back(record_from_json(j));
    } catch (const InputError& e) {
      throw InputError(path.string() + ":" + std::to_string(line_number) + ": " + e.what());
    }
  }
  return records;
}

std::set<std::string> finished_config_ids(const fs::path& path, bool include_failed) {
  std::set<std::string> ids;
  std::error_code ec;
  if (!fs::exists(path, ec)) return ids;
  for (const auto& r : read_results(path))
    if (r.status != RunStatus::kFailed || include_failed) ids.insert(r.config_id);
  return ids;
}

}  // namespace ditbench
