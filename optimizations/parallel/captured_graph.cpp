#include "optimizations/parallel/captured_graph.h"

#ifdef DITBENCH_HAS_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace ditbench {

namespace {

// The listeners of every capture whose graph is alive (or still being captured).
struct Listeners {
  std::mutex mutex;
  std::unordered_map<uint64_t, std::vector<GraphListener*>> by_capture;
};

Listeners& listeners() {
  static auto* all = new Listeners;  // never destroyed: listeners may stop listening at exit
  return *all;
}

// The listeners of capture `id` now; called outside the lock, so a listener may call back.
std::vector<GraphListener*> listeners_of(uint64_t id) {
  Listeners& all = listeners();
  std::lock_guard<std::mutex> lock(all.mutex);
  auto it = all.by_capture.find(id);
  return it == all.by_capture.end() ? std::vector<GraphListener*>{} : it->second;
}

}  // namespace

uint64_t capture_id_of(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  unsigned long long id = 0;
  if (cudaStreamGetCaptureInfo(stream, &status, &id) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  // An invalidated capture still counts: work recorded into it must not reach the host either.
  return status == cudaStreamCaptureStatusNone ? 0 : static_cast<uint64_t>(id);
}

GraphListener::~GraphListener() {
  Listeners& all = listeners();
  std::lock_guard<std::mutex> lock(all.mutex);
  for (auto& [id, list] : all.by_capture)
    list.erase(std::remove(list.begin(), list.end(), this), list.end());
}

void GraphListener::listen_to(uint64_t id) {
  Listeners& all = listeners();
  std::lock_guard<std::mutex> lock(all.mutex);
  auto& list = all.by_capture[id];
  if (std::find(list.begin(), list.end(), this) == list.end()) list.push_back(this);
}

CapturedGraph::CapturedGraph() = default;

CapturedGraph::~CapturedGraph() { release(); }

void CapturedGraph::begin(at::cuda::MempoolId_t pool) {
  graph_ = std::make_unique<at::cuda::CUDAGraph>(/*keep_graph=*/true);
  pool_ = pool;
  graph_->capture_begin(pool, cudaStreamCaptureModeThreadLocal);
  id_ = capture_id_of(c10::cuda::getCurrentCUDAStream().stream());
}

void CapturedGraph::end() {
  graph_->capture_end();
  graph_->instantiate();
  instantiated_ = true;
  const cudaGraph_t graph = graph_->raw_cuda_graph();
  const cudaGraphExec_t exec = graph_->raw_cuda_graph_exec();
  for (GraphListener* l : listeners_of(id_)) l->graph_instantiated(id_, graph, exec);
}

void CapturedGraph::abandon() noexcept {
  if (graph_ && !instantiated_) {
    const c10::DeviceIndex device = c10::cuda::current_device();
    try {
      graph_->capture_end();
    } catch (...) {
      // An invalidated capture fails to end before the allocator stops serving it from the
      // graph's pool; stop that here, or every later free on this device waits for the capture.
      try {
        c10::cuda::CUDACachingAllocator::endAllocateToPool(device, pool_);
      } catch (...) {
      }
      (void)cudaGetLastError();
    }
  }
  release();
  graph_.reset();
  instantiated_ = false;
}

void CapturedGraph::launch(const std::string& what) {
  const cudaGraphExec_t exec = graph_->raw_cuda_graph_exec();
  const std::vector<GraphListener*> told = listeners_of(id_);
  for (GraphListener* l : told) l->before_graph_launch(id_, exec, what);
  graph_->replay();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  for (GraphListener* l : told) l->after_graph_launch(id_, stream, what);
}

void CapturedGraph::release() noexcept {
  if (id_ == 0) return;
  std::vector<GraphListener*> told;
  {
    Listeners& all = listeners();
    std::lock_guard<std::mutex> lock(all.mutex);
    auto it = all.by_capture.find(id_);
    if (it != all.by_capture.end()) {
      told = std::move(it->second);
      all.by_capture.erase(it);
    }
  }
  for (GraphListener* l : told) l->graph_released(id_);
  id_ = 0;
}

}  // namespace ditbench
#endif  // DITBENCH_HAS_CUDA
