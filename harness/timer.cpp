#include "harness/timer.h"

#include <stdexcept>

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#endif
#ifdef DITBENCH_HAS_NVTX
#include <nvtx3/nvToolsExt.h>
#endif

namespace ditbench {

using Clock = std::chrono::steady_clock;

struct StageTimer::OpenSpan {
  std::string name;
  int depth = 0;
  Clock::time_point host_begin, host_end;
  bool ended = false;
#ifdef DITBENCH_HAS_CUDA
  // Timing-enabled events (the default CUDAEvent disables timing).
  std::unique_ptr<at::cuda::CUDAEvent> begin_event, end_event;
#endif
};

StageTimer::StageTimer(at::Device device) : device_(device) {}
StageTimer::~StageTimer() = default;

StageTimer::ScopedStage StageTimer::scope(const std::string& name) {
  auto span = std::make_unique<OpenSpan>();
  span->name = name;
  span->depth = depth_++;
  if (observer_) observer_->stage_begun(spans_.size());
#ifdef DITBENCH_HAS_NVTX
  nvtxRangePushA(name.c_str());
#endif
#ifdef DITBENCH_HAS_CUDA
  if (device_.is_cuda()) {
    span->begin_event = std::make_unique<at::cuda::CUDAEvent>(cudaEventDefault);
    span->end_event = std::make_unique<at::cuda::CUDAEvent>(cudaEventDefault);
    span->begin_event->record(at::cuda::getCurrentCUDAStream(device_.index()));
  }
#endif
  span->host_begin = Clock::now();
  spans_.push_back(std::move(span));
  return ScopedStage(this, spans_.size() - 1);
}

void StageTimer::end_span(size_t index) {
  OpenSpan& span = *spans_.at(index);
  if (span.ended) return;
  span.host_end = Clock::now();
#ifdef DITBENCH_HAS_CUDA
  if (span.end_event) span.end_event->record(at::cuda::getCurrentCUDAStream(device_.index()));
#endif
#ifdef DITBENCH_HAS_NVTX
  nvtxRangePop();
#endif
  span.ended = true;
  --depth_;
  if (observer_) observer_->stage_ended(index);
}

TimingResult StageTimer::collect() {
  for (const auto& span : spans_)
    if (!span->ended)
      throw std::logic_error("StageTimer::collect: stage \"" + span->name + "\" is still open");
#ifdef DITBENCH_HAS_CUDA
  // One wait for the whole run: the last recorded end event follows every earlier one on the
  // stream, but stages may have used different current streams, so wait on each (cheap once done).
  for (const auto& span : spans_)
    if (span->end_event) span->end_event->synchronize();
#endif
  TimingResult result;
  for (const auto& span : spans_) {
    StageSpan out;
    out.name = span->name;
    out.depth = span->depth;
    out.host_s = std::chrono::duration<double>(span->host_end - span->host_begin).count();
#ifdef DITBENCH_HAS_CUDA
    if (span->begin_event && span->end_event)
      out.device_s = span->begin_event->elapsed_time(*span->end_event) / 1000.0;
#endif
    result.spans.push_back(std::move(out));
  }
  spans_.clear();
  depth_ = 0;
  return result;
}

StageTimer::ScopedStage::ScopedStage(ScopedStage&& other) noexcept
    : timer_(other.timer_), index_(other.index_) {
  other.timer_ = nullptr;
}

StageTimer::ScopedStage::~ScopedStage() { end(); }

void StageTimer::ScopedStage::end() {
  if (timer_) timer_->end_span(index_);
  timer_ = nullptr;
}

std::vector<double> TimingResult::seconds(const std::string& name) const {
  std::vector<double> out;
  for (const auto& s : spans)
    if (s.name == name) out.push_back(s.seconds());
  return out;
}

std::vector<double> TimingResult::host_seconds(const std::string& name) const {
  std::vector<double> out;
  for (const auto& s : spans)
    if (s.name == name) out.push_back(s.host_s);
  return out;
}

std::map<std::string, std::vector<double>> TimingResult::by_stage() const {
  std::map<std::string, std::vector<double>> out;
  for (const auto& s : spans) out[s.name].push_back(s.seconds());
  return out;
}

}  // namespace ditbench
