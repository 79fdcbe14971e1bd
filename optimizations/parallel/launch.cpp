#include <atomic>
#include <exception>
#include <mutex>
#include <thread>

#include "models/common/error.h"
#include "optimizations/parallel/communicator.h"
#include "optimizations/parallel/in_process_communicator.h"
#include "optimizations/parallel/nccl_communicator.h"
#include "optimizations/parallel/rank_threads.h"
#include "optimizations/parallel/trace.h"

namespace ditbench {
namespace detail {

namespace {

struct RankFailure {
  int rank = -1;
  std::exception_ptr error;
  bool consequence = false;  // CommAborted: another rank failed first
};

std::string what_of(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

// Rethrows with the rank named, keeping the kinds the runner reports differently (a skip for
// Unsupported, exit status 2 for InputError).
[[noreturn]] void rethrow_with_rank(const RankFailure& failure) {
  const std::string prefix = "rank " + std::to_string(failure.rank) + ": ";
  try {
    std::rethrow_exception(failure.error);
  } catch (const InputError& e) {
    throw InputError(prefix + e.what());
  } catch (const Unsupported& e) {
    throw Unsupported(prefix + e.what());
  } catch (const CommAborted& e) {
    throw;  // already names the failed rank and this one
  } catch (const std::exception& e) {
    throw CommError(prefix + e.what());
  } catch (...) {
    throw CommError(prefix + "unknown exception");
  }
}

}  // namespace

void run_rank_threads(int n,
                      const std::function<std::unique_ptr<Communicator>(int rank)>& make_comm,
                      const std::function<void(int rank, Communicator& comm)>& fn,
                      const std::function<void(Communicator& comm)>& finished) {
  if (n < 1) throw CommError("launch_ranks: need at least 1 rank, got " + std::to_string(n));
  std::mutex failures_mutex;
  std::vector<RankFailure> failures;  // in the order they happened
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(n));
  for (int rank = 0; rank < n; ++rank) {
    threads.emplace_back([&, rank] {
      std::unique_ptr<Communicator> comm;
      try {
        comm = make_comm(rank);
        fn(rank, *comm);
        finished(*comm);
      } catch (...) {
        RankFailure failure{rank, std::current_exception(), false};
        try {
          throw;
        } catch (const CommAborted&) {
          failure.consequence = true;
        } catch (...) {
        }
        if (comm) {
          trace("rank " + std::to_string(rank) + " failed: " + what_of(failure.error));
          try {
            comm->abort(what_of(failure.error));
          } catch (...) {
            // Aborting is best effort; the original failure is what gets reported.
          }
        }
        std::lock_guard<std::mutex> lock(failures_mutex);
        failures.push_back(std::move(failure));
      }
    });
  }
  for (auto& t : threads) t.join();
  if (failures.empty()) return;
  for (const auto& failure : failures) {
    if (!failure.consequence) rethrow_with_rank(failure);
  }
  rethrow_with_rank(failures.front());
}

}  // namespace detail

void launch_ranks(int n, const std::function<void(int rank, Communicator& comm)>& fn,
                  const LaunchOptions& options) {
  if (options.backend == CommBackend::kNccl) {
#ifdef DITBENCH_HAS_NCCL
    launch_nccl_ranks(n, fn, options.comm);
    return;
#else
    throw Unsupported("launch_ranks: this build has no NCCL");
#endif
  }
  auto world = InProcessCommunicator::make_world(n, options.comm);
  detail::run_rank_threads(
      n, [&](int rank) { return std::make_unique<InProcessCommunicator>(world, rank); }, fn,
      [](Communicator& comm) { static_cast<InProcessCommunicator&>(comm).mark_finished(); });
}

}  // namespace ditbench
