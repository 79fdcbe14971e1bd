#pragma once
// The run protocol (DESIGN.md): for each config of the matrix, build the pipeline with the
// config's optimizations, run warmup and timed repeats under the StageTimer, score the frames
// against the baseline's, and append one ResultRecord to results.jsonl as soon as it is done.
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "harness/suite.h"

namespace ditbench {

struct RunOptions {
  std::filesystem::path out_dir;  // results.jsonl, report.md, frames/
  std::string filter;             // --filter expression (empty = all)
  bool resume = false;            // skip configs with a finished record in results.jsonl
  bool progress = true;           // progress lines with ETA on stderr
  // --gpus N: every multi-GPU value of the suite's gpus axis becomes N (a suite without one gets
  // N added); single-GPU configs, the baseline among them, stay.
  std::optional<int> gpus;
  // Called on every rank thread of a multi-rank config before its generations; tests throw from
  // it to inject a rank failure.
  std::function<void(const RunConfig& config, int rank)> rank_hook;
};

struct RunSummary {
  int ok = 0, failed = 0, skipped = 0, resumed = 0;
  bool interrupted = false;
};

// Runs a validated suite. A config with gpus = W > 1 runs W ranks (one thread each: NCCL on CUDA,
// in-process communicators on the CPU, where W may exceed the GPU count) that all run the same
// generation on their shard of the sequence; rank 0's frames, quality and timings are recorded,
// with the communication time as stage "comm". A rank that fails stops every rank and the config
// is recorded as failed naming it. Bad input found while running (a prompt file without its
// tensors, a noise tensor of the wrong shape) throws InputError; a config that fails is recorded as
// failed and the run goes on.
RunSummary run_suite(const Suite& suite, const RunOptions& options);

// The device a suite's "device" setting means on this machine ("auto": CUDA when present).
at::Device resolve_device(const std::string& setting);

}  // namespace ditbench
