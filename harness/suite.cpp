#include "harness/suite.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "models/common/error.h"
#include "models/pipeline.h"
#include "optimizations/attention/backends.h"
#include "optimizations/cache/cache_policy.h"
#include "optimizations/quant/quant.h"

namespace ditbench {
namespace fs = std::filesystem;
using nlohmann::json;

const std::vector<ModelInfo>& known_models() {
  static const std::vector<ModelInfo> models = [] {
    std::vector<ModelInfo> out;
    for (const FamilyInfo& f : model_families())
      out.push_back({f.name, f.presets, static_cast<int>(f.spatial_multiple),
                     static_cast<int>(f.temporal_stride), f.uses_cfg});
    return out;
  }();
  return models;
}

const ModelInfo* find_model(const std::string& name) {
  for (const auto& m : known_models())
    if (m.name == name) return &m;
  return nullptr;
}

const std::vector<std::string>& cp_mode_names() {
  static const std::vector<std::string> names = {"none", "ulysses", "ring", "usp"};
  return names;
}

double default_cache_threshold(const std::string& cache_policy) {
  if (cache_policy == "fbcache") return 0.06;
  if (cache_policy == "teacache") return 0.1;
  throw InputError("no default threshold for cache \"" + cache_policy + "\"");
}

namespace {

std::string join(const std::vector<std::string>& items, const std::string& sep = ", ") {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

bool contains(const std::vector<std::string>& items, const std::string& item) {
  return std::find(items.begin(), items.end(), item) != items.end();
}

// Shortest text that reads back to the same double for the thresholds users write (0.06, 0.1).
std::string format_number(double value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", value);
  return buf;
}

const char* on_off(bool value) { return value ? "on" : "off"; }

const std::vector<std::string>& suite_keys() {
  static const std::vector<std::string> keys = {
      "name",       "description", "model",         "preset",
      "checkpoint", "weights",     "dtype",         "device",
      "height",     "width",       "frames",        "steps",
      "seed",       "guidance",    "prompt",        "noise",
      "warmup",     "repeats",     "decode",        "save_frames",
      "baseline",   "axes",        "cache_options", "teacache_coefficients",
      "timeout_s",  "fps",         "reference",     "reference_resize",
      "profile"};
  return keys;
}

const std::vector<std::string>& axis_names() {
  static const std::vector<std::string> names = {
      "attention", "cache",          "cache_threshold", "quant",        "gpus",
      "cp_mode",   "ulysses_degree", "ring_degree",     "cfg_parallel", "graphs"};
  return names;
}

// Reads one suite document, turning every problem into "FILE: /json/path: what (allowed: ...)".
class SuiteReader {
 public:
  SuiteReader(const json& doc, fs::path file) : doc_(doc), file_(std::move(file)) {}

  [[noreturn]] void fail(const std::string& path, const std::string& message) const {
    throw InputError(file_.string() + ": " + (path.empty() ? "/" : path) + ": " + message);
  }

  static std::string describe_type(const json& v) {
    return std::string(v.type_name()) + " " + v.dump();
  }

  void check_keys(const json& obj, const std::string& path,
                  const std::vector<std::string>& allowed) const {
    if (!obj.is_object()) fail(path, "expected an object, got " + describe_type(obj));
    for (const auto& [key, value] : obj.items())
      if (!contains(allowed, key))
        fail(path + "/" + key, "unknown key \"" + key + "\" (allowed: " + join(allowed) + ")");
  }

  std::string string_value(const json& v, const std::string& path) const {
    if (!v.is_string()) fail(path, "expected a string, got " + describe_type(v));
    return v.get<std::string>();
  }

  std::string choice(const json& v, const std::string& path, const std::string& what,
                     const std::vector<std::string>& allowed) const {
    std::string s = string_value(v, path);
    if (!contains(allowed, s))
      fail(path, "unknown " + what + " \"" + s + "\" (allowed: " + join(allowed) + ")");
    return s;
  }

  // Sizes, counts and degrees are ints downstream: a larger value must not wrap into a small one.
  int64_t integer(const json& v, const std::string& path, int64_t min_value,
                  int64_t max_value = std::numeric_limits<int>::max()) const {
    if (!v.is_number_integer())
      fail(path,
           "expected an integer >= " + std::to_string(min_value) + ", got " + describe_type(v));
    if (v.is_number_unsigned() ? v.get<uint64_t>() > static_cast<uint64_t>(max_value)
                               : v.get<int64_t>() > max_value)
      fail(path, "must be <= " + std::to_string(max_value) + ", got " + v.dump());
    int64_t n = v.get<int64_t>();
    if (n < min_value)
      fail(path, "must be >= " + std::to_string(min_value) + ", got " + std::to_string(n));
    return n;
  }

  double number(const json& v, const std::string& path) const {
    if (!v.is_number()) fail(path, "expected a number, got " + describe_type(v));
    return v.get<double>();
  }

  bool boolean(const json& v, const std::string& path) const {
    if (!v.is_boolean()) fail(path, "expected true or false, got " + describe_type(v));
    return v.get<bool>();
  }

  // A path relative to the suite file's folder, which must exist.
  fs::path existing_path(const json& v, const std::string& path, bool want_directory) const {
    fs::path p = string_value(v, path);
    if (p.is_relative()) p = file_.parent_path() / p;
    p = p.lexically_normal();
    std::error_code ec;
    if (want_directory ? !fs::is_directory(p, ec) : !fs::is_regular_file(p, ec))
      fail(path, std::string(want_directory ? "folder" : "file") + " \"" + p.string() +
                     "\" does not exist");
    return p;
  }

  // An axis value list; a single scalar stands for a one-element list.
  template <typename F>
  auto axis_list(const json& v, const std::string& path, F&& read_item) const {
    using Item = decltype(read_item(v, path));
    std::vector<Item> out;
    if (!v.is_array()) {
      out.push_back(read_item(v, path));
      return out;
    }
    if (v.empty()) fail(path, "empty list; give at least one value or leave the axis out");
    for (size_t i = 0; i < v.size(); ++i)
      out.push_back(read_item(v[i], path + "/" + std::to_string(i)));
    return out;
  }

  Suite read() const {
    Suite suite;
    suite.file = file_;
    check_keys(doc_, "", suite_keys());
    RunSettings& s = suite.settings;

    suite.name =
        doc_.contains("name") ? string_value(doc_["name"], "/name") : file_.stem().string();
    if (doc_.contains("description")) string_value(doc_["description"], "/description");

    read_model(suite);
    if (doc_.contains("dtype"))
      s.dtype = choice(doc_["dtype"], "/dtype", "dtype", {"float32", "bfloat16", "float16"});
    if (doc_.contains("device"))
      s.device = choice(doc_["device"], "/device", "device", {"auto", "cpu", "cuda"});
    for (auto [key, field] : {std::pair<const char*, int*>{"height", &s.height},
                              {"width", &s.width},
                              {"frames", &s.frames},
                              {"steps", &s.steps}}) {
      if (!doc_.contains(key))
        fail(std::string("/") + key, "missing required key (a positive integer)");
      *field = static_cast<int>(integer(doc_[key], std::string("/") + key, 1));
    }
    const ModelInfo& model = *find_model(s.model);
    if (s.height % model.spatial_multiple)
      fail("/height", std::to_string(s.height) + " is not a multiple of " +
                          std::to_string(model.spatial_multiple) + " (required by " + s.model +
                          ")");
    if (s.width % model.spatial_multiple)
      fail("/width", std::to_string(s.width) + " is not a multiple of " +
                         std::to_string(model.spatial_multiple) + " (required by " + s.model + ")");
    if ((s.frames - 1) % model.temporal_stride)
      fail("/frames", std::to_string(s.frames) + " frames: " + s.model +
                          " needs frames = " + std::to_string(model.temporal_stride) +
                          "k + 1 (e.g. 1, " + std::to_string(model.temporal_stride + 1) + ", 129)");

    if (doc_.contains("seed"))
      s.seed = integer(doc_["seed"], "/seed", 0, std::numeric_limits<int64_t>::max());
    if (doc_.contains("guidance")) s.guidance = number(doc_["guidance"], "/guidance");
    if (doc_.contains("prompt")) read_prompt(doc_["prompt"], s.prompt);
    if (doc_.contains("noise")) s.noise = existing_path(doc_["noise"], "/noise", false);
    if (doc_.contains("warmup")) s.warmup = static_cast<int>(integer(doc_["warmup"], "/warmup", 0));
    if (doc_.contains("repeats"))
      s.repeats = static_cast<int>(integer(doc_["repeats"], "/repeats", 1));
    if (doc_.contains("decode")) s.decode = boolean(doc_["decode"], "/decode");
    if (doc_.contains("save_frames")) s.save_frames = boolean(doc_["save_frames"], "/save_frames");
    if (doc_.contains("profile")) s.profile = boolean(doc_["profile"], "/profile");
    if (doc_.contains("timeout_s")) {
      double t = number(doc_["timeout_s"], "/timeout_s");
      if (!(t > 0)) fail("/timeout_s", "must be > 0, got " + format_number(t));
      s.timeout_s = t;
    }
    if (doc_.contains("cache_options")) {
      const json& o = doc_["cache_options"];
      check_keys(o, "/cache_options",
                 {"warmup_steps", "max_cached_steps", "max_consecutive_cached"});
      auto opt = [&](const char* key, std::optional<int>& field) {
        if (o.contains(key))
          field = static_cast<int>(integer(o[key], std::string("/cache_options/") + key, 0));
      };
      opt("warmup_steps", s.cache_options.warmup_steps);
      opt("max_cached_steps", s.cache_options.max_cached_steps);
      opt("max_consecutive_cached", s.cache_options.max_consecutive_cached);
    }
    if (doc_.contains("teacache_coefficients")) {
      // A named set or five numbers, as the cache library reads them; its message lists the sets.
      std::string spec = string_value(doc_["teacache_coefficients"], "/teacache_coefficients");
      try {
        parse_teacache_coefficients(spec);
      } catch (const InputError& e) {
        fail("/teacache_coefficients", e.what());
      }
      s.teacache_coefficients = spec;
    }

    if (doc_.contains("fps")) {
      double fps = number(doc_["fps"], "/fps");
      if (!(fps > 0 && fps <= 1000))
        fail("/fps", "must lie in (0, 1000], got " + format_number(fps));
      s.fps = fps;
    }
    if (doc_.contains("reference")) {
      s.reference = reference_source(doc_["reference"]);
      if (!s.decode)
        fail("/reference",
             "scoring against a reference needs decoded frames, but "
             "\"decode\" is false");
    }
    if (doc_.contains("reference_resize"))
      s.reference_resize = boolean(doc_["reference_resize"], "/reference_resize");

    if (doc_.contains("axes")) {
      read_axes(doc_["axes"], suite.axes);
      check_matrix_size(suite.axes);
    }
    if (doc_.contains("baseline")) {
      check_keys(doc_["baseline"], "/baseline", axis_names());
      suite.baseline = doc_["baseline"];
    }
    return suite;
  }

 private:
  void read_model(Suite& suite) const {
    RunSettings& s = suite.settings;
    std::vector<std::string> model_names;
    for (const auto& m : known_models()) model_names.push_back(m.name);
    if (doc_.contains("model")) s.model = choice(doc_["model"], "/model", "model", model_names);

    bool has_preset = doc_.contains("preset"), has_checkpoint = doc_.contains("checkpoint");
    if (has_preset == has_checkpoint)
      fail("/", std::string(has_preset ? "both" : "neither") +
                    " \"preset\" and \"checkpoint\" given; give exactly one of them");
    if (has_preset) {
      std::vector<std::string> presets;
      for (const auto& m : known_models())
        if (s.model.empty() || m.name == s.model)
          presets.insert(presets.end(), m.presets.begin(), m.presets.end());
      s.preset = choice(doc_["preset"], "/preset", "preset", presets);
      if (s.model.empty())  // the preset names its family
        for (const auto& m : known_models())
          if (contains(m.presets, s.preset)) s.model = m.name;
    } else {
      if (s.model.empty())
        fail("/model", "missing; a checkpoint suite must name its model (allowed: " +
                           join(model_names) + ")");
      s.checkpoint = existing_path(doc_["checkpoint"], "/checkpoint", true);
      std::error_code ec;
      if (!fs::is_directory(*s.checkpoint / "transformer", ec))
        fail("/checkpoint",
             "\"" + s.checkpoint->string() +
                 "\" has no transformer/ folder (expected a diffusers-style folder)");
      bool decode =
          !doc_.contains("decode") || (doc_["decode"].is_boolean() && doc_["decode"].get<bool>());
      if (decode && !fs::is_directory(*s.checkpoint / "vae", ec))
        fail("/checkpoint",
             "\"" + s.checkpoint->string() +
                 "\" has no vae/ folder (needed to decode; set \"decode\": false to skip it)");
    }
    s.weights = has_checkpoint ? "checkpoint" : "random";
    if (doc_.contains("weights")) {
      s.weights = choice(doc_["weights"], "/weights", "weights", {"random", "checkpoint"});
      if (s.weights == "checkpoint" && !has_checkpoint)
        fail("/weights",
             "\"checkpoint\" needs a \"checkpoint\" folder; a preset has only random weights");
    }
  }

  // The cartesian product is built in memory before duplicates are removed: a few long axis lists
  // in a small file would otherwise ask for billions of configs.
  void check_matrix_size(const SuiteAxes& a) const {
    constexpr double kMaxConfigs = 100000;
    double cache_points = 0;
    for (const auto& c : a.cache)
      cache_points += c == "none" ? 1.0 : static_cast<double>(a.cache_threshold.at(c).size());
    const double configs = cache_points * a.attention.size() * a.quant.size() * a.gpus.size() *
                           a.cp_mode.size() * std::max<size_t>(1, a.ulysses_degree.size()) *
                           std::max<size_t>(1, a.ring_degree.size()) * a.cfg_parallel.size() *
                           a.graphs.size();
    if (configs > kMaxConfigs)
      fail("/axes", "the axes multiply out to " + format_number(configs) + " configs (limit " +
                        format_number(kMaxConfigs) + "); split the suite");
  }

  // A frame source for load_frames: its file or folder must exist; a safetensors file may name
  // its tensor after a colon.
  std::string reference_source(const json& v) const {
    std::string source = string_value(v, "/reference"), tensor;
    const std::string marker = ".safetensors:";
    if (auto at = source.rfind(marker); at != std::string::npos) {
      tensor = source.substr(at + marker.size() - 1);  // ":name"
      source = source.substr(0, at + marker.size() - 1);
    }
    fs::path p = source;
    if (p.is_relative()) p = file_.parent_path() / p;
    p = p.lexically_normal();
    std::error_code ec;
    if (!fs::exists(p, ec))
      fail("/reference", "\"" + p.string() +
                             "\" does not exist (a video, a folder of frames or "
                             "file.safetensors:tensor)");
    return p.string() + tensor;
  }

  void read_prompt(const json& v, PromptSpec& prompt) const {
    if (v.is_string()) {
      prompt.file = existing_path(v, "/prompt", false);
      return;
    }
    if (!v.is_object())
      fail("/prompt",
           "expected a safetensors path or {\"tokens\": N, \"valid\": M}, got " + describe_type(v));
    check_keys(v, "/prompt", {"tokens", "valid"});
    if (v.contains("tokens"))
      prompt.tokens = static_cast<int>(integer(v["tokens"], "/prompt/tokens", 1));
    prompt.valid = prompt.tokens;
    if (v.contains("valid"))
      prompt.valid = static_cast<int>(integer(v["valid"], "/prompt/valid", 1));
    if (prompt.valid > prompt.tokens)
      fail("/prompt/valid", std::to_string(prompt.valid) +
                                " valid tokens exceed tokens = " + std::to_string(prompt.tokens));
  }

  void read_axes(const json& axes, SuiteAxes& out) const {
    check_keys(axes, "/axes", axis_names());
    auto strings = [&](const char* key, const std::string& what,
                       const std::vector<std::string>& allowed, std::vector<std::string>& field) {
      if (!axes.contains(key)) return;
      field = axis_list(
          axes[key], std::string("/axes/") + key,
          [&](const json& v, const std::string& p) { return choice(v, p, what, allowed); });
    };
    auto ints = [&](const char* key, std::vector<int>& field) {
      if (!axes.contains(key)) return;
      field = axis_list(
          axes[key], std::string("/axes/") + key,
          [&](const json& v, const std::string& p) { return static_cast<int>(integer(v, p, 1)); });
    };
    auto bools = [&](const char* key, std::vector<bool>& field) {
      if (!axes.contains(key)) return;
      field = axis_list(axes[key], std::string("/axes/") + key,
                        [&](const json& v, const std::string& p) { return boolean(v, p); });
    };
    strings("attention", "attention backend", attention_backend_names(), out.attention);
    strings("cache", "cache", cache_policy_names(), out.cache);
    strings("quant", "quant mode", quant_mode_names(), out.quant);
    strings("cp_mode", "cp_mode", cp_mode_names(), out.cp_mode);
    ints("gpus", out.gpus);
    ints("ulysses_degree", out.ulysses_degree);
    ints("ring_degree", out.ring_degree);
    bools("cfg_parallel", out.cfg_parallel);
    bools("graphs", out.graphs);

    std::vector<std::string> caches;  // the axis' caches that take a threshold
    for (const auto& c : out.cache)
      if (c != "none" && !contains(caches, c)) caches.push_back(c);
    auto thresholds = [&](const json& v, const std::string& path) {
      return axis_list(v, path, [&](const json& item, const std::string& p) {
        double t = number(item, p);
        if (!(t >= 0 && t <= 10)) fail(p, "threshold " + format_number(t) + " outside [0, 10]");
        return t;
      });
    };
    if (axes.contains("cache_threshold")) {
      const json& v = axes["cache_threshold"];
      if (caches.empty())
        fail("/axes/cache_threshold", "thresholds given but the cache axis has no cache (cache: " +
                                          join(out.cache) + "; allowed caches: fbcache, teacache)");
      if (v.is_object()) {
        for (const auto& [key, list] : v.items()) {
          std::string path = "/axes/cache_threshold/" + key;
          if (!contains(caches, key))
            fail(path,
                 "cache \"" + key + "\" is not on the cache axis (allowed: " + join(caches) + ")");
          out.cache_threshold[key] = thresholds(list, path);
        }
      } else {
        auto list = thresholds(v, "/axes/cache_threshold");
        for (const auto& c : caches) out.cache_threshold[c] = list;
      }
    }
    for (const auto& c : caches)
      if (!out.cache_threshold.count(c)) out.cache_threshold[c] = {default_cache_threshold(c)};
  }

  const json& doc_;
  fs::path file_;
};

// The axis values one point of the cartesian product picks, before degrees are derived.
struct RawChoice {
  std::string attention, cache;
  std::optional<double> threshold;
  std::string quant;
  int gpus = 1;
  std::string cp_mode;
  std::optional<int> ulysses_degree, ring_degree;  // absent: derive
  bool cfg_parallel = false, graphs = false;
};

// Derives the context-parallel degrees and decides whether the combination can run at all.
std::pair<AxisValues, std::string> resolve(const RawChoice& c, const RunSettings& settings) {
  AxisValues a;
  a.attention = c.attention;
  a.cache = c.cache;
  a.cache_threshold = c.threshold;
  a.quant = c.quant;
  a.gpus = c.gpus;
  a.cp_mode = c.cp_mode;
  a.cfg_parallel = c.cfg_parallel;
  a.graphs = c.graphs;
  std::string skip;
  auto skip_if = [&](bool bad, const std::string& reason) {
    if (bad && skip.empty()) skip = reason;
  };
  const ModelInfo& model = *find_model(settings.model);
  skip_if(c.cfg_parallel && !model.has_cfg,
          "cfg_parallel: " + settings.model + " has no classifier-free guidance branches to split");
  skip_if(c.cfg_parallel && model.has_cfg && c.gpus % 2 != 0,
          "cfg_parallel needs an even gpus count, got gpus=" + std::to_string(c.gpus));
  // CFG-parallel puts the two guidance branches on two halves of the GPUs; CP spans one half.
  int cp_gpus = (c.cfg_parallel && model.has_cfg) ? std::max(1, c.gpus / 2) : c.gpus;
  const std::string cp_gpus_text =
      (cp_gpus == c.gpus ? "gpus=" : "gpus/2=") + std::to_string(cp_gpus);
  auto degree_text = [](const char* name, int d) {
    return std::string(name) + "=" + std::to_string(d);
  };

  int u = c.ulysses_degree.value_or(0), r = c.ring_degree.value_or(0);
  if (c.cp_mode == "none") {
    skip_if(cp_gpus > 1, cp_gpus_text + " needs a cp_mode (ulysses, ring or usp)");
    skip_if(u > 1, degree_text("ulysses_degree", u) + " needs cp_mode ulysses or usp");
    skip_if(r > 1, degree_text("ring_degree", r) + " needs cp_mode ring or usp");
    u = u ? u : 1;
    r = r ? r : 1;
  } else {
    skip_if(cp_gpus == 1,
            "cp_mode=" + c.cp_mode + " needs more than one GPU (" + cp_gpus_text + ")");
    if (c.cp_mode == "ulysses") {
      u = u ? u : cp_gpus;
      r = r ? r : 1;
      skip_if(r != 1, degree_text("ring_degree", r) + " needs cp_mode ring or usp");
      skip_if(u != cp_gpus, degree_text("ulysses_degree", u) + " must equal " + cp_gpus_text +
                                " for cp_mode=ulysses");
    } else if (c.cp_mode == "ring") {
      r = r ? r : cp_gpus;
      u = u ? u : 1;
      skip_if(u != 1, degree_text("ulysses_degree", u) + " needs cp_mode ulysses or usp");
      skip_if(r != cp_gpus,
              degree_text("ring_degree", r) + " must equal " + cp_gpus_text + " for cp_mode=ring");
    } else {  // usp: one degree given derives the other
      if (u && !r && cp_gpus % u == 0) r = cp_gpus / u;
      if (r && !u && cp_gpus % r == 0) u = cp_gpus / r;
      skip_if(!u && !r, "cp_mode=usp needs a ulysses_degree or ring_degree axis");
      skip_if(!u || !r || u * r != cp_gpus,
              "ulysses_degree=" + (u ? std::to_string(u) : std::string("?")) +
                  " x ring_degree=" + (r ? std::to_string(r) : std::string("?")) +
                  " != " + cp_gpus_text + " for cp_mode=usp");
    }
  }
  a.ulysses_degree = u;
  a.ring_degree = r;
  return {a, skip};
}

// Every point of the cartesian product, in axis order (cache and its thresholds outermost), so the
// first point is the first value of every axis.
std::vector<RawChoice> cartesian(const SuiteAxes& axes) {
  std::vector<std::optional<int>> us, rs;
  for (int v : axes.ulysses_degree) us.push_back(v);
  for (int v : axes.ring_degree) rs.push_back(v);
  if (us.empty()) us.push_back(std::nullopt);
  if (rs.empty()) rs.push_back(std::nullopt);
  std::vector<RawChoice> out;
  for (const auto& cache : axes.cache) {
    std::vector<std::optional<double>> thresholds;
    if (cache == "none") {
      thresholds.push_back(std::nullopt);
    } else {
      for (double t : axes.cache_threshold.at(cache)) thresholds.push_back(t);
    }
    for (const auto& thr : thresholds)
      for (const auto& attention : axes.attention)
        for (const auto& quant : axes.quant)
          for (int gpus : axes.gpus)
            for (const auto& cp : axes.cp_mode)
              for (const auto& u : us)
                for (const auto& r : rs)
                  for (bool cfgp : axes.cfg_parallel)
                    for (bool graphs : axes.graphs)
                      out.push_back({attention, cache, thr, quant, gpus, cp, u, r, cfgp, graphs});
  }
  return out;
}

// The suite's baseline object with every missing axis at its first value.
RawChoice baseline_choice(const Suite& suite) {
  const SuiteAxes& axes = suite.axes;
  const json& b = suite.baseline;
  RawChoice c = cartesian(axes).front();
  auto fail = [&](const std::string& key, const std::string& message) {
    throw InputError(suite.file.string() + ": /baseline/" + key + ": " + message);
  };
  auto pick_string = [&](const char* key, const std::vector<std::string>& values,
                         std::string& field) {
    if (!b.contains(key)) return;
    if (!b[key].is_string() || !contains(values, b[key].get<std::string>()))
      fail(key, b[key].dump() + " is not on the suite's " + key +
                    " axis (allowed: " + join(values) + ")");
    field = b[key].get<std::string>();
  };
  auto pick_int = [&](const char* key, const std::vector<int>& values, auto& field) {
    if (!b.contains(key)) return;
    std::vector<std::string> allowed;
    for (int v : values) allowed.push_back(std::to_string(v));
    if (!b[key].is_number_integer() ||
        std::find(values.begin(), values.end(), b[key].get<int>()) == values.end())
      fail(key, b[key].dump() + " is not on the suite's " + key + " axis (allowed: " +
                    (allowed.empty() ? std::string("derived values only; leave it out")
                                     : join(allowed)) +
                    ")");
    field = b[key].get<int>();
  };
  auto pick_bool = [&](const char* key, const std::vector<bool>& values, bool& field) {
    if (!b.contains(key)) return;
    std::vector<std::string> allowed;
    for (bool v : values) allowed.push_back(v ? "true" : "false");
    if (!b[key].is_boolean() ||
        std::find(values.begin(), values.end(), b[key].get<bool>()) == values.end())
      fail(key, b[key].dump() + " is not on the suite's " + key +
                    " axis (allowed: " + join(allowed) + ")");
    field = b[key].get<bool>();
  };
  pick_string("attention", axes.attention, c.attention);
  pick_string("cache", axes.cache, c.cache);
  pick_string("quant", axes.quant, c.quant);
  pick_string("cp_mode", axes.cp_mode, c.cp_mode);
  pick_int("gpus", axes.gpus, c.gpus);
  pick_int("ulysses_degree", axes.ulysses_degree, c.ulysses_degree);
  pick_int("ring_degree", axes.ring_degree, c.ring_degree);
  pick_bool("cfg_parallel", axes.cfg_parallel, c.cfg_parallel);
  pick_bool("graphs", axes.graphs, c.graphs);
  if (c.cache == "none") {
    if (b.contains("cache_threshold"))
      fail("cache_threshold", "the baseline cache is \"none\", which takes no threshold");
    c.threshold.reset();
  } else {
    const auto& values = axes.cache_threshold.at(c.cache);
    c.threshold = values.front();
    if (b.contains("cache_threshold")) {
      std::vector<std::string> allowed;
      for (double v : values) allowed.push_back(format_number(v));
      const json& t = b["cache_threshold"];
      if (!t.is_number() ||
          std::find(values.begin(), values.end(), t.get<double>()) == values.end())
        fail("cache_threshold", t.dump() + " is not a " + c.cache +
                                    " threshold of the suite (allowed: " + join(allowed) + ")");
      c.threshold = t.get<double>();
    }
  }
  return c;
}

}  // namespace

std::string PromptSpec::describe() const {
  if (file) return "file:" + file->string();
  return "synthetic:" + std::to_string(tokens) + "/" + std::to_string(valid);
}

std::string AxisValues::config_id() const {
  std::string id = "cache=" + cache;
  if (cache_threshold) id += "/thr=" + format_number(*cache_threshold);
  id += "/attn=" + attention + "/quant=" + quant + "/gpus=" + std::to_string(gpus);
  if (cp_mode != "none" || ulysses_degree != 1 || ring_degree != 1) {
    auto degree = [](int d) { return d ? std::to_string(d) : std::string("auto"); };
    id += "/cp=" + cp_mode + "/u=" + degree(ulysses_degree) + "/r=" + degree(ring_degree);
  }
  if (cfg_parallel) id += "/cfgp=on";
  if (graphs) id += "/graphs=on";
  return id;
}

json AxisValues::to_json() const {
  json j = {{"attention", attention},
            {"cache", cache},
            {"quant", quant},
            {"gpus", gpus},
            {"cp_mode", cp_mode},
            {"ulysses_degree", ulysses_degree},
            {"ring_degree", ring_degree},
            {"cfg_parallel", cfg_parallel},
            {"graphs", graphs}};
  j["cache_threshold"] = cache_threshold ? json(*cache_threshold) : json(nullptr);
  return j;
}

json RunConfig::to_json() const {
  const RunSettings& s = settings;
  json j = {{"model", s.model},
            {"preset", s.preset},
            {"weights", s.weights == "random" ? std::string("random") : s.checkpoint->string()},
            {"dtype", s.dtype},
            {"device", s.device},
            {"height", s.height},
            {"width", s.width},
            {"frames", s.frames},
            {"steps", s.steps},
            {"seed", s.seed},
            {"guidance", s.guidance},
            {"prompt", s.prompt.describe()},
            {"warmup", s.warmup},
            {"repeats", s.repeats},
            {"decode", s.decode},
            {"axes", axes.to_json()}};
  if (s.checkpoint) j["checkpoint"] = s.checkpoint->string();
  if (s.noise) j["noise"] = s.noise->string();
  json opts = json::object();
  if (s.cache_options.warmup_steps) opts["warmup_steps"] = *s.cache_options.warmup_steps;
  if (s.cache_options.max_cached_steps)
    opts["max_cached_steps"] = *s.cache_options.max_cached_steps;
  if (s.cache_options.max_consecutive_cached)
    opts["max_consecutive_cached"] = *s.cache_options.max_consecutive_cached;
  if (!opts.empty()) j["cache_options"] = opts;
  if (s.teacache_coefficients) j["teacache_coefficients"] = *s.teacache_coefficients;
  if (s.profile) j["profile"] = true;
  return j;
}

Suite parse_suite(const json& doc, const fs::path& file) { return SuiteReader(doc, file).read(); }

namespace {

json read_suite_json(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw InputError(file.string() + ": cannot open the suite file");
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    throw InputError(file.string() + ": not valid JSON: " + e.what());
  }
}

}  // namespace

Suite load_suite(const fs::path& file) { return parse_suite(read_suite_json(file), file); }

std::optional<SuiteCollection> load_suite_collection(const fs::path& file) {
  const json doc = read_suite_json(file);
  if (!doc.is_object() || !doc.contains("suites")) return std::nullopt;
  for (const auto& [key, value] : doc.items()) {
    if (key != "name" && key != "description" && key != "suites")
      throw InputError(file.string() + ": /" + key +
                       ": unknown key in a suite collection (allowed: name, description, suites)");
  }
  SuiteCollection collection;
  collection.name = file.stem().string();
  if (doc.contains("name")) {
    if (!doc["name"].is_string() || doc["name"].get<std::string>().empty())
      throw InputError(file.string() + ": /name: expected a non-empty string");
    collection.name = doc["name"].get<std::string>();
  }
  const auto& list = doc["suites"];
  if (!list.is_array() || list.empty())
    throw InputError(file.string() + ": /suites: expected a non-empty array of suite files");
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string where = file.string() + ": /suites/" + std::to_string(i);
    if (!list[i].is_string()) throw InputError(where + ": expected a suite file name");
    const fs::path sub = file.parent_path() / list[i].get<std::string>();
    if (!fs::exists(sub)) throw InputError(where + ": " + sub.string() + " does not exist");
    if (load_suite_collection(sub))
      throw InputError(where + ": " + sub.string() + " is itself a collection");
    collection.suites.push_back(sub);
  }
  return collection;
}

std::vector<RunConfig> expand_matrix(const Suite& suite) {
  std::vector<RunConfig> configs;
  std::set<std::string> seen;
  for (const RawChoice& choice : cartesian(suite.axes)) {
    auto [axes, skip] = resolve(choice, suite.settings);
    std::string id = axes.config_id();
    if (!seen.insert(id).second) continue;  // e.g. derived and explicit degree giving one config
    configs.push_back({suite.name, suite.settings, axes, id, false, skip});
  }
  auto [baseline_axes, baseline_skip] = resolve(baseline_choice(suite), suite.settings);
  std::string baseline_id = baseline_axes.config_id();
  if (!baseline_skip.empty())
    throw InputError(suite.file.string() + ": /baseline: the baseline config " + baseline_id +
                     " cannot run: " + baseline_skip);
  for (auto& c : configs) c.baseline = c.id == baseline_id;
  return configs;
}

namespace {

std::vector<std::string> split_terms(const std::string& text) {
  std::vector<std::string> terms;
  std::string current;
  for (char ch : text) {
    if (ch == ',' || std::isspace(static_cast<unsigned char>(ch))) {
      if (!current.empty()) terms.push_back(current);
      current.clear();
    } else {
      current += ch;
    }
  }
  if (!current.empty()) terms.push_back(current);
  return terms;
}

std::optional<bool> parse_bool_word(const std::string& s) {
  if (s == "on" || s == "true" || s == "1") return true;
  if (s == "off" || s == "false" || s == "0") return false;
  return std::nullopt;
}

std::optional<double> parse_number(const std::string& s) {
  try {
    size_t used = 0;
    double v = std::stod(s, &used);
    if (used == s.size()) return v;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

bool term_matches(const AxisValues& a, const std::string& id, const std::string& term) {
  // A term with a '/' is a piece of an id ("thr=0.1/attn=math"); so is one without '='.
  auto eq = term.find('=');
  if (eq == std::string::npos || term.find('/') != std::string::npos)
    return id.find(term) != std::string::npos;
  std::string key = term.substr(0, eq), value = term.substr(eq + 1);
  static const std::map<std::string, std::string> aliases = {
      {"attn", "attention"},   {"thr", "cache_threshold"}, {"cp", "cp_mode"},
      {"u", "ulysses_degree"}, {"r", "ring_degree"},       {"cfgp", "cfg_parallel"}};
  if (auto it = aliases.find(key); it != aliases.end()) key = it->second;
  if (key == "attention") return a.attention == value;
  if (key == "cache") return a.cache == value;
  if (key == "quant") return a.quant == value;
  if (key == "cp_mode") return a.cp_mode == value;
  if (key == "cache_threshold") {
    auto v = parse_number(value);
    return v && a.cache_threshold && *v == *a.cache_threshold;
  }
  auto int_eq = [&](int field) {
    auto v = parse_number(value);
    return v && *v == field;
  };
  if (key == "gpus") return int_eq(a.gpus);
  if (key == "ulysses_degree") return int_eq(a.ulysses_degree);
  if (key == "ring_degree") return int_eq(a.ring_degree);
  auto bool_eq = [&](bool field) {
    auto v = parse_bool_word(value);
    return v && *v == field;
  };
  if (key == "cfg_parallel") return bool_eq(a.cfg_parallel);
  if (key == "graphs") return bool_eq(a.graphs);
  std::vector<std::string> allowed = axis_names();
  for (const auto& [alias, full] : aliases) allowed.push_back(alias);
  throw InputError("--filter: unknown key \"" + key + "\" in \"" + term +
                   "\" (allowed: " + join(allowed) + ")");
}

}  // namespace

bool matches_filter(const RunConfig& config, const std::string& filter) {
  for (const auto& term : split_terms(filter))
    if (!term_matches(config.axes, config.id, term)) return false;
  return true;
}

std::vector<RunConfig> filter_configs(const std::vector<RunConfig>& configs,
                                      const std::string& filter) {
  std::vector<RunConfig> out;
  for (const auto& c : configs)
    if (matches_filter(c, filter)) out.push_back(c);
  return out;
}

std::string plan_text(const std::vector<RunConfig>& configs) {
  size_t width = 0;
  for (const auto& c : configs) width = std::max(width, c.id.size());
  std::ostringstream out;
  for (const auto& c : configs) {
    std::string line = c.id;
    if (c.baseline || c.skipped()) line += std::string(width - c.id.size(), ' ');
    if (c.baseline) line += "  [baseline]";
    if (c.skipped()) line += "  skip: " + c.skip_reason;
    out << line << "\n";
  }
  return out.str();
}

}  // namespace ditbench
