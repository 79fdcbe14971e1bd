#pragma once
// A suite is what a user writes in suite.json: the settings every run shares and the typed axes
// whose cartesian product is the benchmark matrix. parse_suite() validates everything once, so the
// runner only ever sees a well-formed Suite and its expanded RunConfigs; expand_matrix() turns
// invalid combinations into configs that carry a skip reason instead of dropping them (nvbench).
#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ditbench {

// What the harness needs to know about a model family to validate a suite: a view of the one
// family table, models/pipeline.h model_families() (new families add their line there).
struct ModelInfo {
  std::string name;                  // suite "model" value, e.g. "hunyuan-video"
  std::vector<std::string> presets;  // suite "preset" values for this family
  int spatial_multiple = 16;         // height and width must be multiples (VAE stride x patch)
  int temporal_stride = 1;           // (frames - 1) must be a multiple (VAE temporal stride)
  bool has_cfg = false;              // runs two guidance branches, so cfg_parallel can split them
};

// Every model family this build can validate suites for.
const std::vector<ModelInfo>& known_models();
// The entry for `name`, or nullptr when unknown.
const ModelInfo* find_model(const std::string& name);

// Axis value lists come from the code that serves them: attention_backend_names()
// (optimizations/attention/backends.h), cache_policy_names() (optimizations/cache/cache_policy.h),
// quant_mode_names() (optimizations/quant/quant.h); cp_mode_names() is the suite's own.
const std::vector<std::string>& cp_mode_names();  // none, ulysses, ring, usp
// Threshold a cache policy gets when the suite names the cache but gives no threshold: the value
// each reference implementation recommends for HunyuanVideo (ParaAttention 0.06, TeaCache 0.1).
double default_cache_threshold(const std::string& cache_policy);

// Text conditioning: a safetensors file (prompt_embeds, prompt_attention_mask,
// pooled_prompt_embeds) or seeded synthetic embeddings with `tokens` positions, `valid` unmasked.
struct PromptSpec {
  std::optional<std::filesystem::path> file;  // absolute once parsed
  int tokens = 256;
  int valid = 256;
  // "file:<path>" or "synthetic:<tokens>/<valid>", as written to records' prompt_source.
  std::string describe() const;
};

// Limits of the caches' reuse; an absent value means the policy's own default.
struct SuiteCacheOptions {
  std::optional<int> warmup_steps;            // steps that always compute before reuse may start
  std::optional<int> max_cached_steps;        // total reused steps allowed
  std::optional<int> max_consecutive_cached;  // reused steps in a row allowed
};

// Settings shared by every config of a suite, with their documented defaults.
struct RunSettings {
  std::string model;                                 // a known_models() name
  std::string preset;                                // set when the suite names a preset
  std::optional<std::filesystem::path> checkpoint;   // diffusers folder, absolute once parsed
  std::string weights = "random";                    // "random" | "checkpoint"
  std::string dtype = "bfloat16";                    // "float32" | "bfloat16" | "float16"
  std::string device = "auto";                       // "auto" | "cpu" | "cuda"
  int height = 0, width = 0, frames = 0, steps = 0;  // required, positive
  int64_t seed = 0;
  double guidance = 6.0;
  PromptSpec prompt;                           // default: synthetic 256/256
  std::optional<std::filesystem::path> noise;  // safetensors with a `noise` tensor
  int warmup = 1;                              // untimed runs per config, >= 0
  int repeats = 3;                             // timed runs per config, >= 1
  bool decode = true;                          // run the VAE
  bool save_frames = true;
  // One extra generation per config under the CUPTI kernel profiler (harness/profile.h): per-stage
  // GPU time by kernel category in the record, the kernels in the Chrome trace.
  bool profile = false;
  SuiteCacheOptions cache_options;
  std::optional<std::string> teacache_coefficients;  // a named set ("hunyuan-video") or c0..c4
  std::optional<double> timeout_s;                   // per config, > 0
  std::optional<double> fps;  // frame rate of written videos, > 0; default: the pipeline's
  // External quality reference every config is scored against instead of the baseline's frames:
  // a video, a folder of frames or file.safetensors[:tensor] (load_frames), absolute once parsed.
  std::optional<std::string> reference;
  bool reference_resize = false;  // resize the reference to the generated shape instead of failing
};

// The suite's axes. A degree axis left empty is derived per config from gpus and cp_mode.
struct SuiteAxes {
  std::vector<std::string> attention{"sdpa"};
  std::vector<std::string> cache{"none"};
  std::map<std::string, std::vector<double>> cache_threshold;  // policy -> thresholds (not "none")
  std::vector<std::string> quant{"none"};
  std::vector<int> gpus{1};
  std::vector<std::string> cp_mode{"none"};
  std::vector<int> ulysses_degree;  // empty: derived
  std::vector<int> ring_degree;     // empty: derived
  std::vector<bool> cfg_parallel{false};
  std::vector<bool> graphs{false};
};

// One value per axis: what a single run varies.
struct AxisValues {
  std::string attention = "sdpa";
  std::string cache = "none";
  std::optional<double> cache_threshold;  // absent exactly when cache == "none"
  std::string quant = "none";
  int gpus = 1;
  std::string cp_mode = "none";
  int ulysses_degree = 1;  // resolved (derived or given)
  int ring_degree = 1;
  bool cfg_parallel = false;
  bool graphs = false;

  // Stable readable id, e.g. "cache=fbcache/thr=0.06/attn=sdpa/quant=none/gpus=1"; parallel
  // settings, cfg_parallel and graphs appear only when they differ from a single-GPU plain run.
  std::string config_id() const;
  // {"attention": ..., "cache": ..., ...}: the record's config.axes object.
  nlohmann::json to_json() const;
};

struct Suite {
  std::filesystem::path file;  // where it was read from (messages name it)
  std::string name;            // default: file stem
  RunSettings settings;
  SuiteAxes axes;
  nlohmann::json baseline = nlohmann::json::object();  // axis name -> value; missing: first value
};

struct RunConfig {
  std::string suite;
  RunSettings settings;
  AxisValues axes;
  std::string id;           // axes.config_id()
  bool baseline = false;    // the config every other is scored and timed against
  std::string skip_reason;  // non-empty: recorded as skipped, never run

  bool skipped() const { return !skip_reason.empty(); }
  // The record's "config" object (DESIGN.md): model, preset, weights, dtype, device, sizes,
  // steps, seed, guidance, axes, ...
  nlohmann::json to_json() const;
};

// Parses and validates a suite. Every problem throws InputError naming `file`, the JSON path and
// what is allowed. Relative paths resolve against `file`'s folder.
Suite parse_suite(const nlohmann::json& doc, const std::filesystem::path& file);
Suite load_suite(const std::filesystem::path& file);

// A suite collection: {"name", "description", "suites": [paths relative to the file]} runs each
// listed suite in turn (e.g. suites/models-cpu.json: every model family's tiny suite). Returns the
// resolved suite files, or nothing when `file` is an ordinary suite. InputError names the file and
// the JSON path of a bad entry (not a string, missing file, a collection inside a collection).
struct SuiteCollection {
  std::string name;
  std::vector<std::filesystem::path> suites;
};
std::optional<SuiteCollection> load_suite_collection(const std::filesystem::path& file);

// The cartesian product of the axes, duplicates removed, invalid combinations kept with a skip
// reason, exactly one config marked baseline. Throws InputError when the suite's baseline names
// no config of the matrix or a skipped one.
std::vector<RunConfig> expand_matrix(const Suite& suite);

// --filter: whitespace- or comma-separated terms, all of which must match. "key=value" compares
// one axis (full axis names or the id's short keys: attn, thr, cp, u, r, cfgp; thresholds compare
// as numbers; bools as on/off/true/false); a term with '/' or without '=' is a substring of the
// config id. An unknown key is InputError.
bool matches_filter(const RunConfig& config, const std::string& filter);
std::vector<RunConfig> filter_configs(const std::vector<RunConfig>& configs,
                                      const std::string& filter);

// `ditbench plan`: one line per config: id, "[baseline]" marker, "skip: reason".
std::string plan_text(const std::vector<RunConfig>& configs);

}  // namespace ditbench
