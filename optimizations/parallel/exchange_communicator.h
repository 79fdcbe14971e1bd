#pragma once
// Communicators that carry every collective as one exchange: each rank contributes a tensor and
// receives every rank's contribution, then computes the result itself. The in-process (threads)
// and store (processes on the CPU) transports share this, so both give bitwise the same results:
// sums run in rank order on every rank, and chunks and concatenations are plain copies.
#include <string>
#include <vector>

#include "optimizations/parallel/communicator.h"

namespace ditbench {

// "[2, 3] Float": a tensor's shape and dtype, for messages.
std::string describe_tensor(const at::Tensor& t);
// "0.2s": a timeout, for messages.
std::string describe_seconds(std::chrono::milliseconds ms);

class ExchangeCommunicator : public Communicator {
 public:
  at::Tensor all_to_all(const at::Tensor& input) override;
  at::Tensor all_gather(const at::Tensor& input) override;
  void all_reduce_sum(at::Tensor& tensor) override;
  void barrier() override;
  // The send goes out at once (the transport buffers it); the receive completes on wait().
  std::unique_ptr<CommWork> send_recv(const at::Tensor& to_send, int dst, at::Tensor& to_recv,
                                      int src) override;
  std::unique_ptr<Communicator> subgroup(int color, int key) override;

 protected:
  // Deposits this rank's contribution to the next collective of this group (called `op` on every
  // rank, else CommError naming both) and returns every rank's, in rank order. Shapes are checked
  // by the caller.
  virtual std::vector<at::Tensor> exchange(const char* op, const at::Tensor& contribution) = 0;
  // The communicator of this rank in split number `split` of this group: the members of `color`,
  // whose global ranks are `global_ranks` in the new order, this rank being `new_rank`.
  virtual std::unique_ptr<Communicator> make_subgroup(uint64_t split, int color,
                                                      std::vector<int> global_ranks,
                                                      int new_rank) = 0;
  // Global rank of group rank r.
  virtual int global_rank_of(int r) const = 0;

 private:
  // exchange() with every contribution's shape and dtype checked: every rank runs the same check
  // on the same data, so all throw alike and none is left waiting.
  std::vector<at::Tensor> exchange_checked(const char* op, const at::Tensor& contribution);
  uint64_t next_split_ = 0;
};

}  // namespace ditbench
