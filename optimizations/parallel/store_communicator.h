#pragma once
// The CPU multi-process transport. Under torchrun or srun on the CPU there is no NCCL to carry
// tensors between the processes, so StoreCommunicator sends them through the launch's c10d store
// (TCPStore): each contribution is serialized under its own key (set) and read by its peers (get).
// Every byte passes through the store's server, so it is for CPU runs and tests of the
// multi-process path, not for speed; its collectives are those of InProcessCommunicator
// (ExchangeCommunicator), so processes and threads give bitwise the same results.
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "optimizations/parallel/exchange_communicator.h"

namespace ditbench {

// The keys of one multi-process launch in a c10d store (all under one prefix) and its abort flag:
// the first rank to fail publishes "rank and reason", and every wait of every rank polls it, so
// that no rank waits for a peer that has failed.
class LaunchStore {
 public:
  LaunchStore(c10::intrusive_ptr<c10d::Store> store, std::string prefix, int rank);

  int rank() const { return rank_; }
  // A lost store (its server, rank 0, has gone) is a CommError naming this rank and `op`.
  void set(const std::string& name, const std::vector<uint8_t>& value, const std::string& op);
  std::vector<uint8_t> get(const std::string& name, const std::string& op);
  std::vector<std::vector<uint8_t>> get_all(const std::vector<std::string>& names,
                                            const std::string& op);
  int64_t add(const std::string& name, int64_t delta, const std::string& op);
  bool exists(const std::vector<std::string>& names, const std::string& op);
  void erase(const std::string& name);  // best effort

  // Publishes the launch's failure unless one is already there (the first failure wins).
  void publish_failure(int failed_rank, const std::string& reason);
  // The published failure, if any: (failed rank, reason).
  std::optional<std::pair<int, std::string>> failure(const std::string& op);
  // Throws CommAborted naming this rank, `op` and the failed rank when a failure is published.
  void check_failure(const std::string& op);

  // Polls until ready() holds. Throws CommAborted as soon as a rank has published a failure;
  // past `timeout` (none: no limit) publishes this rank's timeout and throws CommError naming
  // the operation and the ranks missing() lists.
  void wait_until(const std::string& op, const std::function<bool()>& ready,
                  const std::function<std::vector<int>()>& missing,
                  std::optional<std::chrono::milliseconds> timeout);

 private:
  std::string key(const std::string& name) const { return prefix_ + name; }
  template <typename Fn>
  auto call(const std::string& op, Fn fn) -> decltype(fn());

  c10::intrusive_ptr<c10d::Store> store_;
  std::string prefix_;
  int rank_;
};

class StoreCommunicator : public ExchangeCommunicator {
 public:
  // This process as group rank `rank` of the launch ranks `global_ranks`; `name` keeps the keys
  // of this group apart from every other group's.
  StoreCommunicator(std::shared_ptr<LaunchStore> store, std::string name,
                    std::vector<int> global_ranks, int rank, CommOptions options);

  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(global_ranks_.size()); }
  int global_rank() const override { return global_ranks_[static_cast<size_t>(rank_)]; }
  std::string send_recv_transport() const override { return "store"; }

  void send(const at::Tensor& tensor, int dst) override;
  void recv(at::Tensor& tensor, int src) override;
  void abort(const std::string& reason) override;

 protected:
  std::vector<at::Tensor> exchange(const char* op, const at::Tensor& contribution) override;
  std::unique_ptr<Communicator> make_subgroup(uint64_t split, int color,
                                              std::vector<int> global_ranks, int new_rank) override;
  int global_rank_of(int r) const override { return global_ranks_[static_cast<size_t>(r)]; }

 private:
  std::string collective_key(uint64_t seq, int rank) const;
  std::string message_key(int src, int dst, uint64_t n) const;

  std::shared_ptr<LaunchStore> store_;
  std::string name_;
  std::vector<int> global_ranks_;
  int rank_;
  CommOptions options_;
  uint64_t next_collective_ = 0;
  std::map<int, uint64_t> sent_, received_;  // messages per peer, in order
};

}  // namespace ditbench
