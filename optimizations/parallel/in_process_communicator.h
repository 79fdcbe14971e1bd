#pragma once
// N ranks as threads of one process: CPU tensors exchanged through mailboxes under one mutex, so
// context parallelism runs in CI and on machines with fewer GPUs than ranks.
#include <memory>
#include <string>
#include <vector>

#include "optimizations/parallel/exchange_communicator.h"

namespace ditbench {

class InProcessWorld;
struct InProcessGroup;

// One rank of an InProcessWorld. Every collective checks that shapes and dtypes agree.
class InProcessCommunicator : public ExchangeCommunicator {
 public:
  // Creates the shared state for `size` ranks; hand it to one communicator per rank thread.
  static std::shared_ptr<InProcessWorld> make_world(int size, CommOptions options = {});
  InProcessCommunicator(std::shared_ptr<InProcessWorld> world, int rank);
  ~InProcessCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override;
  int global_rank() const override;
  std::string send_recv_transport() const override { return "in_process"; }

  void send(const at::Tensor& tensor, int dst) override;
  void recv(at::Tensor& tensor, int src) override;
  void abort(const std::string& reason) override;

  // Tells the world this rank left normally: peers waiting for it fail at once, not at timeout.
  void mark_finished();

 protected:
  std::vector<at::Tensor> exchange(const char* op, const at::Tensor& contribution) override;
  std::unique_ptr<Communicator> make_subgroup(uint64_t split, int color,
                                              std::vector<int> global_ranks, int new_rank) override;
  int global_rank_of(int r) const override;

 private:
  InProcessCommunicator(std::shared_ptr<InProcessWorld> world,
                        std::shared_ptr<InProcessGroup> group, int rank);

  std::shared_ptr<InProcessWorld> world_;
  std::shared_ptr<InProcessGroup> group_;
  int rank_;
  uint64_t next_collective_ = 0;
};

}  // namespace ditbench
