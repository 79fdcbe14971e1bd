#pragma once
// NCCL communicator: one ncclComm_t per rank, work enqueued on the rank's current CUDA stream.
// Compiled only when the build found NCCL (DITBENCH_HAS_NCCL); runs on the GPU machine.
#include <functional>
#include <memory>

#include "optimizations/parallel/communicator.h"

#ifdef DITBENCH_HAS_NCCL
#include <nccl.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include <c10/cuda/CUDAStream.h>

#include <map>
#include <set>

#include "optimizations/parallel/captured_graph.h"
#include "optimizations/parallel/peer_mailbox.h"
#include "optimizations/parallel/tensor_rows.h"

namespace ditbench {

// Shared by the communicators of one in-process launch (and their subgroups): the first failure,
// which every rank's watchdog turns into an ncclCommAbort of its own communicator.
struct NcclAbortSignal {
  std::mutex mutex;
  int failed_rank = -1;
  std::string reason;
  // The launch's closing barrier, on the host: ranks that finished wait here without a kernel in
  // flight (see launch_nccl_ranks).
  std::condition_variable finished_cv;
  int finished = 0;
  // Rank threads of one process, every pair of GPUs peer-capable, unless DITBENCH_PEER_COPIES=0:
  // send_recv copies straight into the peer's buffer on the copy engines instead of an NCCL
  // kernel, so it needs no SM and runs beside a kernel that holds them all (cuDNN's attention).
  std::shared_ptr<PeerMailbox> peer_copies;
};

// Collectives enqueued while the stream is being captured into a CUDA graph (NCCL supports that)
// are not handed to the watchdog, whose completion event would complete only inside a launch of
// the graph: the communicator listens to the capture instead, and every launch of its graph is
// watched like one operation ("graph replay of blocks 1..19 (collectives inside: all_to_all,
// all_gather)"), so a stuck replay ends with an error naming the rank and the graph.
class NcclCommunicator : public Communicator, public GraphListener {
 public:
  static ncclUniqueId new_unique_id();

  // Joins communicator `id` as `rank` of `size` on the current CUDA device (collective: all ranks
  // call it concurrently). `signal` links the ranks of one process (or, through ProcessLaunch,
  // of one multi-process launch) so that one failure aborts all. Every communicator is
  // nonblocking: a call that waits for peers (initialisation, connecting point-to-point channels)
  // returns at once and is polled, so a peer's failure or the timeout ends the wait.
  NcclCommunicator(const ncclUniqueId& id, int size, int rank, CommOptions options,
                   std::shared_ptr<NcclAbortSignal> signal = nullptr);
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int global_rank() const override { return global_rank_; }
  std::string send_recv_transport() const override {
    return copies_to_peers() ? "copy_engines" : "nccl";
  }

  at::Tensor all_to_all(const at::Tensor& input) override;
  // With peer copies (copies_to_peers, outside captures): a send_recv per peer on the copy
  // engines, so the exchange runs beside a kernel that holds every SM; else all_to_all.
  std::unique_ptr<CommWork> all_to_all_into(const at::Tensor& input, at::Tensor& output) override;
  at::Tensor all_gather(const at::Tensor& input) override;
  void all_reduce_sum(at::Tensor& tensor) override;
  void send(const at::Tensor& tensor, int dst) override;
  void recv(at::Tensor& tensor, int src) override;
  // Runs on a side stream that first waits for the current stream; wait() makes the current
  // stream wait for it, so the host never blocks and local attention overlaps the transfer.
  std::unique_ptr<CommWork> send_recv(const at::Tensor& to_send, int dst, at::Tensor& to_recv,
                                      int src) override;
  void barrier() override;
  // Whether send_recv copies to peers on the copy engines (NcclAbortSignal::peer_copies).
  bool copies_to_peers() const { return signal_ && signal_->peer_copies; }
  void synchronize(const std::string& op) override;
  std::unique_ptr<Communicator> subgroup(int color, int key) override;
  void abort(const std::string& reason) override;

  // GraphListener: a launch of a graph holding this communicator's collectives is refused once the
  // communicator stopped, and is watched until it completes.
  void before_graph_launch(uint64_t id, cudaGraphExec_t exec, const std::string& what) override;
  void after_graph_launch(uint64_t id, cudaStream_t stream, const std::string& what) override;
  void graph_released(uint64_t id) override;

 private:
  NcclCommunicator(ncclComm_t comm, int global_rank, int device, CommOptions options,
                   std::shared_ptr<NcclAbortSignal> signal);
  void start_watchdog();
  void check_usable(const std::string& op);
  // Polls a nonblocking communicator until its pending call completes; aborts on a peer's
  // failure, an NCCL error or the timeout.
  void wait_ready(const std::string& op);
  void check(ncclResult_t result, const std::string& op);
  void check_tensor(const at::Tensor& t, const std::string& op) const;
  // Hands the work just enqueued on `stream` to the watchdog (or, while `stream` is being
  // captured, notes it for the graph's launches); returns an event behind it for the caller.
  cudaEvent_t track(const std::string& op, cudaStream_t stream);
  void abort_locked(int failed_rank, const std::string& reason);
  // With mutex_ held: aborts when another rank of the launch has failed; true if it did.
  bool abort_if_peer_failed();
  void watchdog_loop();
  // send_recv over the copy engines (signal_->peer_copies): posts where to_recv is, takes where
  // dst wants to_send (on this device, laid out as `rows`), copies it there on the side stream.
  std::unique_ptr<CommWork> peer_copy_send_recv(const at::Tensor& to_send, const TensorRows& rows,
                                                int dst, at::Tensor& to_recv, int src,
                                                const std::string& op);
  // Waits for the message from -> to (ranks of this group) of `kind`, polling for a peer's
  // failure and the timeout.
  PeerMailbox::Message await_message(int from, int to, PeerMailbox::Kind kind,
                                     const std::string& op);

  ncclComm_t comm_ = nullptr;
  int rank_ = 0, size_ = 1, global_rank_ = 0, device_ = 0;
  CommOptions options_;
  std::shared_ptr<NcclAbortSignal> signal_;
  std::optional<c10::cuda::CUDAStream> side_stream_;
  // Names this communicator alike on all its ranks ("world", "world/2:1" for the third split's
  // color 1): the key of its peer-copy messages.
  std::string group_ = "world";
  int splits_ = 0;
  std::set<int> peer_access_;  // devices this rank's device was given peer access to

  struct Pending {
    std::string op;
    cudaEvent_t done;
    std::chrono::steady_clock::time_point started;
  };
  std::mutex mutex_;
  std::condition_variable stop_cv_;
  std::deque<Pending> pending_;
  bool stop_ = false;
  bool aborted_ = false;
  bool revoked_ = false;  // stopped by ncclCommRevoke, not yet freed
  int failed_rank_ = -1;
  std::string abort_reason_;
  std::thread watchdog_;
  // The operations recorded into each graph still alive, by capture id (the rank's thread only).
  std::map<uint64_t, std::set<std::string>> captured_ops_;
};

// The NCCL variant of launch_ranks: one thread per GPU (cudaSetDevice(rank)), one shared unique id.
void launch_nccl_ranks(int n, const std::function<void(int rank, Communicator& comm)>& fn,
                       const CommOptions& options);

}  // namespace ditbench
#endif  // DITBENCH_HAS_NCCL
