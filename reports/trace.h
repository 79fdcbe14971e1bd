#pragma once
// Chrome trace (the JSON Trace Event Format that Perfetto and chrome://tracing open) of one timed
// run: every stage and step of the StageTimer as a complete event ("ph": "X") on a host-clock
// track, and on a GPU track when CUDA events timed the stages.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

#include "harness/timer.h"

namespace ditbench {

// The StageTimer keeps each span's duration and nesting depth but not its start time, so spans
// are laid out by their order: the first child starts where its parent starts and each next
// sibling where the previous one ended. Gaps between siblings (host work outside any stage) thus
// show at the end of the parent instead of where they happened; durations are exact. A child that
// would end after its parent (GPU spans on another stream) is cut at the parent's end, its full
// duration kept in args. ts and dur are microseconds.
nlohmann::json chrome_trace(const TimingResult& timing, const std::string& config_id);

// Writes chrome_trace() to OUT_DIR/traces/<file_stem>.json and returns that path relative to
// OUT_DIR (what record.artifacts.trace holds). Throws std::runtime_error when it cannot write.
std::string write_chrome_trace(const std::filesystem::path& out_dir, const std::string& file_stem,
                               const TimingResult& timing, const std::string& config_id);

}  // namespace ditbench
