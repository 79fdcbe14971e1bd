#pragma once
// Messages between the rank threads of one process, for transfers that bypass NCCL: a receiving
// rank posts where its buffer is, the sending rank posts when its copy into it is queued. One FIFO
// queue per (group, from, to, kind); the payload is opaque here (a device pointer, a size, a
// device, a CUDA event), so the queueing is tested on the CPU.
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

namespace ditbench {

class PeerMailbox {
 public:
  enum class Kind { kDestination, kDelivered };
  struct Message {
    void* ptr = nullptr;
    size_t bytes = 0;
    int device = -1;
    void* event = nullptr;
  };

  // Appends to the queue from -> to of `kind` in `group` and wakes its waiters.
  void post(const std::string& group, int from, int to, Kind kind, const Message& message);
  // Takes the oldest message of that queue, waiting up to `wait` for one; false if none came.
  bool take(const std::string& group, int from, int to, Kind kind, Message& message,
            std::chrono::milliseconds wait);
  // Messages posted and not taken (a failed run leaves some behind).
  size_t pending() const;

 private:
  using Key = std::tuple<std::string, int, int, Kind>;
  mutable std::mutex mutex_;
  std::condition_variable posted_;
  std::map<Key, std::deque<Message>> queues_;
};

// Whether the rank threads of a launch over `devices` GPUs carry send_recv as peer copies: unless
// `env` (DITBENCH_PEER_COPIES's value, or null when unset) is "0", and only where every pair of
// the devices reaches the other (`can_access(a, b)`): a pair taking NCCL while another copies
// would never meet, so one pair without access puts the whole launch on NCCL.
bool use_peer_copies(const char* env, int devices, const std::function<bool(int, int)>& can_access);

}  // namespace ditbench
