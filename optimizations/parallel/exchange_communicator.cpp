#include "optimizations/parallel/exchange_communicator.h"

#include <algorithm>
#include <sstream>

namespace ditbench {

std::string describe_tensor(const at::Tensor& t) {
  std::ostringstream os;
  os << t.sizes() << " " << t.scalar_type();
  return os.str();
}

std::string describe_seconds(std::chrono::milliseconds ms) {
  std::ostringstream os;
  os << static_cast<double>(ms.count()) / 1000.0 << "s";
  return os.str();
}

std::vector<at::Tensor> ExchangeCommunicator::exchange_checked(const char* op,
                                                               const at::Tensor& contribution) {
  auto inputs = exchange(op, contribution);
  for (int r = 0; r < size(); ++r) {
    const auto& t = inputs[static_cast<size_t>(r)];
    if (t.sizes() != inputs[0].sizes() || t.scalar_type() != inputs[0].scalar_type()) {
      throw CommError(std::string(op) + ": rank " + std::to_string(global_rank_of(r)) + " passed " +
                      describe_tensor(t) + " but rank " + std::to_string(global_rank_of(0)) +
                      " passed " + describe_tensor(inputs[0]));
    }
  }
  return inputs;
}

at::Tensor ExchangeCommunicator::all_to_all(const at::Tensor& input) {
  auto inputs = exchange_checked("all_to_all", input);
  const int64_t n = size();
  if (input.dim() == 0 || input.size(0) % n != 0) {
    throw CommError("all_to_all: dim 0 of " + describe_tensor(input) + " does not split into " +
                    std::to_string(n) + " equal chunks");
  }
  std::vector<at::Tensor> received;
  for (const auto& from : inputs) received.push_back(from.chunk(n, 0)[rank()]);
  return at::cat(received, 0).to(input.device());
}

at::Tensor ExchangeCommunicator::all_gather(const at::Tensor& input) {
  if (input.dim() == 0) throw CommError("all_gather: a 0-d tensor has no dim 0 to concatenate");
  return at::cat(exchange_checked("all_gather", input), 0).to(input.device());
}

void ExchangeCommunicator::all_reduce_sum(at::Tensor& tensor) {
  auto inputs = exchange_checked("all_reduce_sum", tensor);
  // Summed in rank order on every rank, so all ranks hold bitwise the same result.
  at::Tensor sum = inputs[0].clone();
  for (size_t r = 1; r < inputs.size(); ++r) sum.add_(inputs[r]);
  tensor.copy_(sum);
}

void ExchangeCommunicator::barrier() { exchange_checked("barrier", at::zeros({1})); }

namespace {

class RecvOnWait : public CommWork {
 public:
  RecvOnWait(Communicator& comm, at::Tensor& target, int src)
      : comm_(comm), target_(target), src_(src) {}
  ~RecvOnWait() override {
    if (pending_) {
      try {
        wait();
      } catch (...) {
        // Destruction during unwinding: the error already travels with the first exception.
      }
    }
  }
  void wait() override {
    if (!pending_) return;
    pending_ = false;
    comm_.recv(target_, src_);
  }

 private:
  Communicator& comm_;
  at::Tensor& target_;
  int src_;
  bool pending_ = true;
};

}  // namespace

std::unique_ptr<CommWork> ExchangeCommunicator::send_recv(const at::Tensor& to_send, int dst,
                                                          at::Tensor& to_recv, int src) {
  send(to_send, dst);
  return std::make_unique<RecvOnWait>(*this, to_recv, src);
}

std::unique_ptr<Communicator> ExchangeCommunicator::subgroup(int color, int key) {
  auto all = exchange_checked("subgroup",
                              at::tensor({static_cast<int64_t>(color), static_cast<int64_t>(key)}));
  const uint64_t split = next_split_++;
  std::vector<std::pair<int64_t, int>> members;  // (key, group rank) of the ranks of my color
  for (int r = 0; r < size(); ++r) {
    auto ck = all[static_cast<size_t>(r)];
    if (ck[0].item<int64_t>() == color) members.emplace_back(ck[1].item<int64_t>(), r);
  }
  std::sort(members.begin(), members.end());
  int new_rank = 0;
  std::vector<int> global_ranks;
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i].second == rank()) new_rank = static_cast<int>(i);
    global_ranks.push_back(global_rank_of(members[i].second));
  }
  return make_subgroup(split, color, std::move(global_ranks), new_rank);
}

}  // namespace ditbench
