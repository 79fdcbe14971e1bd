#include "optimizations/parallel/peer_mailbox.h"

namespace ditbench {

void PeerMailbox::post(const std::string& group, int from, int to, Kind kind,
                       const Message& message) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queues_[Key{group, from, to, kind}].push_back(message);
  }
  posted_.notify_all();
}

bool PeerMailbox::take(const std::string& group, int from, int to, Kind kind, Message& message,
                       std::chrono::milliseconds wait) {
  const Key key{group, from, to, kind};
  std::unique_lock<std::mutex> lock(mutex_);
  const bool arrived = posted_.wait_for(lock, wait, [&] {
    auto it = queues_.find(key);
    return it != queues_.end() && !it->second.empty();
  });
  if (!arrived) return false;
  auto& queue = queues_[key];
  message = queue.front();
  queue.pop_front();
  return true;
}

size_t PeerMailbox::pending() const {
  std::lock_guard<std::mutex> lock(mutex_);
  size_t n = 0;
  for (const auto& [key, queue] : queues_) n += queue.size();
  return n;
}

bool use_peer_copies(const char* env, int devices,
                     const std::function<bool(int, int)>& can_access) {
  if (env && std::string(env) == "0") return false;
  for (int a = 0; a < devices; ++a) {
    for (int b = 0; b < devices; ++b) {
      if (a != b && !can_access(a, b)) return false;
    }
  }
  return true;
}

}  // namespace ditbench
