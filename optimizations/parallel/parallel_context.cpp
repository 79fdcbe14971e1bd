#include "optimizations/parallel/parallel_context.h"

namespace ditbench {
namespace {

thread_local const ParallelGroups* t_groups = nullptr;

}  // namespace

const ParallelGroups* current_parallel_groups() { return t_groups; }

Communicator* current_sequence_group() {
  if (!t_groups || !t_groups->sequence || t_groups->sequence->size() < 2) return nullptr;
  return t_groups->sequence.get();
}

ParallelScope::ParallelScope(const ParallelGroups* groups) : saved_(t_groups) { t_groups = groups; }

ParallelScope::~ParallelScope() { t_groups = saved_; }

}  // namespace ditbench
