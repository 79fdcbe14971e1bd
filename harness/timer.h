#pragma once
// StageTimer: times named stages of a run (DESIGN.md: text_embed, prepare_latents, denoise, step,
// transformer, cache, scheduler, vae_decode, postprocess, e2e). Host time always, from
// std::chrono::steady_clock; on CUDA also GPU time from events recorded on the current stream, and
// an NVTX range per stage so Nsight Systems shows the same names. Nothing synchronizes inside the
// timed region: collect() synchronizes once, after the last stage ended.
#include <ATen/ATen.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ditbench {

struct StageSpan {
  std::string name;
  int depth = 0;                   // nesting level when it began (0 = outermost)
  double host_s = 0;               // steady_clock duration
  std::optional<double> device_s;  // CUDA event duration, when timed on a GPU
  double seconds() const { return device_s.value_or(host_s); }
};

struct TimingResult {
  std::vector<StageSpan> spans;  // in the order the stages began

  // Durations of one stage's spans in order: GPU time when measured, host time otherwise.
  std::vector<double> seconds(const std::string& name) const;
  std::vector<double> host_seconds(const std::string& name) const;
  // Stage name -> its spans' durations (GPU time when measured).
  std::map<std::string, std::vector<double>> by_stage() const;
};

// Told of each stage as it begins and ends, on the thread that runs it; `span` is the stage's
// index in the TimingResult that collect() returns (the kernel profile tags the CUDA calls made
// inside each stage with it).
class StageObserver {
 public:
  virtual ~StageObserver() = default;
  virtual void stage_begun(size_t span) = 0;
  virtual void stage_ended(size_t span) = 0;
};

class StageTimer {
 public:
  explicit StageTimer(at::Device device);
  ~StageTimer();
  StageTimer(const StageTimer&) = delete;
  StageTimer& operator=(const StageTimer&) = delete;

  // Ends its stage when destroyed. Stages nest and may repeat ("step" once per denoising step).
  class ScopedStage {
   public:
    ScopedStage(ScopedStage&& other) noexcept;
    ScopedStage(const ScopedStage&) = delete;
    ScopedStage& operator=(const ScopedStage&) = delete;
    ScopedStage& operator=(ScopedStage&&) = delete;
    ~ScopedStage();
    void end();  // ends early; the destructor then does nothing

   private:
    friend class StageTimer;
    ScopedStage(StageTimer* timer, size_t index) : timer_(timer), index_(index) {}
    StageTimer* timer_;
    size_t index_;
  };

  ScopedStage scope(const std::string& name);
  // Waits for the device once, then returns every span and clears the timer for the next run.
  // Throws std::logic_error when a stage is still open.
  TimingResult collect();

  at::Device device() const { return device_; }
  // At most one observer; null removes it.
  void set_observer(StageObserver* observer) { observer_ = observer; }

 private:
  struct OpenSpan;
  void end_span(size_t index);

  at::Device device_;
  std::vector<std::unique_ptr<OpenSpan>> spans_;
  int depth_ = 0;
  StageObserver* observer_ = nullptr;
};

}  // namespace ditbench
