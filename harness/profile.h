#pragma once
// Kernel profile of one generation by category (suite key "profile": true): a CUPTI Activity-API
// collector records every kernel, memcpy and memset (name, start, end, stream) and tags the CUDA
// calls made inside each StageTimer stage with the stage (CUPTI external correlation), so the
// record gets, per stage, the GPU time per kernel category and the launch gaps (stage wall time
// minus the union of its kernels' intervals), and the Chrome trace gets the kernels as slices.
// The classification and the breakdown are pure functions, tested on the CPU; the collector
// needs a CUPTI build and a CUDA device and runs on the GPU machine.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "harness/record.h"
#include "harness/timer.h"
#include "reports/trace.h"

namespace ditbench {

enum class KernelCategory {
  kGemm,            // cuBLAS(Lt), CUTLASS and nvjet GEMMs, FP8 scaled matmuls, convolutions
  kAttention,       // flash, memory-efficient, cuDNN SDPA and fused multi-head attention kernels
  kCommunication,   // NCCL
  kNormModulation,  // LayerNorm, RMSNorm, GroupNorm and their statistics; fused norm + modulate
  kRope,            // rotary embeddings, fused QK-norm + RoPE
  kElementwise,     // pointwise and reduction kernels (activations, adds, gates, casts, means)
  kCopy,            // memcpy and memset activities, copy/concatenate/transpose kernels
  kOther,
};

// The record's name of a category: gemm, attention, communication, norm_modulation, rope,
// elementwise, copy, other.
const char* category_name(KernelCategory category);
// Every category in the order reports print them.
const std::vector<KernelCategory>& kernel_categories();

// Category of a kernel by its (mangled or demangled) name; memory operations (CUPTI's memcpy and
// memset activities) are copies whatever their name.
KernelCategory classify_kernel(std::string_view name, bool memory_operation = false);

// "void at::native::foo<float, 4>(Args)" -> "at::native::foo": a kernel's name without its return
// type, template arguments and parameters (a mangled name is demangled first).
std::string short_kernel_name(std::string_view name);

// One GPU activity of the profiled generation.
struct KernelActivity {
  std::string name;  // demangled kernel name, or "memcpy DtoD", "memset", ...
  KernelCategory category = KernelCategory::kOther;
  uint64_t start_ns = 0, end_ns = 0;  // CUPTI's GPU timestamps
  uint32_t stream = 0;
  int64_t span = -1;  // index in TimingResult::spans of the innermost stage that launched it
};

// The per-stage breakdown of one generation: its stage spans (GPU time as the stage's wall time
// when CUDA events measured it) and its activities. A stage's kernels are those launched in it or
// in a stage nested in it; stages that repeat (step, transformer, scheduler) are summed.
ProfileRecord profile_breakdown(const TimingResult& timing,
                                const std::vector<KernelActivity>& activities,
                                size_t top_kernels = 25);

// The activities as Chrome-trace slices, their times relative to the first one.
std::vector<KernelSlice> kernel_slices(const TimingResult& timing,
                                       const std::vector<KernelActivity>& activities);

// Collects the GPU activities of the process between construction and finish(); as a
// StageObserver of the timer it tags each stage's CUDA calls with the stage's span index. One
// profiler at a time (CUPTI's activity buffers are process-wide).
class KernelProfiler : public StageObserver {
 public:
  // Whether this build has CUPTI; why not, when it has not.
  static bool available();
  static std::string unavailable_reason();

  // Starts collecting; throws Unsupported when CUPTI refuses (another profiler holds it).
  KernelProfiler();
  ~KernelProfiler() override;
  KernelProfiler(const KernelProfiler&) = delete;
  KernelProfiler& operator=(const KernelProfiler&) = delete;

  void stage_begun(size_t span) override;
  void stage_ended(size_t span) override;

  // Stops collecting (call after the device finished the work) and returns the activities in
  // start order, each with the innermost stage that launched it.
  std::vector<KernelActivity> finish();

 private:
  struct Session;
  std::unique_ptr<Session> session_;
};

// What a profiled generation adds to a config's record and trace.
struct ProfiledRun {
  ProfileRecord record;
  std::vector<KernelSlice> slices;
};

// Runs `generation` once more with the profiler on (as the timer's observer) and returns the
// breakdown; a device or build that cannot profile returns a record whose note says why, without
// running anything.
ProfiledRun profile_generation(StageTimer& timer, const std::function<TimingResult()>& generation);

}  // namespace ditbench
