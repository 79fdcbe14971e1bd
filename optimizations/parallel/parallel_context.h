#pragma once
// The context-parallel layout of the current rank thread, for models: a model reads it in
// prepare() to shard its token sequence and in finish() to gather it back. The runner installs it
// per rank thread (as AttentionScope installs the attention wrapper), so the block interface stays
// unchanged and single-rank runs see no layout at all.
#include "optimizations/parallel/context_parallel.h"

namespace ditbench {

// This thread's groups, or null when the run is not parallel (one rank).
const ParallelGroups* current_parallel_groups();

// The sequence group of this thread when it spans more than one rank, else null: what a model
// shards its tokens over.
Communicator* current_sequence_group();

// Installs `groups` (not owned; must outlive the scope) for the current thread and restores the
// previous ones on destruction.
class ParallelScope {
 public:
  explicit ParallelScope(const ParallelGroups* groups);
  ~ParallelScope();
  ParallelScope(const ParallelScope&) = delete;
  ParallelScope& operator=(const ParallelScope&) = delete;

 private:
  const ParallelGroups* saved_;
};

}  // namespace ditbench
