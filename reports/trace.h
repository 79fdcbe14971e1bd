#pragma once
// Chrome trace (the JSON Trace Event Format that Perfetto and chrome://tracing open) of one timed
// run: every stage and step of the StageTimer as a complete event ("ph": "X") on a host-clock
// track, and on a GPU track when CUDA events timed the stages.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "harness/timer.h"

namespace ditbench {

// One GPU activity of a profiled generation (harness/profile.h): a slice on its stream's track.
struct KernelSlice {
  std::string name;      // short kernel name, "memcpy DtoD", "memset"
  std::string category;  // harness/profile.h category_name()
  std::string stage;     // the innermost stage that launched it ("" outside every stage)
  double start_us = 0;   // from the profiled generation's first activity
  double dur_us = 0;
  uint32_t stream = 0;
};

// The StageTimer keeps each span's duration and nesting depth but not its start time, so spans
// are laid out by their order: the first child starts where its parent starts and each next
// sibling where the previous one ended. Gaps between siblings (host work outside any stage) thus
// show at the end of the parent instead of where they happened; durations are exact. A child that
// would end after its parent (GPU spans on another stream) is cut at the parent's end, its full
// duration kept in args. ts and dur are microseconds. Kernel slices, when given, go on one track
// per CUDA stream of a second process ("profiled generation"): they come from an extra
// generation, on their own clock.
nlohmann::json chrome_trace(const TimingResult& timing, const std::string& config_id,
                            const std::vector<KernelSlice>& kernels = {});

// Writes chrome_trace() to OUT_DIR/traces/<file_stem>.json and returns that path relative to
// OUT_DIR (what record.artifacts.trace holds). Throws std::runtime_error when it cannot write.
std::string write_chrome_trace(const std::filesystem::path& out_dir, const std::string& file_stem,
                               const TimingResult& timing, const std::string& config_id,
                               const std::vector<KernelSlice>& kernels = {});

}  // namespace ditbench
