#pragma once
// Resources whose release must wait until a group of threads has ended: while a scope is open,
// defer() keeps them instead of releasing them; the last scope to close releases everything kept,
// in the order it was deferred, on its own thread. Rank threads of one process use it for the
// NCCL communicators a failure stopped: their peers, threads of the same process, may still use
// those communicators' buffers until they have ended too.
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

namespace ditbench {

template <typename Handle>
class DeferredRelease {
 public:
  explicit DeferredRelease(std::function<void(const Handle&)> release)
      : release_(std::move(release)) {}
  DeferredRelease(const DeferredRelease&) = delete;
  DeferredRelease& operator=(const DeferredRelease&) = delete;

  // Keeps `handle` for the end of the open scopes and returns true; false, keeping nothing, when
  // no scope is open (the caller releases it now).
  bool defer(Handle handle) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (scopes_ == 0) return false;
    kept_.push_back(std::move(handle));
    return true;
  }

  // While alive, defer() keeps; the last one to end releases what was kept.
  class Scope {
   public:
    explicit Scope(DeferredRelease& owner) : owner_(owner) {
      std::lock_guard<std::mutex> lock(owner_.mutex_);
      ++owner_.scopes_;
    }
    ~Scope() {
      std::vector<Handle> kept;
      {
        std::lock_guard<std::mutex> lock(owner_.mutex_);
        if (--owner_.scopes_ == 0) kept.swap(owner_.kept_);
      }
      for (const auto& handle : kept) owner_.release_(handle);
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    DeferredRelease& owner_;
  };

 private:
  std::function<void(const Handle&)> release_;
  std::mutex mutex_;
  int scopes_ = 0;
  std::vector<Handle> kept_;
};

}  // namespace ditbench
