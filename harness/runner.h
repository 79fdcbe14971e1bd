#pragma once
// The run protocol (DESIGN.md): for each config of the matrix, build the pipeline with the
// config's optimizations, run warmup and timed repeats under the StageTimer, score the frames
// against the baseline's, and append one ResultRecord to results.jsonl as soon as it is done.
#include <filesystem>
#include <string>

#include "harness/suite.h"

namespace ditbench {

struct RunOptions {
  std::filesystem::path out_dir;  // results.jsonl, report.md, frames/
  std::string filter;             // --filter expression (empty = all)
  bool resume = false;            // skip configs with a finished record in results.jsonl
  bool progress = true;           // progress lines with ETA on stderr
};

struct RunSummary {
  int ok = 0, failed = 0, skipped = 0, resumed = 0;
  bool interrupted = false;
};

// Runs a validated suite. Bad input found while running (a prompt file without its tensors, a
// noise tensor of the wrong shape) throws InputError; a config that fails is recorded as failed
// and the run goes on.
RunSummary run_suite(const Suite& suite, const RunOptions& options);

// The device a suite's "device" setting means on this machine ("auto": CUDA when present).
at::Device resolve_device(const std::string& setting);

}  // namespace ditbench
