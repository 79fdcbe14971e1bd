#pragma once
// One result line of results.jsonl (DESIGN.md "Run protocol and records"; schema
// "ditbench.result/1"). The runner fills a ResultRecord per config, ResultsWriter appends it as
// one line and syncs it to disk, and every reporter reads records back with read_results().
// The structs are plain data (reports/ uses them without linking the harness); JSON conversion
// lives in record.cpp.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "harness/stats.h"

namespace ditbench {

inline constexpr const char* kResultSchema = "ditbench.result/1";

enum class RunStatus { kOk, kFailed, kSkipped };
inline const char* to_string(RunStatus status) {
  switch (status) {
    case RunStatus::kOk:
      return "ok";
    case RunStatus::kFailed:
      return "failed";
    case RunStatus::kSkipped:
      return "skipped";
  }
  return "?";
}

struct TimingsRecord {
  SampleStats e2e;                            // one sample per timed repeat
  std::map<std::string, SampleStats> stages;  // "denoise", "vae_decode", ... -> per repeat
  std::vector<std::vector<double>> steps_s;   // [repeat][step] seconds
  // [repeat][step] seconds of those steps spent in (or waiting for) communication, for runs of
  // several ranks ("comm_steps_s"; empty, and absent from the JSON, on one rank).
  std::vector<std::vector<double>> comm_steps_s;
  // [step] FLOPs of the transformer stage on the writing rank, from the last timed repeat
  // ("step_flops"; the GEMMs of the Linear type and the attention calls as they ran: a reused
  // step counts what it still computed, a rank of a context-parallel run its own share).
  std::vector<double> step_flops;
};

struct CacheStepEntry {
  int step = 0;
  std::optional<double> signal;  // null when the policy had nothing to compare (first step)
  bool reused = false;
  std::optional<double> accumulated;  // TeaCache's accumulated distance
  // Relative L1 change of the model output vs the previous step's, when both steps computed
  // ("output_change"; what `ditbench fit-teacache` fits the signal against).
  std::optional<double> output_change;
};

struct CacheRecord {
  std::string policy;  // "fbcache", "teacache", ...
  std::optional<double> threshold;
  int computed_steps = 0;
  int reused_steps = 0;
  std::vector<CacheStepEntry> per_step;
  std::optional<std::string> coefficients;  // TeaCache's coefficient set (a name or c0..c4)
};

struct QualityRecord {
  std::string reference = "baseline";  // "baseline" or the reference video's path
  std::optional<double> psnr_mean;     // null when identical (infinite PSNR)
  std::optional<double> psnr_min;
  double ssim_mean = 0;
  double ssim_min = 0;
  bool identical = false;  // every frame bit-identical to the reference
};

struct ArtifactsRecord {
  // Relative to the results' folder: frames = the exact f32 frames (safetensors), video = the
  // MP4 (or lossless MKV), trace = the Chrome trace, png = the folder of 8-bit PNG frames.
  std::optional<std::string> frames, video, trace;
  std::optional<std::string> note;  // what this build could not write, and why
  std::optional<std::string> png;
};

struct AttentionRecord {
  std::string requested;             // the suite's backend
  std::vector<std::string> kernels;  // what actually served the calls
};

// Kernel profile of one extra generation (suite key "profile"; harness/profile.h).
// Its kernel categories in report order (the order of harness/profile.h's KernelCategory).
inline const std::vector<std::string>& profile_categories() {
  static const std::vector<std::string> names = {
      "gemm", "attention",   "communication", "norm_modulation",
      "rope", "elementwise", "copy",          "other"};
  return names;
}

struct ProfileStageEntry {
  double wall_s = 0;         // the stage's time (GPU time when measured), summed over its spans
  double busy_s = 0;         // the union of its kernels' intervals
  double launch_gaps_s = 0;  // wall_s - busy_s per span (at least 0), summed
  int64_t kernels = 0;
  std::map<std::string, double> category_s;  // category -> summed kernel seconds
};

struct ProfileKernelEntry {
  std::string name;  // short kernel name
  std::string category;
  double total_s = 0;
  int64_t count = 0;
};

struct ProfileRecord {
  std::string source = "cupti";
  std::map<std::string, ProfileStageEntry> stages;  // stage name -> breakdown
  std::vector<ProfileKernelEntry> top_kernels;      // by total time, longest first
  int64_t kernels = 0;                              // activities of the generation
  double unattributed_s = 0;                        // kernel time launched outside every stage
  std::optional<std::string> note;                  // why there is no breakdown (CPU, no CUPTI)
};

// Clock, power and temperature of one GPU while a config's timed repeats ran (NVML samples;
// harness/gpu_telemetry.h).
struct GpuTelemetryEntry {
  int device = 0;  // CUDA device index in the writing process
  int64_t samples = 0;
  double sm_clock_mhz_median = 0, sm_clock_mhz_min = 0, sm_clock_mhz_max = 0;
  std::optional<double> max_sm_clock_mhz;  // the clock the card reaches unloaded
  double power_w_mean = 0, power_w_max = 0;
  std::optional<double> power_limit_w;  // the limit the driver enforces
  double temperature_c_max = 0;
  // Fractions of the samples in which the driver held the clocks down for power (software power
  // cap, hardware power brake) and for temperature (software or hardware thermal slowdown).
  double power_capped = 0, thermal_slowdown = 0;
};

struct TelemetryRecord {
  double period_s = 0;  // between samples
  std::vector<GpuTelemetryEntry> devices;
  std::optional<std::string> note;  // why there are no samples (no NVML library, ...)
};

// The lowest median SM clock of the record's GPUs (the slowest one sets a multi-GPU run's pace);
// none without readings.
inline std::optional<double> slowest_sm_clock_mhz(const std::optional<TelemetryRecord>& t) {
  std::optional<double> lowest;
  if (t) {
    for (const auto& d : t->devices)
      lowest = lowest ? std::min(*lowest, d.sm_clock_mhz_median) : d.sm_clock_mhz_median;
  }
  return lowest;
}

struct ResultRecord {
  std::string schema = kResultSchema;
  std::string suite;
  std::string config_id;
  bool baseline = false;
  nlohmann::json config = nlohmann::json::object();  // RunConfig::to_json()
  RunStatus status = RunStatus::kOk;
  std::string reason;                             // why skipped/failed (may note ok caveats)
  nlohmann::json env = nlohmann::json::object();  // capture_environment()
  std::optional<TimingsRecord> timings;
  std::optional<int64_t> peak_bytes;  // "memory": {"peak_bytes": n}
  std::optional<CacheRecord> cache;
  std::optional<QualityRecord> quality;
  std::optional<ArtifactsRecord> artifacts;
  std::optional<std::string> weights_note;   // e.g. "random weights: ..."
  std::optional<std::string> prompt_source;  // PromptSpec::describe()
  std::optional<AttentionRecord> attention;
  std::optional<ProfileRecord> profile;
  std::optional<TelemetryRecord> telemetry;  // CUDA runs: the GPUs during the timed repeats
  // Keys this version does not know, kept so that reading and rewriting a newer record loses
  // nothing.
  nlohmann::json extra = nlohmann::json::object();
};

nlohmann::json to_json(const ResultRecord& record);
// Throws InputError naming the JSON path of the first bad field.
ResultRecord record_from_json(const nlohmann::json& j);
// The "cache" object alone, e.g. from the cache library's cache_record_json(policy).
CacheRecord cache_record_from_json(const nlohmann::json& j);

// Appends records to DIR/results.jsonl, one line each, flushed and fsync'ed per record so that a
// crash loses at most the config in flight. A partial last line left by an earlier crash is cut
// off when the file is opened, so appends never glue onto it.
class ResultsWriter {
 public:
  explicit ResultsWriter(const std::filesystem::path& dir);
  ~ResultsWriter();
  ResultsWriter(const ResultsWriter&) = delete;
  ResultsWriter& operator=(const ResultsWriter&) = delete;

  void append(const ResultRecord& record);
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

// Reads a JSONL of records. A truncated last line (no newline, not valid JSON: a crash mid-write)
// is ignored with a warning on stderr; any other bad line is InputError naming file and line.
std::vector<ResultRecord> read_results(const std::filesystem::path& path);

// Config ids --resume skips: those with an ok or skipped record (and failed ones when
// include_failed), so failed configs run again by default. A missing file gives an empty set.
std::set<std::string> finished_config_ids(const std::filesystem::path& path,
                                          bool include_failed = false);

}  // namespace ditbench
