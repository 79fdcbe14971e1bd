#pragma once
// Joining a multi-process launch (torchrun, srun): one process per rank, meeting through a c10d
// TCPStore at MASTER_ADDR:MASTER_PORT. The launch hands each config the communicator of its ranks
// (NCCL between GPUs, the store transport on the CPU), a barrier at which the ranks outside a
// config's group wait, and one abort flag in the store: a rank that fails publishes it, and every
// other rank's pending or next wait ends with CommAborted naming that rank, so no rank hangs.
#include <ATen/ATen.h>

#include <memory>
#include <optional>
#include <string>

#include "optimizations/parallel/communicator.h"

namespace ditbench {

struct LaunchEnvironment {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr;
  int master_port = 0;
  std::string launcher;      // "torchrun" (RANK, WORLD_SIZE, ...) or "srun" (SLURM_*)
  bool agent_store = false;  // torchrun's agent serves the store; otherwise rank 0 serves it
  std::string run_tag;       // tells restarts of one torchrun job apart in its agent's store
};

// The launch this process belongs to, read from RANK, WORLD_SIZE, LOCAL_RANK (torchrun) or
// SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID (srun), and MASTER_ADDR, MASTER_PORT. Null for a
// process started alone (neither WORLD_SIZE nor SLURM_NTASKS with SLURM_PROCID, or a world of 1).
// Throws InputError naming a variable that is missing or not a valid number.
std::optional<LaunchEnvironment> launch_environment();

class ProcessLaunch {
 public:
  // Connects to the store (serving it on rank 0 unless torchrun's agent does) and waits, up to
  // options.timeout, until every rank has joined; the error names the ranks that did not.
  ProcessLaunch(const LaunchEnvironment& env, CommOptions options);
  // Leaves the launch; before completed(), as a failure that every other rank sees (a rank that
  // leaves early, by an exception, must not leave the others waiting for it). Rank 0, which
  // serves the store, first waits for the other ranks to leave, so that none loses the store
  // while it still reads the abort flag or a barrier.
  ~ProcessLaunch();
  // This rank has done its whole part of the launch.
  void completed();
  ProcessLaunch(const ProcessLaunch&) = delete;
  ProcessLaunch& operator=(const ProcessLaunch&) = delete;

  int rank() const;
  int size() const;
  const LaunchEnvironment& environment() const;
  const CommOptions& options() const;

  // The communicator of ranks 0..n-1, of which this rank must be one: NCCL on a CUDA device (this
  // process's GPU, LOCAL_RANK), the store transport on the CPU. Only its members call this; it is
  // made on first use and kept for later configs.
  Communicator& group(int n, const at::Device& device);
  // Rank 0's `value` on every rank: what rank 0 alone decides (the matrix, the configs done).
  std::string from_rank0(const std::string& name, const std::string& value);
  // Every rank calls it after every config, in the same order. No time limit (a config runs as
  // long as it runs), but it throws CommAborted as soon as a rank has failed.
  void barrier();
  // This rank failed with `reason`: publishes it (the first failure of the launch wins) and aborts
  // this rank's communicators, so every rank's pending and next operation ends with CommAborted.
  void abort(const std::string& reason);
  // The published failure as CommAborted, if there is one.
  void check_failure(const std::string& op);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace ditbench
