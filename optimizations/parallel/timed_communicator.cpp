#include "optimizations/parallel/timed_communicator.h"

#include <chrono>

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace ditbench {

struct CommTimeCounter::Span {
  std::chrono::steady_clock::time_point host_start;
  int step = -1;
  bool ended = false;
#ifdef DITBENCH_HAS_CUDA
  // Both recorded on the device's current stream: the span covers the work enqueued between.
  std::unique_ptr<at::cuda::CUDAEvent> start, stop;
#endif
};

CommTimeCounter::CommTimeCounter() = default;
CommTimeCounter::~CommTimeCounter() = default;

size_t CommTimeCounter::begin(const at::Device& device) {
  auto span = std::make_unique<Span>();
#ifdef DITBENCH_HAS_CUDA
  if (device.is_cuda()) {
    span->start = std::make_unique<at::cuda::CUDAEvent>(cudaEventDefault);
    span->stop = std::make_unique<at::cuda::CUDAEvent>(cudaEventDefault);
    span->start->record(c10::cuda::getCurrentCUDAStream(device.index()));
  }
#else
  (void)device;
#endif
  span->step = step_;
  span->host_start = std::chrono::steady_clock::now();
  spans_.push_back(std::move(span));
  return spans_.size() - 1;
}

void CommTimeCounter::end(size_t index) {
  Span& span = *spans_.at(index);
  span.ended = true;
#ifdef DITBENCH_HAS_CUDA
  if (span.stop) {
    span.stop->record(c10::cuda::getCurrentCUDAStream(span.start->device_index()));
    return;  // its time is read in take(), once the GPU got there
  }
#endif
  add(span.step,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - span.host_start).count(),
      host_);
}

void CommTimeCounter::add(int step, double seconds, CommTimes& into) const {
  into.total_s += seconds;
  if (step < 0) return;
  if (into.steps_s.size() <= static_cast<size_t>(step)) into.steps_s.resize(step + 1, 0.0);
  into.steps_s[static_cast<size_t>(step)] += seconds;
}

CommTimes CommTimeCounter::take() {
  CommTimes times = std::move(host_);
#ifdef DITBENCH_HAS_CUDA
  for (auto& span : spans_) {
    if (!span->ended || !span->stop) continue;
    span->stop->synchronize();
    add(span->step, span->start->elapsed_time(*span->stop) / 1000.0, times);
  }
#endif
  host_ = CommTimes{};
  spans_.clear();
  return times;
}

namespace {

// Ends its span when the operation returns or throws.
class SpanGuard {
 public:
  SpanGuard(CommTimeCounter& counter, const at::Device& device)
      : counter_(counter), span_(counter.begin(device)) {}
  ~SpanGuard() { counter_.end(span_); }
  SpanGuard(const SpanGuard&) = delete;
  SpanGuard& operator=(const SpanGuard&) = delete;

 private:
  CommTimeCounter& counter_;
  size_t span_;
};

// The inner work, with its wait() timed: the time the rank still had to wait after its overlap.
class TimedWork : public CommWork {
 public:
  TimedWork(std::unique_ptr<CommWork> inner, CommTimeCounter& counter, at::Device device)
      : inner_(std::move(inner)), counter_(counter), device_(device) {}
  ~TimedWork() override {
    if (!waited_) {
      try {
        wait();
      } catch (...) {
        // A destructor must not throw; the inner work's own destructor reports nothing either.
      }
    }
  }
  void wait() override {
    waited_ = true;
    SpanGuard span(counter_, device_);
    inner_->wait();
  }

 private:
  std::unique_ptr<CommWork> inner_;
  CommTimeCounter& counter_;
  at::Device device_;
  bool waited_ = false;
};

}  // namespace

TimedCommunicator::TimedCommunicator(Communicator& inner, std::shared_ptr<CommTimeCounter> counter)
    : inner_(&inner), counter_(std::move(counter)) {}

TimedCommunicator::TimedCommunicator(std::unique_ptr<Communicator> owned,
                                     std::shared_ptr<CommTimeCounter> counter)
    : owned_(std::move(owned)), inner_(owned_.get()), counter_(std::move(counter)) {}

at::Tensor TimedCommunicator::all_to_all(const at::Tensor& input) {
  SpanGuard span(*counter_, input.device());
  return inner_->all_to_all(input);
}

at::Tensor TimedCommunicator::all_gather(const at::Tensor& input) {
  SpanGuard span(*counter_, input.device());
  return inner_->all_gather(input);
}

void TimedCommunicator::all_reduce_sum(at::Tensor& tensor) {
  SpanGuard span(*counter_, tensor.device());
  inner_->all_reduce_sum(tensor);
}

void TimedCommunicator::send(const at::Tensor& tensor, int dst) {
  SpanGuard span(*counter_, tensor.device());
  inner_->send(tensor, dst);
}

void TimedCommunicator::recv(at::Tensor& tensor, int src) {
  SpanGuard span(*counter_, tensor.device());
  inner_->recv(tensor, src);
}

std::unique_ptr<CommWork> TimedCommunicator::send_recv(const at::Tensor& to_send, int dst,
                                                       at::Tensor& to_recv, int src) {
  std::unique_ptr<CommWork> work;
  {
    SpanGuard span(*counter_, to_send.device());
    work = inner_->send_recv(to_send, dst, to_recv, src);
  }
  return std::make_unique<TimedWork>(std::move(work), *counter_, to_send.device());
}

std::unique_ptr<Communicator> TimedCommunicator::subgroup(int color, int key) {
  return std::make_unique<TimedCommunicator>(inner_->subgroup(color, key), counter_);
}

}  // namespace ditbench
