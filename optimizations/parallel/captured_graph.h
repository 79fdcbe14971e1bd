#pragma once
// CUDA graphs that hold communication. Work enqueued while a stream is being captured does not run
// then: it runs at each launch of the graph. So an event recorded during the capture completes only
// inside a launch (the NCCL watchdog must not wait for it), and a timing event records nothing at a
// launch unless it is a node of the graph (cudaEventRecordExternal). What records such work
// during a capture (the NCCL communicator, the communication timer) listens to that capture
// (GraphListener::listen_to with capture_id_of the stream), and CapturedGraph, the one place that
// captures and launches graphs, tells the capture's listeners when its graph is instantiated,
// before and after each launch, and when it is released. Compiled with CUDA only.
#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <string>

namespace ditbench {

// The id of the capture that `stream` takes part in (the stream that began it, or one that joined
// it by waiting on an event recorded there); 0 when the stream is not capturing.
uint64_t capture_id_of(cudaStream_t stream);

// Hears of the graphs of the captures it listens to. Calls come on the thread that launches the
// graph; a listener must not be destroyed on another thread while that thread launches.
class GraphListener {
 public:
  GraphListener() = default;
  GraphListener(const GraphListener&) = delete;
  GraphListener& operator=(const GraphListener&) = delete;
  virtual ~GraphListener();  // stops listening

  // The graph of capture `id` was instantiated: `graph` holds its nodes, `exec` is what launches.
  virtual void graph_instantiated(uint64_t id, cudaGraph_t graph, cudaGraphExec_t exec) {
    (void)id, (void)graph, (void)exec;
  }
  // `exec` is about to be launched; throwing stops the launch. `what` names the graph in messages.
  virtual void before_graph_launch(uint64_t id, cudaGraphExec_t exec, const std::string& what) {
    (void)id, (void)exec, (void)what;
  }
  // The graph was launched on `stream`: work recorded there from now on follows the whole graph.
  virtual void after_graph_launch(uint64_t id, cudaStream_t stream, const std::string& what) {
    (void)id, (void)stream, (void)what;
  }
  // The graph is gone (or its capture failed): nothing kept for it is needed any more.
  virtual void graph_released(uint64_t id) { (void)id; }

 protected:
  // Called while a stream captures: from now on this listener hears of capture `id`'s graph.
  // Calling it again for the same capture changes nothing.
  void listen_to(uint64_t id);
};

// One graph captured from the current stream of the calling thread, launched there and told to the
// listeners of its capture.
class CapturedGraph {
 public:
  CapturedGraph();
  ~CapturedGraph();  // tells the listeners that the graph is released
  CapturedGraph(const CapturedGraph&) = delete;
  CapturedGraph& operator=(const CapturedGraph&) = delete;

  // Begins capturing the current stream (not the legacy default stream) with memory from `pool`.
  // Thread-local capture mode: CUDA calls of other threads (the other ranks of an in-process
  // launch, the communicators' watchdogs) neither invalidate the capture nor fail, while an unsafe
  // call of this thread (a host sync) still fails the capture instead of silently breaking it.
  void begin(at::cuda::MempoolId_t pool);
  // Ends the capture and instantiates the graph (listeners: graph_instantiated).
  void end();
  // Ends a capture that failed; the graph can never launch, its listeners drop it. Never throws.
  void abandon() noexcept;
  // Launches the graph on the current stream (listeners: before and after each launch).
  void launch(const std::string& what);

  uint64_t id() const { return id_; }

 private:
  void release() noexcept;
  std::unique_ptr<at::cuda::CUDAGraph> graph_;
  at::cuda::MempoolId_t pool_{0, 0};
  uint64_t id_ = 0;
  bool instantiated_ = false;
};

}  // namespace ditbench
#endif  // DITBENCH_HAS_CUDA
