#include "harness/profile.h"

#include <cxxabi.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <map>
#include <set>
#include <utility>

#include "models/common/error.h"

#ifdef DITBENCH_HAS_CUPTI
#include <cupti.h>

#include <mutex>
#include <unordered_map>
#endif

namespace ditbench {

// ---- classification ----

const char* category_name(KernelCategory category) {
  return profile_categories().at(static_cast<size_t>(category)).c_str();
}

const std::vector<KernelCategory>& kernel_categories() {
  static const std::vector<KernelCategory> all = {
      KernelCategory::kGemm,           KernelCategory::kAttention, KernelCategory::kCommunication,
      KernelCategory::kNormModulation, KernelCategory::kRope,      KernelCategory::kElementwise,
      KernelCategory::kCopy,           KernelCategory::kOther};
  return all;
}

namespace {

std::string demangle(std::string_view name) {
  const std::string symbol(name);
  if (symbol.rfind("_Z", 0) != 0) return symbol;
  int status = 0;
  char* demangled = abi::__cxa_demangle(symbol.c_str(), nullptr, nullptr, &status);
  std::string out = status == 0 && demangled ? demangled : symbol;
  std::free(demangled);
  return out;
}

bool contains_any(const std::string& haystack, std::initializer_list<const char*> needles) {
  for (const char* needle : needles)
    if (haystack.find(needle) != std::string::npos) return true;
  return false;
}

}  // namespace

// Tested in order: the first family whose marker the (lower-cased, demangled) name contains.
// ATen's elementwise kernels carry the op's functor or lambda in their template arguments
// ("...direct_copy_kernel_cuda...", "...GroupNormKernelImplInternal..."), so the op decides.
KernelCategory classify_kernel(std::string_view name, bool memory_operation) {
  if (memory_operation) return KernelCategory::kCopy;
  std::string n = demangle(name);
  std::transform(n.begin(), n.end(), n.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  if (contains_any(n, {"nccl"})) return KernelCategory::kCommunication;
  // Before GEMMs: cuDNN's SDPA kernels are "..._flash_fprop_wgmma_...", xFormers' "fmha_cutlass".
  if (contains_any(n, {"flash", "fmha", "sdpa", "attention", "attn"})) {
    return KernelCategory::kAttention;
  }
  if (contains_any(n, {"gemm", "gemv", "nvjet", "xmma", "cutlass", "cublas", "matmul", "s16816",
                       "h16816", "splitkreduce", "convolve", "convolution", "winograd", "fprop",
                       "dgrad", "wgrad", "implicit_"})) {
    return KernelCategory::kGemm;
  }
  if (contains_any(n, {"_rope", "rope_", "rotary"})) return KernelCategory::kRope;
  // Our GroupNorm's statistics passes count with the norms.
  if (contains_any(n, {"layer_norm", "layernorm", "rms_norm", "rmsnorm", "group_norm", "groupnorm",
                       "batch_norm", "batchnorm", "instance_norm", "rowwisemoments", "welford",
                       "modulate", "group_partial_sums", "group_statistics", "group_affine"})) {
    return KernelCategory::kNormModulation;
  }
  // Padding and nearest up-sampling only move values (the VAE's causal padding, ours included).
  if (contains_any(n, {"copy", "concat", "transpose", "permute", "nchwtonhwc", "nhwctonchw",
                       "fillfunctor", "memcpy", "memset", "replication_pad", "reflection_pad",
                       "upsample_nearest", "video_resample"})) {
    return KernelCategory::kCopy;
  }
  if (contains_any(
          n, {"elementwise", "reduce_kernel", "reduction", "softmax", "gelu", "silu", "activation",
              "quantize", "pointwise", "gate_residual", "channel_bias", "index", "scatter",
              "gather", "where", "arange", "distribution", "random"})) {
    return KernelCategory::kElementwise;
  }
  return KernelCategory::kOther;
}

namespace {

// The op an ATen kernel template runs, from its template arguments: the launcher its lambda lives
// in ("direct_copy_kernel_cuda") or else the first functor that is not a generic wrapper
// ("MulFunctor" inside "BinaryFunctor"); empty where the arguments name neither.
std::string aten_op_in(const std::string& arguments) {
  static const std::set<std::string> generic = {
      "BinaryFunctor", "AUnaryFunctor",   "BUnaryFunctor",          "func_wrapper_t",
      "ReduceOp",      "gpu_kernel_impl", "gpu_kernel_impl_nocast", "gpu_kernel_with_scalars"};
  std::string first_functor;
  size_t i = 0;
  while (i < arguments.size()) {
    if (!(std::isalpha(static_cast<unsigned char>(arguments[i])) || arguments[i] == '_')) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < arguments.size() &&
           (std::isalnum(static_cast<unsigned char>(arguments[end])) || arguments[end] == '_')) {
      ++end;
    }
    const std::string word = arguments.substr(i, end - i);
    i = end;
    if (generic.count(word)) continue;
    const auto ends_with = [&](const char* tail) {
      const std::string t(tail);
      return word.size() > t.size() && word.compare(word.size() - t.size(), t.size(), t) == 0;
    };
    if (ends_with("_cuda")) return word;
    if (first_functor.empty() &&
        (word.find("Functor") != std::string::npos || ends_with("_functor"))) {
      first_functor = word;
    }
  }
  return first_functor;
}

}  // namespace

std::string short_kernel_name(std::string_view name) {
  std::string n = demangle(name);
  if (n.rfind("void ", 0) == 0) n = n.substr(5);
  for (const std::string anonymous : {"(anonymous namespace)::", "{anonymous}::"}) {
    for (auto at = n.find(anonymous); at != std::string::npos; at = n.find(anonymous)) {
      n.erase(at, anonymous.size());
    }
  }
  const auto cut = n.find_first_of("<(");
  if (cut == std::string::npos) return n;
  std::string base = n.substr(0, cut);
  // ATen's generic elementwise and reduction kernels serve every op: the op is part of the name.
  if (base.rfind("at::native::", 0) == 0 && n[cut] == '<' &&
      (base.find("elementwise_kernel") != std::string::npos ||
       base.find("reduce_kernel") != std::string::npos)) {
    const auto op = aten_op_in(n.substr(cut));
    if (!op.empty()) base += " [" + op + "]";
  }
  return base;
}

// ---- breakdown ----

namespace {

// Parent of each span from the nesting depths (spans are in begin order).
std::vector<int64_t> span_parents(const TimingResult& timing) {
  std::vector<int64_t> parents(timing.spans.size(), -1);
  std::vector<int64_t> open;
  for (size_t i = 0; i < timing.spans.size(); ++i) {
    const auto depth = static_cast<size_t>(std::max(0, timing.spans[i].depth));
    if (open.size() > depth) open.resize(depth);
    parents[i] = open.empty() ? -1 : open.back();
    open.push_back(static_cast<int64_t>(i));
  }
  return parents;
}

// Length of the union of [start, end) intervals.
uint64_t union_length(std::vector<std::pair<uint64_t, uint64_t>>& intervals) {
  std::sort(intervals.begin(), intervals.end());
  uint64_t total = 0, open_start = 0, open_end = 0;
  bool open = false;
  for (const auto& [start, end] : intervals) {
    if (open && start <= open_end) {
      open_end = std::max(open_end, end);
      continue;
    }
    if (open) total += open_end - open_start;
    open_start = start;
    open_end = end;
    open = true;
  }
  if (open) total += open_end - open_start;
  return total;
}

constexpr double kSecondsPerNano = 1e-9;

}  // namespace

ProfileRecord profile_breakdown(const TimingResult& timing,
                                const std::vector<KernelActivity>& activities, size_t top_kernels) {
  const size_t spans = timing.spans.size();
  const auto parents = span_parents(timing);
  const size_t categories = kernel_categories().size();
  std::vector<std::vector<std::pair<uint64_t, uint64_t>>> intervals(spans);
  std::vector<std::vector<double>> category_s(spans, std::vector<double>(categories, 0.0));
  std::vector<int64_t> counts(spans, 0);

  ProfileRecord record;
  record.kernels = static_cast<int64_t>(activities.size());
  std::map<std::string, ProfileKernelEntry> by_name;
  for (const auto& a : activities) {
    const uint64_t end = std::max(a.end_ns, a.start_ns);
    const double seconds = static_cast<double>(end - a.start_ns) * kSecondsPerNano;
    auto& entry = by_name[short_kernel_name(a.name)];
    entry.category = category_name(a.category);
    entry.total_s += seconds;
    ++entry.count;
    if (a.span < 0 || static_cast<size_t>(a.span) >= spans) {
      record.unattributed_s += seconds;
      continue;
    }
    for (int64_t s = a.span; s >= 0; s = parents[static_cast<size_t>(s)]) {
      const auto i = static_cast<size_t>(s);
      intervals[i].emplace_back(a.start_ns, end);
      category_s[i][static_cast<size_t>(a.category)] += seconds;
      ++counts[i];
    }
  }

  for (size_t i = 0; i < spans; ++i) {
    const StageSpan& span = timing.spans[i];
    ProfileStageEntry& stage = record.stages[span.name];
    const double wall = span.seconds();
    const double busy = static_cast<double>(union_length(intervals[i])) * kSecondsPerNano;
    stage.wall_s += wall;
    stage.busy_s += busy;
    stage.launch_gaps_s += std::max(0.0, wall - busy);
    stage.kernels += counts[i];
    for (size_t c = 0; c < categories; ++c) {
      if (category_s[i][c] > 0)
        stage.category_s[category_name(kernel_categories()[c])] += category_s[i][c];
    }
  }

  for (auto& [name, entry] : by_name) {
    entry.name = name;
    record.top_kernels.push_back(entry);
  }
  std::sort(record.top_kernels.begin(), record.top_kernels.end(),
            [](const ProfileKernelEntry& a, const ProfileKernelEntry& b) {
              return a.total_s != b.total_s ? a.total_s > b.total_s : a.name < b.name;
            });
  if (record.top_kernels.size() > top_kernels) record.top_kernels.resize(top_kernels);
  return record;
}

std::vector<KernelSlice> kernel_slices(const TimingResult& timing,
                                       const std::vector<KernelActivity>& activities) {
  std::vector<KernelSlice> slices;
  if (activities.empty()) return slices;
  uint64_t first = activities.front().start_ns;
  for (const auto& a : activities) first = std::min(first, a.start_ns);
  for (const auto& a : activities) {
    KernelSlice slice;
    slice.name = short_kernel_name(a.name);
    slice.category = category_name(a.category);
    if (a.span >= 0 && static_cast<size_t>(a.span) < timing.spans.size()) {
      slice.stage = timing.spans[static_cast<size_t>(a.span)].name;
    }
    slice.start_us = static_cast<double>(a.start_ns - first) / 1e3;
    slice.dur_us = static_cast<double>(std::max(a.end_ns, a.start_ns) - a.start_ns) / 1e3;
    slice.stream = a.stream;
    slices.push_back(std::move(slice));
  }
  return slices;
}

// ---- the CUPTI collector ----

#ifdef DITBENCH_HAS_CUPTI
namespace {

#if CUPTI_API_VERSION >= 130000
using KernelRecord = CUpti_ActivityKernel10;
#else
using KernelRecord = CUpti_ActivityKernel9;
#endif
constexpr size_t kBufferBytes = size_t{8} << 20;
constexpr size_t kBufferAlign = 8;
// The external-correlation stack that carries the open stage (span index + 1).
constexpr auto kStageCorrelation = CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0;
constexpr std::array<CUpti_ActivityKind, 6> kKinds = {
    CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMCPY, CUPTI_ACTIVITY_KIND_MEMSET,
    // External-correlation records come with the API records of the calls made while a stage is
    // pushed, so the runtime and driver API kinds must be on for them.
    CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION, CUPTI_ACTIVITY_KIND_RUNTIME,
    CUPTI_ACTIVITY_KIND_DRIVER};

// What the buffer callbacks collect for the running profiler.
struct Collected {
  std::vector<KernelActivity> activities;
  std::vector<uint32_t> correlation;                // per activity: its API call's correlation id
  std::unordered_map<uint32_t, uint64_t> stage_of;  // API correlation id -> span + 1
};

std::mutex g_mutex;
Collected* g_collecting = nullptr;  // guarded by g_mutex

std::string cupti_error(CUptiResult result) {
  const char* message = nullptr;
  cuptiGetResultString(result, &message);
  return message ? message : "unknown CUPTI error";
}

const char* memcpy_name(uint8_t kind) {
  switch (kind) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD:
      return "memcpy HtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH:
      return "memcpy DtoH";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD:
      return "memcpy DtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_PTOP:
      return "memcpy PtoP";
    default:
      return "memcpy";
  }
}

void add_record(const CUpti_Activity* record, Collected& out) {
  auto add = [&](std::string name, bool memory, uint64_t start, uint64_t end, uint32_t stream,
                 uint32_t correlation) {
    KernelActivity a;
    a.category = classify_kernel(name, memory);
    a.name = memory ? std::move(name) : demangle(name);
    a.start_ns = start;
    a.end_ns = end;
    a.stream = stream;
    out.activities.push_back(std::move(a));
    out.correlation.push_back(correlation);
  };
  switch (record->kind) {
    case CUPTI_ACTIVITY_KIND_KERNEL:
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
      const auto* k = reinterpret_cast<const KernelRecord*>(record);
      add(k->name ? k->name : "?", false, k->start, k->end, k->streamId, k->correlationId);
      break;
    }
    case CUPTI_ACTIVITY_KIND_MEMCPY: {
      const auto* m = reinterpret_cast<const CUpti_ActivityMemcpy6*>(record);
      add(memcpy_name(m->copyKind), true, m->start, m->end, m->streamId, m->correlationId);
      break;
    }
    case CUPTI_ACTIVITY_KIND_MEMSET: {
      const auto* m = reinterpret_cast<const CUpti_ActivityMemset4*>(record);
      add("memset", true, m->start, m->end, m->streamId, m->correlationId);
      break;
    }
    case CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION: {
      const auto* e = reinterpret_cast<const CUpti_ActivityExternalCorrelation*>(record);
      if (e->externalKind == kStageCorrelation) out.stage_of[e->correlationId] = e->externalId;
      break;
    }
    default:
      break;  // API records: only there to carry the external correlation
  }
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(kBufferAlign, kBufferBytes));
  *size = *buffer ? kBufferBytes : 0;
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (g_collecting) {
      CUpti_Activity* record = nullptr;
      while (cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) {
        add_record(record, *g_collecting);
      }
    }
  }
  std::free(buffer);
}

void set_kinds(bool enable) {
  for (auto kind : kKinds) enable ? cuptiActivityEnable(kind) : cuptiActivityDisable(kind);
}

}  // namespace

struct KernelProfiler::Session {
  Collected collected;
  bool finished = false;
};

bool KernelProfiler::available() { return true; }
std::string KernelProfiler::unavailable_reason() { return {}; }

KernelProfiler::KernelProfiler() : session_(std::make_unique<Session>()) {
  static const CUptiResult registered =
      cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed);
  if (registered != CUPTI_SUCCESS) {
    throw Unsupported("kernel profile: cuptiActivityRegisterCallbacks failed: " +
                      cupti_error(registered));
  }
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (g_collecting) throw Unsupported("kernel profile: another profile is running");
    g_collecting = &session_->collected;
  }
  for (auto kind : kKinds) {
    const CUptiResult result = cuptiActivityEnable(kind);
    if (result != CUPTI_SUCCESS) {
      set_kinds(false);
      std::lock_guard<std::mutex> lock(g_mutex);
      g_collecting = nullptr;
      throw Unsupported("kernel profile: cuptiActivityEnable(" + std::to_string(kind) +
                        ") failed: " + cupti_error(result));
    }
  }
}

KernelProfiler::~KernelProfiler() {
  if (!session_->finished) finish();
}

void KernelProfiler::stage_begun(size_t span) {
  cuptiActivityPushExternalCorrelationId(kStageCorrelation, static_cast<uint64_t>(span) + 1);
}

void KernelProfiler::stage_ended(size_t) {
  uint64_t last = 0;
  cuptiActivityPopExternalCorrelationId(kStageCorrelation, &last);
}

std::vector<KernelActivity> KernelProfiler::finish() {
  if (session_->finished) return {};
  session_->finished = true;
  set_kinds(false);
  cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  Collected collected;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    collected = std::move(session_->collected);
    g_collecting = nullptr;
  }
  for (size_t i = 0; i < collected.activities.size(); ++i) {
    auto it = collected.stage_of.find(collected.correlation[i]);
    if (it != collected.stage_of.end() && it->second > 0) {
      collected.activities[i].span = static_cast<int64_t>(it->second) - 1;
    }
  }
  std::stable_sort(
      collected.activities.begin(), collected.activities.end(),
      [](const KernelActivity& a, const KernelActivity& b) { return a.start_ns < b.start_ns; });
  return std::move(collected.activities);
}

#else

struct KernelProfiler::Session {};

bool KernelProfiler::available() { return false; }
std::string KernelProfiler::unavailable_reason() {
  return "the kernel profile needs a CUPTI build (CUDA toolkit with CUPTI)";
}
KernelProfiler::KernelProfiler() { throw Unsupported(unavailable_reason()); }
KernelProfiler::~KernelProfiler() = default;
void KernelProfiler::stage_begun(size_t) {}
void KernelProfiler::stage_ended(size_t) {}
std::vector<KernelActivity> KernelProfiler::finish() { return {}; }

#endif

ProfiledRun profile_generation(StageTimer& timer, const std::function<TimingResult()>& generation) {
  ProfiledRun run;
  if (!KernelProfiler::available()) {
    run.record.note = KernelProfiler::unavailable_reason();
    return run;
  }
  if (!timer.device().is_cuda()) {
    run.record.note =
        "the kernel profile needs a CUDA device (this config ran on " + timer.device().str() + ")";
    return run;
  }
  KernelProfiler profiler;
  struct Observing {  // the timer forgets the observer however the generation ends
    StageTimer& timer;
    ~Observing() { timer.set_observer(nullptr); }
  } observing{timer};
  timer.set_observer(&profiler);
  const TimingResult timing = generation();
  timer.set_observer(nullptr);
  const auto activities = profiler.finish();
  run.record = profile_breakdown(timing, activities);
  run.slices = kernel_slices(timing, activities);
  return run;
}

}  // namespace ditbench
