#include "optimizations/parallel/timed_communicator.h"

#include <chrono>

#ifdef DITBENCH_HAS_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace ditbench {

namespace {

#ifdef DITBENCH_HAS_CUDA
// A timing event, shared by the span that reads it and the graph node that records it.
struct Event {
  cudaEvent_t handle = nullptr;
  ~Event() {
    if (handle) cudaEventDestroy(handle);
  }
};
using EventPtr = std::shared_ptr<Event>;

// Notes the first failure in `error` (and clears CUDA's last error, which a later kernel launch
// check would otherwise report as its own).
bool cuda_ok(cudaError_t result, const char* what, std::string& error) {
  if (result == cudaSuccess) return true;
  (void)cudaGetLastError();
  if (error.empty()) error = std::string(what) + ": " + cudaGetErrorString(result);
  return false;
}

// A timing event on the current device (null, with the reason in `error`, when that fails).
EventPtr timing_event(std::string& error) {
  auto event = std::make_shared<Event>();
  if (!cuda_ok(cudaEventCreate(&event->handle), "creating a communication timing event", error))
    return nullptr;
  return event;
}
#endif

}  // namespace

struct CommTimeCounter::Span {
  std::chrono::steady_clock::time_point host_start;
  int step = -1;
  bool ended = false;
  std::string error;  // why its time cannot be read
#ifdef DITBENCH_HAS_CUDA
  int device = -1;       // >= 0: timed by CUDA events recorded on that device's current stream
  uint64_t capture = 0;  // recorded into this capture: its graph's launches are timed instead
  EventPtr start, stop;
#endif
};

#ifdef DITBENCH_HAS_CUDA
// A graph holding spans: the event-record nodes of each span, and the events they record now.
struct CommTimeCounter::Graph {
  struct Timed {
    cudaGraphNode_t start_node = nullptr, stop_node = nullptr;
    int device = -1;
    EventPtr start, stop;  // set in the executable graph; kept alive while it may launch
  };
  std::vector<size_t> spans;  // in captured_
  std::vector<Timed> timed;
  std::string not_measured;  // why some span of the graph cannot be timed at its launches
};
#else
struct CommTimeCounter::Graph {};
#endif

namespace {
// Span ids with this bit name a span in captured_, others one in spans_.
constexpr size_t kCaptured = ~(~size_t{0} >> 1);
}  // namespace

CommTimeCounter::CommTimeCounter() = default;

CommTimeCounter::~CommTimeCounter() {
#ifdef DITBENCH_HAS_CUDA
  // A graph that outlives this counter still records into the events its nodes hold: they are
  // left to it, not destroyed.
  for (auto& [id, graph] : graphs_) {
    for (auto& t : graph.timed) {
      if (t.start) t.start->handle = nullptr;
      if (t.stop) t.stop->handle = nullptr;
    }
  }
#endif
}

CommTimeCounter::Span* CommTimeCounter::span_at(size_t id) {
  if (id & kCaptured) return captured_.at(id & ~kCaptured).get();  // null once its graph is gone
  return spans_.at(id).get();
}

size_t CommTimeCounter::begin(const at::Device& device) {
  auto span = std::make_unique<Span>();
  span->step = step_;
  span->host_start = std::chrono::steady_clock::now();
#ifdef DITBENCH_HAS_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDAGuard guard(device.index());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device.index()).stream();
    span->device = device.index();
    span->capture = capture_id_of(stream);
    span->start = timing_event(span->error);
    span->stop = timing_event(span->error);
    if (span->error.empty()) {
      // In a capture: an event node of the graph, recorded at each launch.
      cuda_ok(span->capture
                  ? cudaEventRecordWithFlags(span->start->handle, stream, cudaEventRecordExternal)
                  : cudaEventRecord(span->start->handle, stream),
              "recording a communication timing event", span->error);
    }
    if (span->capture) {
      listen_to(span->capture);
      graphs_[span->capture].spans.push_back(captured_.size());
      captured_.push_back(std::move(span));
      return kCaptured | (captured_.size() - 1);
    }
  }
#else
  (void)device;
#endif
  spans_.push_back(std::move(span));
  return spans_.size() - 1;
}

void CommTimeCounter::end(size_t id) {
  Span* found = span_at(id);
  if (!found) return;
  Span& span = *found;
  span.ended = true;
#ifdef DITBENCH_HAS_CUDA
  if (span.device >= 0) {
    if (span.error.empty()) {
      c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(span.device));
      const cudaStream_t stream =
          c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(span.device)).stream();
      cuda_ok(span.capture
                  ? cudaEventRecordWithFlags(span.stop->handle, stream, cudaEventRecordExternal)
                  : cudaEventRecord(span.stop->handle, stream),
              "recording a communication timing event", span.error);
    }
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
    if (!span->ended || span->device < 0) continue;
    std::string error = span->error;
    float ms = 0;
    if (error.empty() && cuda_ok(cudaEventSynchronize(span->stop->handle),
                                 "waiting for a communication span", error)) {
      cuda_ok(cudaEventElapsedTime(&ms, span->start->handle, span->stop->handle),
              "reading a communication span's time", error);
    }
    if (!error.empty()) {
      if (times.not_measured.empty()) times.not_measured = error;
      continue;
    }
    add(span->step, ms / 1000.0, times);
  }
#endif
  host_ = CommTimes{};
  spans_.clear();
  return times;
}

#ifdef DITBENCH_HAS_CUDA
void CommTimeCounter::graph_instantiated(uint64_t id, cudaGraph_t graph, cudaGraphExec_t) {
  auto it = graphs_.find(id);
  if (it == graphs_.end()) return;
  Graph& g = it->second;
  // The graph's event-record nodes by the event they record.
  std::map<cudaEvent_t, cudaGraphNode_t> node_of;
  size_t count = 0;
  if (cuda_ok(cudaGraphGetNodes(graph, nullptr, &count), "listing the graph's nodes",
              g.not_measured)) {
    std::vector<cudaGraphNode_t> nodes(count);
    if (cuda_ok(cudaGraphGetNodes(graph, nodes.data(), &count), "listing the graph's nodes",
                g.not_measured)) {
      for (cudaGraphNode_t node : nodes) {
        cudaGraphNodeType type{};
        cudaEvent_t event = nullptr;
        if (cudaGraphNodeGetType(node, &type) == cudaSuccess &&
            type == cudaGraphNodeTypeEventRecord &&
            cudaGraphEventRecordNodeGetEvent(node, &event) == cudaSuccess) {
          node_of[event] = node;
        }
      }
      (void)cudaGetLastError();
    }
  }
  for (size_t index : g.spans) {
    const Span& span = *captured_.at(index);
    if (!span.error.empty()) {
      if (g.not_measured.empty()) g.not_measured = span.error;
      continue;
    }
    auto start = node_of.find(span.start->handle), stop = node_of.find(span.stop->handle);
    if (!span.ended || start == node_of.end() || stop == node_of.end()) {
      if (g.not_measured.empty())
        g.not_measured = "a communication span inside a CUDA graph has no event node";
      continue;
    }
    g.timed.push_back({start->second, stop->second, span.device, span.start, span.stop});
  }
}

void CommTimeCounter::before_graph_launch(uint64_t id, cudaGraphExec_t exec,
                                          const std::string& what) {
  auto it = graphs_.find(id);
  if (it == graphs_.end()) return;
  Graph& g = it->second;
  const auto now = std::chrono::steady_clock::now();
  if (!g.not_measured.empty()) {
    auto span = std::make_unique<Span>();
    span->ended = true;
    span->device = g.timed.empty() ? 0 : g.timed.front().device;
    span->error = what + ": " + g.not_measured;
    spans_.push_back(std::move(span));
  }
  for (Graph::Timed& t : g.timed) {
    // Fresh events for this launch: the nodes record into them, the span reads them in take().
    auto span = std::make_unique<Span>();
    span->step = step_;
    span->host_start = now;
    span->ended = true;
    span->device = t.device;
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(t.device));
    span->start = timing_event(span->error);
    span->stop = timing_event(span->error);
    if (span->error.empty() &&
        cuda_ok(cudaGraphExecEventRecordNodeSetEvent(exec, t.start_node, span->start->handle),
                "setting a graph's timing event", span->error)) {
      t.start = span->start;
      if (cuda_ok(cudaGraphExecEventRecordNodeSetEvent(exec, t.stop_node, span->stop->handle),
                  "setting a graph's timing event", span->error)) {
        t.stop = span->stop;
      }
    }
    spans_.push_back(std::move(span));
  }
}

void CommTimeCounter::graph_released(uint64_t id) {
  auto it = graphs_.find(id);
  if (it == graphs_.end()) return;
  for (size_t index : it->second.spans) captured_.at(index).reset();
  graphs_.erase(it);
}
#endif

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

std::unique_ptr<CommWork> TimedCommunicator::all_to_all_into(const at::Tensor& input,
                                                             at::Tensor& output) {
  std::unique_ptr<CommWork> work;
  {
    SpanGuard span(*counter_, input.device());
    work = inner_->all_to_all_into(input, output);
  }
  return std::make_unique<TimedWork>(std::move(work), *counter_, input.device());
}

std::unique_ptr<Communicator> TimedCommunicator::subgroup(int color, int key) {
  return std::make_unique<TimedCommunicator>(inner_->subgroup(color, key), counter_);
}

}  // namespace ditbench
