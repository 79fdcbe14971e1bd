#pragma once
// Collective and point-to-point communication between the ranks of a context-parallel run. NCCL
// serves GPUs (nccl_communicator.h); InProcessCommunicator (in_process_communicator.h) runs ranks
// as threads of one process on CPU tensors, so Ulysses, ring and USP are tested in CI with the
// same code that runs on GPUs; StoreCommunicator (store_communicator.h) carries CPU tensors
// between the processes of a torchrun or srun launch.
#include <ATen/ATen.h>

#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace ditbench {

// A communication failure: a shape disagreement between ranks, a timeout, a backend error.
class CommError : public std::runtime_error {
 public:
  explicit CommError(const std::string& what) : std::runtime_error(what) {}
};

// This rank's operation cannot complete because another rank failed or aborted. It is a
// consequence, never a cause: launch_ranks reports the failure that started it instead.
class CommAborted : public CommError {
 public:
  CommAborted(int failed_rank, const std::string& what)
      : CommError(what), failed_rank_(failed_rank) {}
  int failed_rank() const { return failed_rank_; }

 private:
  int failed_rank_;
};

// A started asynchronous operation. wait() blocks (or, on a GPU, makes the current stream wait)
// until it completes; it throws what the operation threw. Destroying an unwaited handle waits.
class CommWork {
 public:
  virtual ~CommWork() = default;
  virtual void wait() = 0;
};

// Work that was complete when it was returned (transports that finish before returning).
class DoneWork : public CommWork {
 public:
  void wait() override {}
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // The rank of this process in the launch that created it (names failures in messages).
  virtual int global_rank() const = 0;

  // Splits dim 0 into size() equal chunks; chunk p goes to rank p. Returns a new tensor whose
  // chunk p came from rank p. input: [P * n, ...] -> [P * n, ...].
  virtual at::Tensor all_to_all(const at::Tensor& input) = 0;
  // all_to_all into `output` (contiguous, input's shape and dtype), started: where the transport
  // moves the data without the compute stream (rank threads over the copy engines) it returns at
  // once and wait() makes the current stream wait for the data; elsewhere it completes before
  // returning. Neither tensor may be touched until wait() returns.
  virtual std::unique_ptr<CommWork> all_to_all_into(const at::Tensor& input, at::Tensor& output) {
    output.copy_(all_to_all(input));
    return std::make_unique<DoneWork>();
  }
  // Concatenates every rank's tensor along dim 0 in rank order. input: [n, ...] -> [P * n, ...].
  virtual at::Tensor all_gather(const at::Tensor& input) = 0;
  // Sums tensor over all ranks, in place.
  virtual void all_reduce_sum(at::Tensor& tensor) = 0;

  virtual void send(const at::Tensor& tensor, int dst) = 0;
  // Receives into `tensor` (preallocated with the sender's shape and dtype).
  virtual void recv(at::Tensor& tensor, int src) = 0;
  // Starts sending `to_send` to dst and receiving into `to_recv` from src, and returns at once so
  // the caller can compute while the data moves (the ring passes K/V this way). to_send may have
  // any layout (each transport packs it as it needs); to_recv is contiguous. Neither tensor may
  // be touched until wait() returns.
  virtual std::unique_ptr<CommWork> send_recv(const at::Tensor& to_send, int dst,
                                              at::Tensor& to_recv, int src) = 0;
  // What carries send_recv ("in_process", "store", "nccl", "copy_engines"): records name it, since
  // it decides whether the ring's transfers can hide behind its attention.
  virtual std::string send_recv_transport() const = 0;

  virtual void barrier() = 0;

  // Waits on the host until the work this rank has queued on its current stream is done. A
  // failure of any rank or the timeout ends the wait with CommAborted/CommError instead of a
  // hang. Call it before reading a device result on the host: a blocking device-to-host copy
  // behind a collective whose peer died can never be interrupted (the CPU transports complete
  // their work before returning, so there it returns at once).
  virtual void synchronize(const std::string& op) { (void)op; }

  // Collective over every rank of this communicator: ranks passing the same color form a new
  // communicator, ordered by key (ties by rank). USP builds its Ulysses and ring groups this way.
  virtual std::unique_ptr<Communicator> subgroup(int color, int key) = 0;

  // Marks this rank failed: every other rank's pending or next operation throws CommAborted
  // naming this rank and the reason, instead of waiting for it.
  virtual void abort(const std::string& reason) = 0;
};

struct CommOptions {
  // How long one operation waits for its peers before it throws (and aborts the others).
  std::chrono::milliseconds timeout{std::chrono::seconds(600)};
};

enum class CommBackend { kInProcess, kNccl };

struct LaunchOptions {
  CommBackend backend = CommBackend::kInProcess;
  CommOptions comm;
};

// Runs fn on n rank threads, each with its own communicator (NCCL: cudaSetDevice(rank) first),
// joins them all, and rethrows the first failure with its rank named ("rank 2: ..."), keeping
// InputError and Unsupported as such. A failing rank aborts the others, so none is left hanging.
void launch_ranks(int n, const std::function<void(int rank, Communicator& comm)>& fn,
                  const LaunchOptions& options = {});

}  // namespace ditbench
