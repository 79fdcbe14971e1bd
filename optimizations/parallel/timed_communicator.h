#pragma once
// Communication time of a rank: a Communicator decorator that times every operation it forwards,
// so runners report how long a generation spent communicating whatever the backend. Time is what
// the rank's work stream spends inside (or waiting for) communication: CUDA events around the
// operation on the current stream for GPU tensors, the host clock for CPU tensors. A send_recv
// that overlaps compute counts only its wait(), i.e. the part the overlap did not hide.
//
// Inside a CUDA graph capture the span's events are recorded as event nodes of the graph
// (cudaEventRecordExternal), which record at every launch; before each launch the counter gives
// those nodes fresh events (cudaGraphExecEventRecordNodeSetEvent), so every replay is timed into
// the step it ran in, without a host sync, however often the graph launches between take()s.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "optimizations/parallel/captured_graph.h"
#include "optimizations/parallel/communicator.h"

namespace ditbench {

// Communication seconds of one generation: in all, and per denoising step (steps_s[i] for step
// i; spans outside the steps, e.g. before the first, count only in total_s).
struct CommTimes {
  double total_s = 0;
  std::vector<double> steps_s;
  // Why some span could not be timed (its time is in neither sum); empty when every span was.
  std::string not_measured;
};

// Sums communication spans of one rank thread (shared by a communicator and its subgroups).
class CommTimeCounter
#ifdef DITBENCH_HAS_CUDA
    : public GraphListener
#endif
{
 public:
  CommTimeCounter();
  ~CommTimeCounter();
  CommTimeCounter(const CommTimeCounter&) = delete;
  CommTimeCounter& operator=(const CommTimeCounter&) = delete;

  // Opens a span on `device` (its current stream on a GPU) and returns its id for end(). While the
  // stream is being captured, the span is timed at each launch of the graph instead.
  size_t begin(const at::Device& device);
  void end(size_t span);
  // Spans that begin from now on belong to denoising step `step` (-1: outside the steps); so do
  // the spans inside a graph launched from now on.
  void set_step(int step) { step_ = step; }
  // The spans ended since the last take (waits for GPU spans to complete).
  CommTimes take();

#ifdef DITBENCH_HAS_CUDA
  void graph_instantiated(uint64_t id, cudaGraph_t graph, cudaGraphExec_t exec) override;
  void before_graph_launch(uint64_t id, cudaGraphExec_t exec, const std::string& what) override;
  void graph_released(uint64_t id) override;
#endif

 private:
  struct Span;
  struct Graph;
  Span* span_at(size_t id);
  void add(int step, double seconds, CommTimes& into) const;
  std::vector<std::unique_ptr<Span>> spans_;     // ended or open, since the last take
  std::vector<std::unique_ptr<Span>> captured_;  // recorded into graphs still alive
  std::map<uint64_t, Graph> graphs_;             // by capture id
  CommTimes host_;                               // spans timed by the host clock
  int step_ = -1;
};

class TimedCommunicator : public Communicator {
 public:
  // Wraps `inner` (not owned; must outlive this) and adds its time to `counter`.
  TimedCommunicator(Communicator& inner, std::shared_ptr<CommTimeCounter> counter);
  TimedCommunicator(std::unique_ptr<Communicator> owned, std::shared_ptr<CommTimeCounter> counter);

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  int global_rank() const override { return inner_->global_rank(); }
  std::string send_recv_transport() const override { return inner_->send_recv_transport(); }

  at::Tensor all_to_all(const at::Tensor& input) override;
  std::unique_ptr<CommWork> all_to_all_into(const at::Tensor& input, at::Tensor& output) override;
  at::Tensor all_gather(const at::Tensor& input) override;
  void all_reduce_sum(at::Tensor& tensor) override;
  void send(const at::Tensor& tensor, int dst) override;
  void recv(at::Tensor& tensor, int src) override;
  std::unique_ptr<CommWork> send_recv(const at::Tensor& to_send, int dst, at::Tensor& to_recv,
                                      int src) override;
  void barrier() override { inner_->barrier(); }
  void synchronize(const std::string& op) override { inner_->synchronize(op); }
  // The subgroup is timed into the same counter.
  std::unique_ptr<Communicator> subgroup(int color, int key) override;
  void abort(const std::string& reason) override { inner_->abort(reason); }

  CommTimeCounter& counter() { return *counter_; }

 private:
  std::unique_ptr<Communicator> owned_;
  Communicator* inner_;
  std::shared_ptr<CommTimeCounter> counter_;
};

}  // namespace ditbench
