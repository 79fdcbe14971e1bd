#pragma once
// The thread-per-rank launch shared by the in-process and NCCL communicators.
#include <functional>
#include <memory>

#include "optimizations/parallel/communicator.h"

namespace ditbench::detail {

// Runs fn(rank, comm) on n threads; make_comm(rank) builds that rank's communicator on its own
// thread (NCCL sets the device there). A rank that throws calls abort() on its communicator so the
// others fail fast; finished(comm) runs after fn returns normally. Rethrows the first failure
// that was a cause rather than a consequence (CommAborted), prefixed with its rank.
void run_rank_threads(int n,
                      const std::function<std::unique_ptr<Communicator>(int rank)>& make_comm,
                      const std::function<void(int rank, Communicator& comm)>& fn,
                      const std::function<void(Communicator& comm)>& finished);

}  // namespace ditbench::detail
