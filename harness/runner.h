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
  // --comm-timeout: how long a rank's communication waits for its peers before it fails (and
  // stops the other ranks).
  double comm_timeout_s = 600;
  // Called on every rank thread of a multi-rank config before its generations; tests throw from
  // it to inject a rank failure.
  std::function<void(const RunConfig& config, int rank)> rank_hook;
};

struct RunSummary {
  int ok = 0, failed = 0, skipped = 0, resumed = 0;
  bool interrupted = false;
  bool writes_results = true;  // false on the ranks other than 0 of a multi-process launch
};

// Runs a validated suite. A config with gpus = W > 1 runs W ranks that all run the same
// generation on their shard of the sequence; rank 0's frames, quality and timings are recorded,
// with the communication time as stage "comm" and per step as timings.comm_steps_s.
//
// Started alone, the process runs the W ranks as threads (NCCL on CUDA, in-process communicators
// on the CPU, where W may exceed the GPU count); a rank that fails stops every rank, the config
// is recorded as failed naming it, and the sweep goes on.
//
// Started by torchrun or srun (launch_environment()), the process is one rank of the launch: the
// ranks meet through the launch's TCPStore and run the same matrix in the same order; a config
// of gpus G runs on ranks 0..G-1 (NCCL on CUDA, the store transport on the CPU) while the others
// wait at a barrier, a config of more ranks than the launch has is a recorded skip, and only rank
// 0 writes results, artifacts and the report. A rank that fails publishes it and every rank
// stops: rank 0 records the config as failed and writes its report, and every rank throws
// CommError naming the rank that failed and the operation each was in.
//
// Bad input found while running (a prompt file without its tensors, a noise tensor of the wrong
// shape) throws InputError; a config that fails otherwise is recorded as failed and the run goes
// on.
RunSummary run_suite(const Suite& suite, const RunOptions& options);

// The device a suite's "device" setting means on this machine ("auto": CUDA when present).
at::Device resolve_device(const std::string& setting);

}  // namespace ditbench
