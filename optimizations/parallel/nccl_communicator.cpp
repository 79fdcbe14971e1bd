#include "optimizations/parallel/nccl_communicator.h"

#ifdef DITBENCH_HAS_NCCL
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include "models/common/error.h"
#include "optimizations/kernels/strided_copy.h"
#include "optimizations/parallel/deferred_release.h"
#include "optimizations/parallel/exchange_communicator.h"
#include "optimizations/parallel/rank_threads.h"
#include "optimizations/parallel/tensor_rows.h"
#include "optimizations/parallel/trace.h"

namespace ditbench {

namespace {

ncclDataType_t nccl_type(at::ScalarType type, const std::string& op) {
  switch (type) {
    case at::kFloat:
      return ncclFloat32;
    case at::kHalf:
      return ncclFloat16;
    case at::kBFloat16:
      return ncclBfloat16;
    case at::kDouble:
      return ncclFloat64;
    case at::kInt:
      return ncclInt32;
    case at::kLong:
      return ncclInt64;
    case at::kChar:
      return ncclInt8;
    case at::kBool:
    case at::kByte:
      return ncclUint8;
    default:
      throw CommError(op + ": NCCL cannot carry " + std::string(c10::toString(type)));
  }
}

void check_cuda(cudaError_t err, const std::string& what) {
  if (err != cudaSuccess) throw CommError(what + ": " + cudaGetErrorString(err));
}

// Nonblocking communicators: a call that must wait for peers (initialisation, the lazy connection
// of point-to-point channels) returns ncclInProgress instead of blocking inside NCCL, so that a
// failed peer or a timeout can abort it (wait_ready) rather than hang the thread.
ncclConfig_t nonblocking_config() {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  return config;
}

void trace_rank(int rank, const std::string& event) {
  if (trace_enabled()) trace("rank " + std::to_string(rank) + ": " + event);
}

// The same for an operation of the collectives' hot path: no string is built unless tracing.
void trace_op(int rank, const std::string& op, const char* what) {
  if (trace_enabled()) trace("rank " + std::to_string(rank) + ": " + op + " " + what);
}

char* bytes_of(const at::Tensor& t) { return static_cast<char*>(t.data_ptr()); }

// Frees a communicator a failure stopped: once quiescent without an error it is destroyed (what
// ncclCommRevoke's contract allows), still in progress or failed it is aborted. Traced before and
// after, so that a fault inside NCCL's teardown shows which call it was.
void free_stopped(ncclComm_t comm, int rank) {
  ncclResult_t state = ncclInProgress;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (state == ncclInProgress && std::chrono::steady_clock::now() < deadline) {
    ncclCommGetAsyncError(comm, &state);
    if (state == ncclInProgress) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const bool destroy = state == ncclSuccess;
  trace_rank(rank, std::string("stopped communicator: ") + ncclGetErrorString(state) +
                       (destroy ? ", ncclCommDestroy" : ", ncclCommAbort"));
  if (destroy) {
    ncclCommDestroy(comm);
  } else {
    ncclCommAbort(comm);
  }
  trace_rank(rank, "stopped communicator freed");
}

// The rank threads of one process map each other's buffers (NCCL's peer-to-peer transport within a
// process). A rank that failed once freed its communicators while a peer's kernels and proxy
// still used them, and the peer's own teardown then faulted inside the driver (cuMemUnmap under
// ncclCommDestroy, 1 of 6 to 1 of 19 rank-failure runs on 2 H100s). So while a launch of rank
// threads runs, a communicator a failure stopped is only revoked by its destructor and kept here;
// the launch frees them all, one after another, once every rank thread has ended.
DeferredRelease<std::pair<ncclComm_t, int>>& stopped_communicators() {  // communicator, rank
  static DeferredRelease<std::pair<ncclComm_t, int>> stopped(
      [](const std::pair<ncclComm_t, int>& c) { free_stopped(c.first, c.second); });
  return stopped;
}

// True when a launch of rank threads is running: `comm` is then freed at its end.
bool defer_teardown(ncclComm_t comm, int rank) {
  return stopped_communicators().defer({comm, rank});
}

}  // namespace

ncclUniqueId NcclCommunicator::new_unique_id() {
  ncclUniqueId id;
  ncclResult_t r = ncclGetUniqueId(&id);
  if (r != ncclSuccess) throw CommError(std::string("ncclGetUniqueId: ") + ncclGetErrorString(r));
  return id;
}

NcclCommunicator::NcclCommunicator(const ncclUniqueId& id, int size, int rank, CommOptions options,
                                   std::shared_ptr<NcclAbortSignal> signal)
    : rank_(rank), size_(size), global_rank_(rank), options_(options), signal_(std::move(signal)) {
  check_cuda(cudaGetDevice(&device_), "rank " + std::to_string(rank) + ": cudaGetDevice");
  trace_rank(rank, "ncclCommInitRank on cuda:" + std::to_string(device_));
  ncclConfig_t config = nonblocking_config();
  // DITBENCH_NCCL_BLOCKING=1: a blocking world communicator, to tell a problem of the
  // nonblocking mode from others (its subgroups stay nonblocking).
  if (const char* blocking = std::getenv("DITBENCH_NCCL_BLOCKING"); blocking && *blocking == '1')
    config.blocking = 1;
  ncclResult_t r = ncclCommInitRankConfig(&comm_, size, id, rank, &config);
  if (r != ncclSuccess && r != ncclInProgress) {
    throw CommError("rank " + std::to_string(rank) +
                    ": ncclCommInitRank: " + ncclGetErrorString(r));
  }
  // A peer that never joins (it failed first) ends the wait through the signal or the timeout.
  wait_ready("ncclCommInitRank");
  trace_rank(rank, "ncclCommInitRank done");
  start_watchdog();
}

NcclCommunicator::NcclCommunicator(ncclComm_t comm, int global_rank, int device,
                                   CommOptions options, std::shared_ptr<NcclAbortSignal> signal)
    : comm_(comm),
      global_rank_(global_rank),
      device_(device),
      options_(options),
      signal_(std::move(signal)) {
  wait_ready("subgroup");
  ncclCommUserRank(comm_, &rank_);
  ncclCommCount(comm_, &size_);
  start_watchdog();
}

NcclCommunicator::~NcclCommunicator() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& p : pending_) cudaEventDestroy(p.done);
  if (!comm_) return;
  if (aborted_) {
    if (!revoked_) return;  // ncclCommAbort freed it
    // Revoked: freed once its kernels have stopped (nothing on this rank waits for them now), at
    // the end of the launch when its peers are rank threads of this process.
    if (defer_teardown(comm_, global_rank_)) {
      trace_rank(global_rank_, "revoked communicator: freed when every rank thread has ended");
    } else {
      free_stopped(comm_, global_rank_);
    }
    return;
  }
  // Torn down by an exception (this rank failed): its peers may never match the work in flight,
  // so the communicator is stopped rather than flushed; the peers learn of the failure from the
  // launch's signal once the exception reaches the rank's thread.
  if (std::uncaught_exceptions() > 0) {
#ifdef NCCL_REVOKE_DEFAULT
    // Rank threads: revoked now, freed when the peers, which may still be using its buffers,
    // have ended too.
    if (defer_teardown(comm_, global_rank_)) {
      trace_rank(global_rank_, "communicator torn down by an exception: revoked, freed later");
      ncclCommRevoke(comm_, NCCL_REVOKE_DEFAULT);
      return;
    }
#endif
    trace_rank(global_rank_, "communicator torn down by an exception: abort");
    ncclCommAbort(comm_);
    return;
  }
  // A nonblocking communicator is finalized (its work flushed) before it is destroyed.
  ncclResult_t state = ncclCommFinalize(comm_);
  const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
  while (state == ncclInProgress && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ncclCommGetAsyncError(comm_, &state);
  }
  if (state == ncclSuccess) {
    ncclCommDestroy(comm_);
  } else {
    ncclCommAbort(comm_);
  }
}

void NcclCommunicator::wait_ready(const std::string& op) {
  const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!aborted_) abort_if_peer_failed();
      if (!aborted_) {
        ncclResult_t state = ncclSuccess;
        ncclCommGetAsyncError(comm_, &state);
        if (state == ncclSuccess) return;
        if (state != ncclInProgress) {
          abort_locked(global_rank_, "rank " + std::to_string(global_rank_) + ": " + op + ": " +
                                         ncclGetErrorString(state));
        } else if (std::chrono::steady_clock::now() > deadline) {
          abort_locked(global_rank_, "rank " + std::to_string(global_rank_) + " timed out in " +
                                         op + " after " + describe_seconds(options_.timeout));
        }
      }
    }
    check_usable(op);  // throws once aborted
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

void NcclCommunicator::start_watchdog() {
  // High priority: the ring's transfers are queued beside a long attention kernel, and the block
  // scheduler would otherwise hand every SM to the attention's pending blocks first, leaving the
  // transfer to run (exposed) after it.
  side_stream_ = c10::cuda::getStreamFromPool(true, static_cast<c10::DeviceIndex>(device_));
  watchdog_ = std::thread([this] { watchdog_loop(); });
}

// Polls the work in flight: an NCCL async error, an operation past the timeout, or another rank's
// failure (in-process launches) aborts this communicator, which frees the kernels stuck on it.
void NcclCommunicator::watchdog_loop() {
  cudaSetDevice(device_);
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    stop_cv_.wait_for(lock, std::chrono::milliseconds(50));
    if (stop_ || aborted_) continue;
    if (abort_if_peer_failed()) continue;
    ncclResult_t async_error = ncclSuccess;
    ncclCommGetAsyncError(comm_, &async_error);
    if (async_error != ncclSuccess && async_error != ncclInProgress) {
      abort_locked(global_rank_, "rank " + std::to_string(global_rank_) +
                                     ": NCCL error: " + ncclGetErrorString(async_error));
      continue;
    }
    while (!pending_.empty() && cudaEventQuery(pending_.front().done) == cudaSuccess) {
      cudaEventDestroy(pending_.front().done);
      pending_.pop_front();
    }
    if (!pending_.empty() &&
        std::chrono::steady_clock::now() - pending_.front().started > options_.timeout) {
      abort_locked(global_rank_, "rank " + std::to_string(global_rank_) + " timed out in " +
                                     pending_.front().op + " after " +
                                     describe_seconds(options_.timeout));
    }
  }
}

bool NcclCommunicator::abort_if_peer_failed() {
  if (!signal_) return false;
  int failed = -1;
  std::string reason;
  {
    // Read under the signal's lock, released before abort_locked takes it again to publish.
    std::lock_guard<std::mutex> signal_lock(signal_->mutex);
    failed = signal_->failed_rank;
    reason = signal_->reason;
  }
  if (failed < 0 || failed == global_rank_) return false;
  abort_locked(failed, reason);
  return true;
}

void NcclCommunicator::abort_locked(int failed_rank, const std::string& reason) {
  if (aborted_) return;
  aborted_ = true;
  failed_rank_ = failed_rank;
  abort_reason_ = reason;
#ifdef NCCL_REVOKE_DEFAULT  // ncclCommRevoke: newer NCCL 2.28 releases
  // Revoked, not aborted: ncclCommAbort destroys the communicator's streams, which waits for a
  // driver lock that a blocking copy on the rank's own thread holds while that copy waits for
  // the very kernels the abort is meant to free (seen on 4 H200s: a device-to-host copy in the
  // next step's preparation against cuStreamDestroy in the watchdog's abort, both stuck).
  // ncclCommRevoke stops the kernels in flight and destroys nothing; the destructor frees the
  // communicator once they have stopped.
  trace_rank(global_rank_, "ncclCommRevoke (rank " + std::to_string(failed_rank) + " failed)");
  ncclCommRevoke(comm_, NCCL_REVOKE_DEFAULT);
  revoked_ = true;
#else
  trace_rank(global_rank_, "ncclCommAbort (rank " + std::to_string(failed_rank) + " failed)");
  ncclCommAbort(comm_);
#endif
  trace_rank(global_rank_, "communicator stopped");
  if (signal_) {
    std::lock_guard<std::mutex> signal_lock(signal_->mutex);
    if (signal_->failed_rank < 0) {
      signal_->failed_rank = failed_rank;
      signal_->reason = reason;
    }
  }
}

void NcclCommunicator::abort(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mutex_);
  abort_locked(global_rank_, reason);
}

void NcclCommunicator::check_usable(const std::string& op) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!aborted_) return;
  const std::string msg = "rank " + std::to_string(global_rank_) + ": " + op +
                          " aborted because rank " + std::to_string(failed_rank_) +
                          " failed: " + abort_reason_;
  if (failed_rank_ == global_rank_) throw CommError(msg);
  throw CommAborted(failed_rank_, msg);
}

void NcclCommunicator::check(ncclResult_t result, const std::string& op) {
  if (result == ncclSuccess) return;
  if (result == ncclInProgress) return wait_ready(op);
  std::string msg =
      "rank " + std::to_string(global_rank_) + ": " + op + ": " + ncclGetErrorString(result);
  if (const char* last = ncclGetLastError(comm_)) {
    if (*last) msg += std::string(" (") + last + ")";
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    abort_locked(global_rank_, msg);
  }
  throw CommError(msg);
}

void NcclCommunicator::check_tensor(const at::Tensor& t, const std::string& op) const {
  if (!t.is_cuda() || t.get_device() != device_) {
    std::ostringstream os;
    os << "rank " << global_rank_ << ": " << op << ": tensor on " << t.device()
       << " but this communicator serves cuda:" << device_;
    throw CommError(os.str());
  }
  if (!t.is_contiguous()) throw CommError(op + ": tensor must be contiguous");
}

cudaEvent_t NcclCommunicator::track(const std::string& op, cudaStream_t stream) {
  // For the caller to wait on. During a capture, recording it joins whatever waits on it to the
  // capture (the ring's side stream back into the capturing stream): legal, and no host sees it.
  cudaEvent_t for_caller;
  check_cuda(cudaEventCreateWithFlags(&for_caller, cudaEventDisableTiming),
             op + ": cudaEventCreate");
  check_cuda(cudaEventRecord(for_caller, stream), op + ": cudaEventRecord");
  if (const uint64_t capture = capture_id_of(stream)) {
    // Recorded into a graph: an event here would complete only inside a launch, and querying it
    // from the watchdog is an error. Each launch of the graph is watched instead.
    listen_to(capture);
    captured_ops_[capture].insert(op);
    trace_op(global_rank_, op, "recorded into a CUDA graph");
    return for_caller;
  }
  cudaEvent_t done;  // the watchdog's
  check_cuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), op + ": cudaEventCreate");
  check_cuda(cudaEventRecord(done, stream), op + ": cudaEventRecord");
  std::lock_guard<std::mutex> lock(mutex_);
  pending_.push_back({op, done, std::chrono::steady_clock::now()});
  trace_op(global_rank_, op, "enqueued");
  return for_caller;
}

void NcclCommunicator::before_graph_launch(uint64_t id, cudaGraphExec_t, const std::string& what) {
  (void)id;
  check_usable(what);  // a stopped communicator's kernels inside the graph would never complete
}

void NcclCommunicator::after_graph_launch(uint64_t id, cudaStream_t stream,
                                          const std::string& what) {
  std::string op = what + " (collectives inside";
  const char* separator = ": ";
  for (const std::string& inside : captured_ops_[id]) {
    op += separator + inside;
    separator = ", ";
  }
  op += ")";
  cudaEvent_t done;  // behind the whole graph: the launch completes when every collective did
  check_cuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), op + ": cudaEventCreate");
  check_cuda(cudaEventRecord(done, stream), op + ": cudaEventRecord");
  std::lock_guard<std::mutex> lock(mutex_);
  pending_.push_back({op, done, std::chrono::steady_clock::now()});
  trace_op(global_rank_, op, "launched");
}

void NcclCommunicator::graph_released(uint64_t id) { captured_ops_.erase(id); }

at::Tensor NcclCommunicator::all_to_all(const at::Tensor& input_) {
  const std::string op = "all_to_all";
  check_usable(op);
  trace_op(global_rank_, op, "begins");
  at::Tensor input = input_.contiguous();
  check_tensor(input, op);
  if (input.dim() == 0 || input.size(0) % size_ != 0) {
    throw CommError(op + ": dim 0 of the input does not split into " + std::to_string(size_) +
                    " equal chunks");
  }
  at::Tensor output = at::empty_like(input);
  const size_t count = static_cast<size_t>(input.numel() / size_);
  const size_t chunk_bytes = count * input.element_size();
  const ncclDataType_t type = nccl_type(input.scalar_type(), op);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream(device_).stream();
  check(ncclGroupStart(), op);
  for (int peer = 0; peer < size_; ++peer) {
    check(ncclSend(bytes_of(input) + peer * chunk_bytes, count, type, peer, comm_, stream), op);
    check(ncclRecv(bytes_of(output) + peer * chunk_bytes, count, type, peer, comm_, stream), op);
  }
  check(ncclGroupEnd(), op);
  cudaEventDestroy(track(op, stream));
  return output;
}

at::Tensor NcclCommunicator::all_gather(const at::Tensor& input_) {
  const std::string op = "all_gather";
  check_usable(op);
  trace_op(global_rank_, op, "begins");
  at::Tensor input = input_.contiguous();
  check_tensor(input, op);
  auto sizes = input.sizes().vec();
  if (sizes.empty()) throw CommError(op + ": a 0-d tensor has no dim 0 to concatenate");
  sizes[0] *= size_;
  at::Tensor output = at::empty(sizes, input.options());
  cudaStream_t stream = at::cuda::getCurrentCUDAStream(device_).stream();
  check(ncclAllGather(input.data_ptr(), output.data_ptr(), static_cast<size_t>(input.numel()),
                      nccl_type(input.scalar_type(), op), comm_, stream),
        op);
  cudaEventDestroy(track(op, stream));
  return output;
}

void NcclCommunicator::all_reduce_sum(at::Tensor& tensor) {
  const std::string op = "all_reduce_sum";
  check_usable(op);
  trace_op(global_rank_, op, "begins");
  check_tensor(tensor, op);
  if (tensor.scalar_type() == at::kBool) throw CommError(op + ": cannot sum bool tensors");
  cudaStream_t stream = at::cuda::getCurrentCUDAStream(device_).stream();
  check(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                      nccl_type(tensor.scalar_type(), op), ncclSum, comm_, stream),
        op);
  cudaEventDestroy(track(op, stream));
}

void NcclCommunicator::send(const at::Tensor& tensor_, int dst) {
  const std::string op = "send to rank " + std::to_string(dst);
  check_usable(op);
  trace_op(global_rank_, op, "begins");
  at::Tensor tensor = tensor_.contiguous();
  check_tensor(tensor, op);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream(device_).stream();
  check(ncclSend(tensor.data_ptr(), static_cast<size_t>(tensor.numel() * tensor.element_size()),
                 ncclUint8, dst, comm_, stream),
        op);
  cudaEventDestroy(track(op, stream));
}

void NcclCommunicator::recv(at::Tensor& tensor, int src) {
  const std::string op = "recv from rank " + std::to_string(src);
  check_usable(op);
  trace_op(global_rank_, op, "begins");
  check_tensor(tensor, op);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream(device_).stream();
  check(ncclRecv(tensor.data_ptr(), static_cast<size_t>(tensor.numel() * tensor.element_size()),
                 ncclUint8, src, comm_, stream),
        op);
  cudaEventDestroy(track(op, stream));
}

namespace {

// A send_recv's completion for the caller: wait() takes the event to wait for (an NCCL transfer's
// own, or a peer copy's once its sender has posted it, which may wait on the host), makes the
// current stream wait for it and destroys it.
class StreamEventWork : public CommWork {
 public:
  StreamEventWork(std::function<cudaEvent_t()> take_event, int device)
      : take_event_(std::move(take_event)), device_(device) {}
  ~StreamEventWork() override {
    try {
      wait();
    } catch (...) {
    }
  }
  void wait() override {
    if (!take_event_) return;
    auto take = std::move(take_event_);
    take_event_ = nullptr;
    cudaEvent_t done = take();
    cudaStream_t current = at::cuda::getCurrentCUDAStream(device_).stream();
    cudaError_t err = cudaStreamWaitEvent(current, done, 0);
    cudaEventDestroy(done);
    check_cuda(err, "send_recv: cudaStreamWaitEvent");
  }

 private:
  std::function<cudaEvent_t()> take_event_;
  int device_;
};

}  // namespace

std::unique_ptr<CommWork> NcclCommunicator::send_recv(const at::Tensor& to_send_, int dst,
                                                      at::Tensor& to_recv, int src) {
  const std::string op =
      "send_recv (to rank " + std::to_string(dst) + ", from rank " + std::to_string(src) + ")";
  check_usable(op);
  trace_op(global_rank_, op, "begins");
  check_tensor(to_recv, op);
  if (!to_send_.is_cuda() || to_send_.get_device() != device_)
    check_tensor(to_send_, op);  // throws
  cudaStream_t current = at::cuda::getCurrentCUDAStream(device_).stream();
  // Peer copies are decided per launch, so every rank of a pair takes the same path; a capture
  // keeps NCCL (its host-side messages would not repeat at a graph's launches). They send rows at
  // a pitch as they are; NCCL needs one dense buffer.
  if (signal_ && signal_->peer_copies && capture_id_of(current) == 0) {
    if (const auto rows = tensor_rows(to_send_)) {
      return peer_copy_send_recv(to_send_, *rows, dst, to_recv, src, op);
    }
    const at::Tensor packed = dense(to_send_);
    return peer_copy_send_recv(packed, {1, packed.numel(), packed.numel()}, dst, to_recv, src, op);
  }
  at::Tensor to_send = dense(to_send_);  // the ring's K and V views: their rows packed
  check_tensor(to_send, op);
  cudaStream_t side = side_stream_->stream();
  // The side stream starts once the current stream has produced to_send.
  cudaEvent_t ready;
  check_cuda(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), op);
  check_cuda(cudaEventRecord(ready, current), op);
  check_cuda(cudaStreamWaitEvent(side, ready, 0), op);
  cudaEventDestroy(ready);
  // Both buffers are used on the side stream: keep the allocator from reusing them too early.
  c10::cuda::CUDACachingAllocator::recordStream(to_send.storage().data_ptr(), *side_stream_);
  c10::cuda::CUDACachingAllocator::recordStream(to_recv.storage().data_ptr(), *side_stream_);
  check(ncclGroupStart(), op);
  check(ncclSend(to_send.data_ptr(), static_cast<size_t>(to_send.numel() * to_send.element_size()),
                 ncclUint8, dst, comm_, side),
        op);
  check(ncclRecv(to_recv.data_ptr(), static_cast<size_t>(to_recv.numel() * to_recv.element_size()),
                 ncclUint8, src, comm_, side),
        op);
  check(ncclGroupEnd(), op);
  cudaEvent_t done = track(op, side);
  return std::make_unique<StreamEventWork>([done] { return done; }, device_);
}

// Several works as one: wait() waits for each in turn.
class WorkGroup : public CommWork {
 public:
  explicit WorkGroup(std::vector<std::unique_ptr<CommWork>> works) : works_(std::move(works)) {}
  void wait() override {
    for (auto& work : works_) work->wait();
    works_.clear();
  }

 private:
  std::vector<std::unique_ptr<CommWork>> works_;
};

std::unique_ptr<CommWork> NcclCommunicator::all_to_all_into(const at::Tensor& input_,
                                                            at::Tensor& output) {
  // Over the copy engines only where send_recv goes there (not inside a capture); else NCCL's
  // all-to-all on the current stream.
  if (!copies_to_peers() || capture_id_of(at::cuda::getCurrentCUDAStream(device_).stream()) != 0) {
    return Communicator::all_to_all_into(input_, output);
  }
  const std::string op = "all_to_all over copy engines";
  check_usable(op);
  at::Tensor input = input_.contiguous();
  check_tensor(input, op);
  check_tensor(output, op);
  if (input.dim() == 0 || input.size(0) % size_ != 0) {
    throw CommError(op + ": dim 0 of the input does not split into " + std::to_string(size_) +
                    " equal chunks");
  }
  if (output.sizes() != input.sizes() || output.scalar_type() != input.scalar_type() ||
      !output.is_contiguous()) {
    throw CommError(op + ": the output must be contiguous, of the input's shape and dtype");
  }
  // Chunk p of the input to rank p as a send/recv pair per shift: at shift s this rank sends to
  // rank + s and receives from rank - s, as every other rank does, so the pairs meet in order.
  const int64_t n = input.size(0) / size_;
  std::vector<std::unique_ptr<CommWork>> works;
  for (int shift = 1; shift < size_; ++shift) {
    const int dst = (rank_ + shift) % size_, src = (rank_ + size_ - shift) % size_;
    at::Tensor slot = output.narrow(0, src * n, n);
    works.push_back(send_recv(input.narrow(0, dst * n, n), dst, slot, src));
  }
  output.narrow(0, rank_ * n, n).copy_(input.narrow(0, rank_ * n, n));
  return std::make_unique<WorkGroup>(std::move(works));
}

PeerMailbox::Message NcclCommunicator::await_message(int from, int to, PeerMailbox::Kind kind,
                                                     const std::string& op) {
  PeerMailbox& mailbox = *signal_->peer_copies;
  const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
  PeerMailbox::Message message;
  while (!mailbox.take(group_, from, to, kind, message, std::chrono::milliseconds(1))) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!aborted_ && !abort_if_peer_failed() && std::chrono::steady_clock::now() > deadline) {
        abort_locked(global_rank_, "rank " + std::to_string(global_rank_) + " timed out in " + op +
                                       " after " + describe_seconds(options_.timeout));
      }
    }
    check_usable(op);
  }
  return message;
}

std::unique_ptr<CommWork> NcclCommunicator::peer_copy_send_recv(const at::Tensor& to_send,
                                                                const TensorRows& rows, int dst,
                                                                at::Tensor& to_recv, int src,
                                                                const std::string& op) {
  using Kind = PeerMailbox::Kind;
  PeerMailbox& mailbox = *signal_->peer_copies;
  cudaStream_t current = at::cuda::getCurrentCUDAStream(device_).stream();
  cudaStream_t side = side_stream_->stream();
  auto record = [&](cudaStream_t stream) {
    cudaEvent_t event;
    check_cuda(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), op);
    check_cuda(cudaEventRecord(event, stream), op);
    return event;
  };
  // 1. Tell src where to write: to_recv, once this rank's stream is done with its memory.
  const size_t recv_bytes = static_cast<size_t>(to_recv.numel() * to_recv.element_size());
  mailbox.post(group_, src, rank_, Kind::kDestination,
               {to_recv.data_ptr(), recv_bytes, device_, record(current)});
  // 2. Where dst wants to_send, and when its memory is free.
  const PeerMailbox::Message where = await_message(rank_, dst, Kind::kDestination, op);
  const size_t elem = static_cast<size_t>(to_send.element_size());
  const size_t send_bytes = static_cast<size_t>(to_send.numel()) * elem;
  if (where.bytes != send_bytes) {
    cudaEventDestroy(static_cast<cudaEvent_t>(where.event));
    const std::string reason = "rank " + std::to_string(global_rank_) + ": " + op + ": sends " +
                               std::to_string(send_bytes) + " bytes but rank " +
                               std::to_string(dst) + " of its group expects " +
                               std::to_string(where.bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      abort_locked(global_rank_, reason);
    }
    throw CommError(reason);
  }
  if (peer_access_.insert(where.device).second && where.device != device_) {
    cudaError_t err = cudaDeviceEnablePeerAccess(where.device, 0);
    if (err == cudaErrorPeerAccessAlreadyEnabled) {
      cudaGetLastError();  // clears it
    } else {
      check_cuda(err, op + ": cudaDeviceEnablePeerAccess(" + std::to_string(where.device) + ")");
    }
  }
  // 3. The copy, on the side stream once both ends are ready; no kernel, so no SM.
  cudaEvent_t ready = record(current);
  check_cuda(cudaStreamWaitEvent(side, ready, 0), op);
  cudaEventDestroy(ready);
  check_cuda(cudaStreamWaitEvent(side, static_cast<cudaEvent_t>(where.event), 0), op);
  cudaEventDestroy(static_cast<cudaEvent_t>(where.event));
  c10::cuda::CUDACachingAllocator::recordStream(to_send.storage().data_ptr(), *side_stream_);
  if (rows.rows == 1) {
    check_cuda(
        cudaMemcpyPeerAsync(where.ptr, where.device, to_send.data_ptr(), device_, send_bytes, side),
        op + ": cudaMemcpyPeerAsync");
  } else {
    // Rows at a pitch (a k or v view of a packed projection), packed densely at the receiver by
    // the copy engine itself: no gather kernel on either side.
    const size_t width = static_cast<size_t>(rows.row_elements) * elem;
    check_cuda(cudaMemcpy2DAsync(where.ptr, width, to_send.data_ptr(),
                                 static_cast<size_t>(rows.pitch) * elem, width,
                                 static_cast<size_t>(rows.rows), cudaMemcpyDefault, side),
               op + ": cudaMemcpy2DAsync");
  }
  // 4. Tell dst the copy is queued (its stream waits for this event), and watch it here.
  mailbox.post(group_, rank_, dst, Kind::kDelivered, {nullptr, send_bytes, device_, record(side)});
  cudaEventDestroy(track(op, side));
  // The caller's wait takes the event src posts once its copy into to_recv is queued.
  return std::make_unique<StreamEventWork>(
      [this, src, op] {
        return static_cast<cudaEvent_t>(
            await_message(src, rank_, PeerMailbox::Kind::kDelivered, op).event);
      },
      device_);
}

void NcclCommunicator::barrier() {
  const std::string op = "barrier";
  at::Tensor token =
      at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, device_));
  all_reduce_sum(token);
  synchronize(op);
}

// Polls an event behind the current stream's work rather than blocking on it: the rank's own
// thread then never sits inside the driver while a peer's failure is being handled (a blocking
// copy there held up the watchdogs' driver calls and the kernels were never freed). Each poll
// also looks for another rank's failure and the timeout, as the watchdog does.
void NcclCommunicator::synchronize(const std::string& op) {
  check_usable(op);
  if (capture_id_of(at::cuda::getCurrentCUDAStream(device_).stream()) != 0) {
    throw CommError("rank " + std::to_string(global_rank_) + ": " + op +
                    ": the stream is being captured into a CUDA graph; waiting for it on the "
                    "host would end the capture");
  }
  cudaEvent_t done = nullptr;
  check_cuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), op);
  const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
  cudaError_t state = cudaEventRecord(done, at::cuda::getCurrentCUDAStream(device_).stream());
  while (state == cudaSuccess) {
    state = cudaEventQuery(done);
    if (state != cudaErrorNotReady) break;
    state = cudaSuccess;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!aborted_ && !abort_if_peer_failed() && std::chrono::steady_clock::now() > deadline) {
        abort_locked(global_rank_, "rank " + std::to_string(global_rank_) + " timed out in " + op +
                                       " after " + describe_seconds(options_.timeout));
      }
    }
    try {
      check_usable(op);
    } catch (...) {
      cudaEventDestroy(done);
      throw;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  cudaEventDestroy(done);
  check_cuda(state, op);
}

std::unique_ptr<Communicator> NcclCommunicator::subgroup(int color, int key) {
  const std::string op = "subgroup";
  check_usable(op);
  trace_op(global_rank_, op, "begins");
  ncclComm_t child = nullptr;
  ncclConfig_t config = nonblocking_config();
  // A nonblocking split reports its progress on the parent; the child handle is set once the
  // parent is ready again.
  trace_rank(global_rank_, "split, color " + std::to_string(color));
  check(ncclCommSplit(comm_, color, key, &child, &config), op);
  wait_ready(op);
  trace_rank(global_rank_, "split done");
  if (!child)
    throw CommError("rank " + std::to_string(global_rank_) + ": " + op +
                    ": NCCL returned no communicator");
  auto sub = std::unique_ptr<NcclCommunicator>(
      new NcclCommunicator(child, global_rank_, device_, options_, signal_));
  // Splits run in the same order on every rank of this group, so the name agrees on the child's.
  sub->group_ = group_ + "/" + std::to_string(splits_++) + ":" + std::to_string(color);
  return sub;
}

namespace {

// The closing barrier of an in-process launch, on the host. An NCCL barrier would leave a kernel
// spinning on the GPU of every rank that arrived while a late rank still tears down its subgroup
// communicators, and that teardown waits for the peers' GPUs: ranks 1..3 sat in the barrier's
// all-reduce while rank 0, last after checking the cache decisions, never left the teardown.
// Ends with CommAborted when another rank fails, CommError past the timeout.
void wait_for_all_ranks(NcclAbortSignal& signal, int n, Communicator& comm,
                        const CommOptions& options) {
  const int me = comm.global_rank();
  trace_rank(me, "host barrier");
  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  std::unique_lock<std::mutex> lock(signal.mutex);
  ++signal.finished;
  signal.finished_cv.notify_all();
  while (signal.finished < n) {
    if (signal.failed_rank >= 0) {
      throw CommAborted(signal.failed_rank,
                        "rank " + std::to_string(me) + ": closing barrier aborted because rank " +
                            std::to_string(signal.failed_rank) + " failed: " + signal.reason);
    }
    if (std::chrono::steady_clock::now() > deadline) {
      throw CommError("rank " + std::to_string(me) + " timed out in the closing barrier after " +
                      describe_seconds(options.timeout) + " (" + std::to_string(signal.finished) +
                      " of " + std::to_string(n) + " ranks arrived)");
    }
    signal.finished_cv.wait_for(lock, std::chrono::milliseconds(50));
  }
  trace_rank(me, "host barrier passed");
}

}  // namespace

void launch_nccl_ranks(int n, const std::function<void(int rank, Communicator& comm)>& fn,
                       const CommOptions& options) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess) devices = 0;
  if (n > devices) {
    throw Unsupported("launch_ranks: " + std::to_string(n) + " NCCL ranks need " +
                      std::to_string(n) + " GPUs; this machine has " + std::to_string(devices));
  }
  const ncclUniqueId id = NcclCommunicator::new_unique_id();
  auto signal = std::make_shared<NcclAbortSignal>();
  // Peer copies unless DITBENCH_PEER_COPIES=0 asks for NCCL's send/recv kernels.
  const char* env = std::getenv("DITBENCH_PEER_COPIES");
  if (use_peer_copies(env, n, [](int a, int b) {
        int can = 0;
        return cudaDeviceCanAccessPeer(&can, a, b) == cudaSuccess && can;
      })) {
    signal->peer_copies = std::make_shared<PeerMailbox>();
    trace_rank(0, "send_recv over copy engines");
  } else {
    trace_rank(0, std::string("send_recv over NCCL: ") +
                      (env && std::string(env) == "0" ? "DITBENCH_PEER_COPIES=0"
                                                      : "not every pair of GPUs is peer-capable"));
  }
  // Frees the communicators a failure stopped, after the threads.
  DeferredRelease<std::pair<ncclComm_t, int>>::Scope teardown(stopped_communicators());
  detail::run_rank_threads(
      n,
      [&](int rank) {
        c10::cuda::set_device(static_cast<c10::DeviceIndex>(rank));
        // Never the legacy default stream: it synchronizes implicitly with every other stream of
        // the device, and NCCL's peers in this process can then wait on each other forever.
        c10::cuda::setCurrentCUDAStream(
            c10::cuda::getStreamFromPool(false, static_cast<c10::DeviceIndex>(rank)));
        return std::make_unique<NcclCommunicator>(id, n, rank, options, signal);
      },
      fn, [&](Communicator& comm) { wait_for_all_ranks(*signal, n, comm, options); });
}

}  // namespace ditbench
#endif  // DITBENCH_HAS_NCCL
