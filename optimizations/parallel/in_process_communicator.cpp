#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <sstream>

#include "optimizations/parallel/in_process_communicator.h"

namespace ditbench {

// The members of one communicator (the world or a subgroup) and its traffic. Guarded by the
// world's mutex.
struct InProcessGroup {
  std::vector<int> global_ranks;  // global rank of each member, by group rank

  // One collective in flight: every member deposits its contribution, then each reads them all.
  struct Round {
    std::string op;
    std::vector<at::Tensor> inputs;
    std::vector<bool> arrived;
    int arrivals = 0;
    int departures = 0;
  };
  std::map<uint64_t, Round> rounds;                                 // by collective sequence number
  std::map<std::pair<int, int>, std::deque<at::Tensor>> mailboxes;  // (src, dst) -> FIFO
  std::map<std::pair<uint64_t, int>, std::shared_ptr<InProcessGroup>> children;  // (split, color)
};

// State shared by every rank thread of one launch and by all of its subgroups. One mutex and one
// condition variable serve every group: the tensors exchanged here are small CPU test tensors,
// and a single lock makes an abort wake every waiter of every group at once.
class InProcessWorld {
 public:
  InProcessWorld(int size, CommOptions options)
      : size(size),
        options(options),
        finished(static_cast<size_t>(size), false),
        root(std::make_shared<InProcessGroup>()) {
    for (int r = 0; r < size; ++r) root->global_ranks.push_back(r);
  }

  const int size;
  const CommOptions options;
  std::mutex mutex;
  std::condition_variable changed;
  int failed_rank = -1;  // global rank of the first failure; -1 while all are healthy
  std::string failure;
  std::vector<bool> finished;            // by global rank: left the launch normally
  std::shared_ptr<InProcessGroup> root;  // the group of all ranks

  // Records the first failure and wakes every waiter. Caller holds the mutex.
  void fail_locked(int global_rank, const std::string& reason) {
    if (failed_rank >= 0) return;
    failed_rank = global_rank;
    failure = reason;
    changed.notify_all();
  }
};

std::shared_ptr<InProcessWorld> InProcessCommunicator::make_world(int size, CommOptions options) {
  if (size < 1)
    throw CommError("in-process world: size must be at least 1, got " + std::to_string(size));
  return std::make_shared<InProcessWorld>(size, options);
}

InProcessCommunicator::InProcessCommunicator(std::shared_ptr<InProcessWorld> world, int rank)
    : world_(std::move(world)), rank_(rank) {
  if (rank < 0 || rank >= world_->size) {
    throw CommError("in-process communicator: rank " + std::to_string(rank) +
                    " is outside a world of " + std::to_string(world_->size));
  }
  group_ = world_->root;
}

InProcessCommunicator::InProcessCommunicator(std::shared_ptr<InProcessWorld> world,
                                             std::shared_ptr<InProcessGroup> group, int rank)
    : world_(std::move(world)), group_(std::move(group)), rank_(rank) {}

InProcessCommunicator::~InProcessCommunicator() = default;

int InProcessCommunicator::size() const { return static_cast<int>(group_->global_ranks.size()); }
int InProcessCommunicator::global_rank() const { return group_->global_ranks[rank_]; }
int InProcessCommunicator::global_rank_of(int r) const {
  return group_->global_ranks[static_cast<size_t>(r)];
}

namespace {

// Waits on the world's condition until ready() holds. Throws CommAborted when another rank has
// failed, CommError when a peer it waits for has already left or the timeout passes; the last
// two also fail the world so that no other rank waits for this one.
template <typename Ready, typename Missing>
void wait_for_peers(InProcessWorld& world, std::unique_lock<std::mutex>& lock, int me,
                    const std::string& op, Ready ready, Missing missing_global_ranks) {
  const auto deadline = std::chrono::steady_clock::now() + world.options.timeout;
  while (true) {
    if (ready()) return;
    if (world.failed_rank >= 0) {
      throw CommAborted(world.failed_rank,
                        "rank " + std::to_string(me) + ": " + op + " aborted because rank " +
                            std::to_string(world.failed_rank) + " failed: " + world.failure);
    }
    std::vector<int> missing = missing_global_ranks();
    for (int peer : missing) {
      if (world.finished[static_cast<size_t>(peer)]) {
        std::string msg = "rank " + std::to_string(me) + ": " + op + " cannot complete: rank " +
                          std::to_string(peer) + " has finished without joining it";
        world.fail_locked(me, msg);
        throw CommError(msg);
      }
    }
    if (world.changed.wait_until(lock, deadline) == std::cv_status::timeout && !ready()) {
      std::string msg = "rank " + std::to_string(me) + " timed out in " + op + " after " +
                        describe_seconds(world.options.timeout) + " (waiting for rank";
      for (size_t i = 0; i < missing.size(); ++i)
        msg += (i ? ", " : " ") + std::to_string(missing[i]);
      msg += ")";
      world.fail_locked(me, msg);
      throw CommError(msg);
    }
  }
}

void check_not_failed(InProcessWorld& world, int me, const std::string& op) {
  if (world.failed_rank >= 0) {
    throw CommAborted(world.failed_rank,
                      "rank " + std::to_string(me) + ": " + op + " aborted because rank " +
                          std::to_string(world.failed_rank) + " failed: " + world.failure);
  }
}

}  // namespace

std::vector<at::Tensor> InProcessCommunicator::exchange(const char* op,
                                                        const at::Tensor& contribution) {
  // A private copy: the caller may reuse its tensor while slower ranks still read this one.
  at::Tensor mine = contribution.contiguous().clone();
  const int me = global_rank();
  const uint64_t seq = next_collective_++;
  std::unique_lock<std::mutex> lock(world_->mutex);
  check_not_failed(*world_, me, op);
  auto& round = group_->rounds[seq];
  if (round.inputs.empty()) {
    round.op = op;
    round.inputs.resize(static_cast<size_t>(size()));
    round.arrived.assign(static_cast<size_t>(size()), false);
  } else if (round.op != op) {
    std::string msg = "rank " + std::to_string(me) + " called " + op + " as collective #" +
                      std::to_string(seq) + " of its group while another rank called " + round.op;
    world_->fail_locked(me, msg);
    throw CommError(msg);
  }
  round.inputs[static_cast<size_t>(rank_)] = mine;
  round.arrived[static_cast<size_t>(rank_)] = true;
  ++round.arrivals;
  world_->changed.notify_all();
  wait_for_peers(
      *world_, lock, me, op, [&] { return round.arrivals == size(); },
      [&] {
        std::vector<int> missing;
        for (int r = 0; r < size(); ++r) {
          if (!round.arrived[static_cast<size_t>(r)]) missing.push_back(group_->global_ranks[r]);
        }
        return missing;
      });
  std::vector<at::Tensor> inputs = round.inputs;
  if (++round.departures == size()) group_->rounds.erase(seq);
  return inputs;
}

void InProcessCommunicator::send(const at::Tensor& tensor, int dst) {
  if (dst < 0 || dst >= size()) {
    throw CommError("send: destination rank " + std::to_string(dst) + " is outside a group of " +
                    std::to_string(size()));
  }
  at::Tensor copy = tensor.contiguous().clone();
  std::lock_guard<std::mutex> lock(world_->mutex);
  check_not_failed(*world_, global_rank(), "send");
  group_->mailboxes[{rank_, dst}].push_back(std::move(copy));
  world_->changed.notify_all();
}

void InProcessCommunicator::recv(at::Tensor& tensor, int src) {
  if (src < 0 || src >= size()) {
    throw CommError("recv: source rank " + std::to_string(src) + " is outside a group of " +
                    std::to_string(size()));
  }
  const int me = global_rank();
  at::Tensor message;
  {
    std::unique_lock<std::mutex> lock(world_->mutex);
    check_not_failed(*world_, me, "recv");
    auto& box = group_->mailboxes[{src, rank_}];
    wait_for_peers(
        *world_, lock, me, "recv from rank " + std::to_string(group_->global_ranks[src]),
        [&] { return !box.empty(); }, [&] { return std::vector<int>{group_->global_ranks[src]}; });
    message = std::move(box.front());
    box.pop_front();
  }
  if (message.sizes() != tensor.sizes() || message.scalar_type() != tensor.scalar_type()) {
    throw CommError("recv: rank " + std::to_string(group_->global_ranks[src]) + " sent " +
                    describe_tensor(message) + " but rank " + std::to_string(me) + " expects " +
                    describe_tensor(tensor));
  }
  tensor.copy_(message);
}

std::unique_ptr<Communicator> InProcessCommunicator::make_subgroup(uint64_t split, int color,
                                                                   std::vector<int> global_ranks,
                                                                   int new_rank) {
  std::shared_ptr<InProcessGroup> child;
  {
    std::lock_guard<std::mutex> lock(world_->mutex);
    auto& slot = group_->children[{split, color}];
    if (!slot) {
      slot = std::make_shared<InProcessGroup>();
      slot->global_ranks = std::move(global_ranks);
    }
    child = slot;
  }
  return std::unique_ptr<Communicator>(new InProcessCommunicator(world_, child, new_rank));
}

void InProcessCommunicator::abort(const std::string& reason) {
  std::lock_guard<std::mutex> lock(world_->mutex);
  world_->fail_locked(global_rank(), reason);
}

void InProcessCommunicator::mark_finished() {
  std::lock_guard<std::mutex> lock(world_->mutex);
  world_->finished[static_cast<size_t>(global_rank())] = true;
  world_->changed.notify_all();
}

}  // namespace ditbench
