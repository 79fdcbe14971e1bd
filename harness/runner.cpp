#include "harness/runner.h"

#include <c10/core/InferenceMode.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <mutex>

#ifdef DITBENCH_HAS_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "harness/artifacts.h"
#include "harness/env.h"
#include "harness/generate.h"
#include "harness/gpu_telemetry.h"
#include "harness/profile.h"
#include "harness/record.h"
#include "harness/timer.h"
#include "metrics/frames.h"
#include "models/common/error.h"
#include "models/pipeline.h"
#include "optimizations/attention/attention.h"
#include "optimizations/attention/backends.h"
#include "optimizations/cache/cache_policy.h"
#include "optimizations/graphs/graphed_transformer.h"
#include "optimizations/parallel/context_parallel.h"
#include "optimizations/parallel/parallel_context.h"
#include "optimizations/parallel/process_launch.h"
#include "optimizations/parallel/timed_communicator.h"
#include "optimizations/parallel/trace.h"
#include "optimizations/quant/quant.h"
#include "reports/markdown.h"
#include "reports/trace.h"

namespace ditbench {
namespace fs = std::filesystem;

namespace {

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) { g_signal.store(sig); }

// Thrown between steps once SIGINT or SIGTERM arrived: the config in flight is recorded as
// failed with this reason and the run stops, leaving results.jsonl valid.
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted by signal " + std::to_string(g_signal.load())) {}
};
void check_interrupt() {
  if (g_signal.load() != 0) throw Interrupted();
}

// A failure of one rank that ends a multi-process launch: every rank stops, rank 0 records the
// config in flight as failed with this message and writes its report, and every rank exits 1.
struct LaunchStopped : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// DITBENCH_INJECT_FAULT=RANK:STEP makes rank RANK of every multi-rank config throw as denoising
// step STEP starts: a rank failure in the middle of a generation, the same for rank threads and
// for the processes of a launch, so that tests can check that every rank stops and says why.
struct InjectedFault {
  int rank = 0, step = 0;
};

std::optional<InjectedFault> injected_fault() {
  const char* text = std::getenv("DITBENCH_INJECT_FAULT");
  if (!text || !*text) return std::nullopt;
  InjectedFault fault;
  char tail = 0;
  if (std::sscanf(text, "%d:%d%c", &fault.rank, &fault.step, &tail) != 2 || fault.rank < 0 ||
      fault.step < 0) {
    throw InputError(std::string("environment variable DITBENCH_INJECT_FAULT=") + text +
                     " is not RANK:STEP");
  }
  return fault;
}

// DITBENCH_INJECT_OOM=FILTER@STEP: every generation of the configs matching FILTER (as --filter
// takes it) asks, as denoising step STEP starts, for a tensor larger than any device holds: a real
// allocation failure of the device's allocator (CUDA's caching allocator raises its out-of-memory
// error) in the middle of a generation, so that tests can check the failure stays in its config.
struct InjectedOom {
  std::string filter;
  int step = 0;
};

std::optional<InjectedOom> injected_oom() {
  const char* text = std::getenv("DITBENCH_INJECT_OOM");
  if (!text || !*text) return std::nullopt;
  const std::string spec = text;
  const auto at = spec.rfind('@');
  InjectedOom oom;
  char tail = 0;
  if (at == std::string::npos || at == 0 ||
      std::sscanf(spec.c_str() + at + 1, "%d%c", &oom.step, &tail) != 1 || oom.step < 0) {
    throw InputError("environment variable DITBENCH_INJECT_OOM=" + spec + " is not FILTER@STEP");
  }
  oom.filter = spec.substr(0, at);
  return oom;
}

at::ScalarType parse_dtype(const std::string& name) {
  if (name == "float32") return at::kFloat;
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float16") return at::kHalf;
  throw InputError("unknown dtype '" + name + "'");
}

std::string safe_name(const std::string& id) {
  std::string s;
  for (char c : id)
    s += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-') ? c : '_';
  return s;
}

TimingsRecord timings_from(const std::vector<TimingResult>& runs) {
  TimingsRecord t;
  std::map<std::string, std::vector<double>> per_stage;
  std::vector<double> e2e;
  for (const auto& run : runs) {
    for (const auto& [name, spans] : run.by_stage()) {
      if (name == "e2e") {
        e2e.push_back(spans.at(0));
      } else if (name == "step" || name == "transformer" || name == "scheduler") {
        double total = 0;
        for (double v : spans) total += v;
        per_stage[name].push_back(total);
      } else {
        per_stage[name].push_back(spans.at(0));
      }
    }
    t.steps_s.push_back(run.seconds("step"));
  }
  t.e2e = summarize(e2e);
  for (auto& [name, samples] : per_stage) t.stages[name] = summarize(samples);
  return t;
}

CacheRecord cache_record_from(const CachePolicy& policy) {
  CacheRecord r;
  r.policy = policy.name();
  if (policy.name() != "none") r.threshold = policy.options().threshold;
  r.computed_steps = policy.computed_steps();
  r.reused_steps = policy.reused_steps();
  for (const auto& step : policy.records()) {
    ditbench::CacheStepEntry e;
    e.step = step.step;
    e.signal = step.signal;
    e.accumulated = step.accumulated;
    e.reused = step.reused;
    e.output_change = step.output_change;
    r.per_step.push_back(e);
  }
  if (policy.name() == "teacache") r.coefficients = policy.options().teacache_coefficients;
  return r;
}

void reset_peak_memory(const at::Device& device) {
#ifdef DITBENCH_HAS_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
#endif
  (void)device;
}

int64_t peak_memory(const at::Device& device) {
#ifdef DITBENCH_HAS_CUDA
  if (device.is_cuda()) {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)]
        .peak;
  }
#endif
  // On the CPU the process's peak resident set size (since start, so an upper bound per config).
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

void release_memory(const at::Device& device) {
#ifdef DITBENCH_HAS_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
  (void)device;
}

// The pipeline of the config: rebuilt only when what it is built from changes (quantization
// rewrites weights, so each quant mode gets its own build).
class PipelineHolder {
 public:
  DiffusionPipeline& get(const RunConfig& c, const at::Device& device) {
    std::string key = c.axes.quant + "@" + device.str();
    if (pipeline_ && key == key_) return *pipeline_;
    pipeline_.reset();
    release_memory(device);
    PipelineSpec spec;
    const auto& s = c.settings;
    spec.model = s.model;
    spec.preset = s.preset;
    if (s.checkpoint) spec.checkpoint = s.checkpoint->string();
    spec.random_weights = s.weights == "random";
    spec.dtype = parse_dtype(s.dtype);
    spec.device = device;
    spec.height = s.height;
    spec.width = s.width;
    spec.frames = s.frames;
    spec.steps = s.steps;
    spec.guidance = s.guidance;
    if (s.prompt.file) spec.prompt_file = s.prompt.file->string();
    spec.synthetic_tokens = s.prompt.tokens;
    spec.synthetic_valid = s.prompt.valid;
    if (s.noise) spec.noise_file = s.noise->string();
    spec.decode = s.decode;
    if (s.teacache_coefficients) spec.teacache_coefficients = *s.teacache_coefficients;
    auto p = create_pipeline(spec);
    if (c.axes.quant != "none") {
      auto mode = parse_quant_mode(c.axes.quant);
      apply_quantization(p->transformer_module(), mode, p->quant_include(), p->quant_exclude());
    }
    pipeline_ = std::move(p);
    key_ = key;
    return *pipeline_;
  }
  void reset() { pipeline_.reset(); }

 private:
  std::unique_ptr<DiffusionPipeline> pipeline_;
  std::string key_;
};

// What one rank's generations of a config produced.
struct RankOutcome {
  TimingsRecord timings;
  int64_t peak_bytes = 0;
  CacheRecord cache;
  AttentionRecord attention;
  std::optional<std::string> weights_note;
  at::Tensor frames;         // the last repeat's, or undefined without decode
  std::vector<bool> reused;  // per denoising call of the last generation, for cross-rank checks
  TimingResult last_timing;  // the last repeat's spans, for the Chrome trace
  double fps = 24.0;         // the pipeline's video frame rate
  std::optional<ProfiledRun> profile;  // suite "profile": the extra generation's kernel breakdown
  std::optional<TelemetryRecord> telemetry;  // the GPUs' clocks and power over the timed repeats
  nlohmann::json graphs;  // suite axis graphs: graphs captured and replays over the generations
  // Why some communication could not be timed; the record then has no comm stage, never a wrong
  // one (extra.comm_not_measured).
  std::string comm_not_measured;
};

CacheOptions cache_options_for(const RunConfig& c, const DiffusionPipeline& pipeline) {
  CacheOptions cache_options;
  cache_options.threshold = c.axes.cache_threshold.value_or(0.0);
  const auto& co = c.settings.cache_options;
  if (co.warmup_steps) cache_options.warmup_steps = *co.warmup_steps;
  if (co.max_cached_steps) cache_options.max_cached_steps = *co.max_cached_steps;
  if (co.max_consecutive_cached) cache_options.max_consecutive_cached = *co.max_consecutive_cached;
  cache_options.teacache_coefficients =
      c.settings.teacache_coefficients.value_or(pipeline.teacache_coefficients());
  return cache_options;
}

// Can the attention backend and the quantization mode serve this config on `device`? Unsupported
// here is a recorded skip, never a silent fallback.
void check_servable(const RunConfig& c, DiffusionPipeline& pipeline, const at::Device& device) {
  const auto check = check_backend(c.axes.attention, device, parse_dtype(c.settings.dtype),
                                   pipeline.head_dim(), /*has_mask=*/true);
  if (!check.ok) throw Unsupported(check.reason);
}

// Warmup and timed generations of one config on this thread: the only rank, or rank `rank` of a
// context-parallel run (groups and comm set; the model reads the groups through ParallelScope).
// own_process: this rank is the only one of its process (torchrun, srun), so a kernel profile
// (CUPTI's activities are process-wide) sees this rank's kernels alone.
RankOutcome run_generations(const RunConfig& c, DiffusionPipeline& pipeline,
                            const at::Device& device, const ParallelGroups* groups,
                            CommTimeCounter* comm, int rank = 0, bool own_process = true) {
  RankOutcome out;
  if (!pipeline.weights_note().empty()) out.weights_note = pipeline.weights_note();
  const CacheOptions cache_options = cache_options_for(c, pipeline);
  std::vector<std::unique_ptr<CachePolicy>> caches;
  const int branches = pipeline.uses_cfg() ? 2 : 1;
  for (int b = 0; b < branches; ++b) {
    caches.push_back(make_cache_policy(c.axes.cache, cache_options));
    // Every rank of the sequence group must take the same decision: the policies' sums and
    // counts are summed over it.
    if (groups && groups->sequence && groups->sequence->size() > 1) {
      Communicator* sequence = groups->sequence.get();
      // A decision reads the sum on the host: waited for by polling (see synchronize).
      caches.back()->set_all_reduce([sequence](at::Tensor& t) { sequence->all_reduce_sum(t); },
                                    [sequence] { sequence->synchronize("cache decision"); });
    }
  }

  std::unique_ptr<ContextParallelAttention> cp;
  if (groups) cp = make_context_parallel_attention(*groups, pipeline.num_heads());
  AttentionSettings attn;
  attn.backend = c.axes.attention;
  attn.context_parallel = cp.get();
  AttentionScope scope(attn);
  ParallelScope parallel(groups);
  take_kernel_log();
  StageTimer timer(device);
  GenerationSettings gen;
  gen.seed = c.settings.seed;
  gen.steps = c.settings.steps;
  gen.decode = c.settings.decode;
  gen.postprocess = rank == 0;  // the record and its frames come from rank 0
  gen.check_interrupt = check_interrupt;
  const std::optional<InjectedFault> fault = groups ? injected_fault() : std::nullopt;
  std::optional<InjectedOom> oom = injected_oom();
  if (oom && !matches_filter(c, oom->filter)) oom.reset();
  gen.on_step_begin = [&](int step) {
    if (oom && oom->step == step) {
      const at::Tensor too_large =
          at::empty({int64_t{1} << 50}, at::TensorOptions().dtype(at::kByte).device(device));
      (void)too_large;  // not reached: 1 PiB is more than any device holds
    }
    if (trace_enabled()) trace("rank " + std::to_string(rank) + ": step " + std::to_string(step));
    // The previous step's collectives are done before this one reads anything on the host (the
    // model's preparation copies the text mask's counts): a peer's failure ends the wait.
    if (groups) groups->synchronize("step " + std::to_string(step));
    if (comm) comm->set_step(step);
    if (fault && fault->rank == rank && fault->step == step) {
      throw std::runtime_error("injected fault at denoising step " + std::to_string(step) +
                               " (DITBENCH_INJECT_FAULT)");
    }
  };
  gen.on_step_end = [&](int) {
    if (comm) comm->set_step(-1);
  };
  // Axis graphs: the caches run a wrapper that captures their block segments once and replays
  // them, for every generation of the config.
  std::unique_ptr<GraphedTransformer> graphed;
  if (c.axes.graphs) {
    graphed = std::make_unique<GraphedTransformer>(pipeline.transformer());
    gen.transformer = graphed.get();
  }
  if (c.settings.timeout_s) {
    gen.deadline = std::chrono::steady_clock::now() +
                   std::chrono::milliseconds(static_cast<int64_t>(*c.settings.timeout_s * 1000));
  }

  for (int w = 0; w < c.settings.warmup; ++w) generate(pipeline, caches, timer, gen);
  if (comm) comm->take();  // the warmups' communication is not a sample
  reset_peak_memory(device);
  // The GPUs' clocks and power over the timed repeats, sampled by the rank that writes the record:
  // with rank threads every rank's GPU (rank r runs on cuda:r), with a process per rank its own.
  std::optional<TelemetrySampler> telemetry;
  if (device.is_cuda() && rank == 0) {
    std::vector<int> sampled;
    if (groups && !own_process) {
      for (int r = 0; r < c.axes.gpus; ++r) sampled.push_back(r);
    } else {
#ifdef DITBENCH_HAS_CUDA
      sampled.push_back(device.has_index() ? device.index() : c10::cuda::current_device());
#endif
    }
    telemetry.emplace(sampled);
  }
  std::vector<TimingResult> runs;
  std::vector<CommTimes> comm_times;
  Generation last;
  for (int r = 0; r < c.settings.repeats; ++r) {
    last = generate(pipeline, caches, timer, gen);
    runs.push_back(last.timing);
    if (comm) comm_times.push_back(comm->take());
  }
  if (telemetry) out.telemetry = telemetry->finish();
  out.timings = timings_from(runs);
  out.timings.step_flops = last.step_flops;
  for (const CommTimes& t : comm_times) {
    if (out.comm_not_measured.empty()) out.comm_not_measured = t.not_measured;
  }
  if (comm && out.comm_not_measured.empty()) {
    // Seconds the rank spent in (or waiting for) communication: per generation as stage "comm",
    // and per step beside the step times (a step without communication counts 0).
    std::vector<double> totals;
    for (size_t r = 0; r < comm_times.size(); ++r) {
      totals.push_back(comm_times[r].total_s);
      comm_times[r].steps_s.resize(out.timings.steps_s.at(r).size(), 0.0);
      out.timings.comm_steps_s.push_back(comm_times[r].steps_s);
    }
    out.timings.stages["comm"] = summarize(totals);
  }
  out.peak_bytes = peak_memory(device);
  if (graphed) out.graphs = {{"captures", graphed->captures()}, {"replays", graphed->replays()}};
  // Under CFG parallelism the record's rank (cfg rank 0) runs branch 0.
  out.cache = cache_record_from(*caches.at(0));
  for (const auto& step : caches.at(0)->records()) out.reused.push_back(step.reused);
  out.attention = AttentionRecord{c.axes.attention, take_kernel_log()};
  out.frames = last.frames;
  out.fps = pipeline.fps();
  out.last_timing = last.timing;
  // Suite "profile": one more generation under the CUPTI kernel profiler, after the timed ones.
  // CUPTI's activities are process-wide: rank threads sharing a process are not profiled; with a
  // process per rank every rank runs the profiled generation (its collectives need them all) and
  // rank 0's record keeps rank 0's kernels.
  if (c.settings.profile && !own_process) {
    out.profile = ProfiledRun{};
    out.profile->record.note =
        "the kernel profile of a multi-GPU config needs a process per rank (torchrun or srun): "
        "CUPTI's activities are process-wide";
  } else if (c.settings.profile) {
    out.profile =
        profile_generation(timer, [&] { return generate(pipeline, caches, timer, gen).timing; });
  }
  return out;
}

std::chrono::milliseconds comm_timeout(const RunOptions& options) {
  return std::chrono::milliseconds(static_cast<int64_t>(options.comm_timeout_s * 1000));
}

// The ranks' devices: cuda:rank for NCCL, the suite's device (the CPU) for in-process ranks.
at::Device rank_device(const at::Device& device, int rank) {
  return device.is_cuda() ? at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(rank)) : device;
}

int cuda_device_count() {
#ifdef DITBENCH_HAS_CUDA
  return static_cast<int>(c10::cuda::device_count());
#else
  return 0;
#endif
}

// The policies all-reduce their signals, so a rank that decided otherwise than rank 0 is a bug in
// the reduction or in a model's sharding: a failure, never a quietly mixed result. Collective
// over `comm`; rank 0 throws.
void check_cache_decisions(Communicator& comm, const std::vector<bool>& reused,
                           const at::Device& device) {
  at::Tensor mine = at::zeros({1, static_cast<int64_t>(reused.size())}, at::kLong);
  for (size_t i = 0; i < reused.size(); ++i) mine[0][static_cast<int64_t>(i)] = reused[i] ? 1 : 0;
  const at::Tensor all = comm.all_gather(mine.to(device)).cpu();  // [ranks, decisions]
  if (comm.rank() != 0) return;
  for (int64_t rank = 1; rank < all.size(0); ++rank) {
    for (int64_t step = 0; step < all.size(1); ++step) {
      if (!at::equal(all[rank][step], all[0][step])) {
        throw std::runtime_error("cache decisions differ between ranks: rank " +
                                 std::to_string(rank) + " " +
                                 (all[rank][step].item<int64_t>() ? "reused" : "computed") +
                                 " step " + std::to_string(step) + ", rank 0 did not");
      }
    }
  }
}

// One rank's part of a config of several ranks, whose communicator is `comm` (rank threads or the
// processes of a launch alike): its context-parallel groups, its generations with their
// communication timed, and the check that every rank took the same cache decisions.
RankOutcome run_rank(const RunConfig& c, PipelineHolder& holder, const at::Device& device,
                     Communicator& comm, const RunOptions& options, bool own_process) {
  auto counter = std::make_shared<CommTimeCounter>();
  TimedCommunicator timed(comm, counter);
  const std::string me = "rank " + std::to_string(comm.rank()) + ": ";
  trace(me + c.id + ": making the groups");
  ParallelGroups groups = make_parallel_groups(timed, c.axes.cfg_parallel ? 2 : 1,
                                               c.axes.ulysses_degree, c.axes.ring_degree);
  trace(me + "groups made, getting the pipeline");
  DiffusionPipeline& pipeline = holder.get(c, device);
  trace(me + "pipeline ready");
  if (options.rank_hook) options.rank_hook(c, comm.rank());
  RankOutcome outcome =
      run_generations(c, pipeline, device, &groups, counter.get(), comm.rank(), own_process);
  trace(me + "generations done");
  check_cache_decisions(comm, outcome.reused, device);
  trace(me + "cache decisions checked");
  return outcome;
}

// extra.parallel of a record: the layout and what carried it.
nlohmann::json parallel_note(const RunConfig& c, const std::string& backend, bool processes,
                             const std::string& send_recv) {
  return {{"ranks", c.axes.gpus},
          {"backend", backend},
          {"send_recv", send_recv},
          {"processes", processes},
          {"cfg_degree", c.axes.cfg_parallel ? 2 : 1},
          {"ulysses_degree", c.axes.ulysses_degree},
          {"ring_degree", c.axes.ring_degree},
          {"ulysses_chunks",
           c.axes.ulysses_degree > 1 && c.axes.ring_degree == 1 ? ulysses_chunks() : 1},
          {"cache_decisions_agree", true}};
}

// Checks, before any rank starts, what can make a config a skip, so that its reason names the
// layout or the backend, not a rank.
void check_before_ranks(const RunConfig& c, DiffusionPipeline& pipeline, const at::Device& device) {
  check_servable(c, pipeline, device);
  check_context_parallel_layout(c.axes.ulysses_degree, c.axes.ring_degree, pipeline.num_heads());
}

// One config on gpus = W rank threads of this process. holders[r] keeps rank r's pipeline.
RankOutcome run_parallel(const RunConfig& c, std::vector<PipelineHolder>& holders,
                         const at::Device& device, const RunOptions& options,
                         nlohmann::json& note) {
  const int world = c.axes.gpus;
  if (device.is_cuda() && world > cuda_device_count()) {
    throw Unsupported("needs " + std::to_string(world) + " GPUs, this machine has " +
                      std::to_string(cuda_device_count()));
  }
  if (holders.size() < static_cast<size_t>(world)) holders.resize(static_cast<size_t>(world));
  check_before_ranks(c, holders[0].get(c, rank_device(device, 0)), rank_device(device, 0));
#ifdef DITBENCH_HAS_CUDA
  // Rank 0's pipeline was built here on this thread's stream; its rank thread works on a pool
  // stream that does not wait for it.
  if (device.is_cuda()) c10::cuda::device_synchronize();
#endif

  LaunchOptions launch;
  launch.backend = device.is_cuda() ? CommBackend::kNccl : CommBackend::kInProcess;
  launch.comm.timeout = comm_timeout(options);
  if (c.settings.timeout_s) {
    launch.comm.timeout =
        std::min(launch.comm.timeout,
                 std::chrono::milliseconds(static_cast<int64_t>(*c.settings.timeout_s * 1000) + 1));
  }
  std::mutex mutex;
  RankOutcome first;
  std::string send_recv;
  launch_ranks(
      world,
      [&](int rank, Communicator& comm) {
        const at::Device mine = rank_device(device, rank);
        RankOutcome outcome =
            run_rank(c, holders[static_cast<size_t>(rank)], mine, comm, options, false);
        std::lock_guard<std::mutex> lock(mutex);
        if (rank == 0) {
          first = std::move(outcome);
          send_recv = comm.send_recv_transport();
        }
      },
      launch);
  note = parallel_note(c, device.is_cuda() ? "nccl" : "in_process", false, send_recv);
  return first;
}

// One config in a multi-process launch, on this process's rank: ranks 0..gpus-1 run it, the others
// have nothing to do and go on to the barrier after it. Returns the outcome on the ranks that ran.
std::optional<RankOutcome> run_in_launch(const RunConfig& c, PipelineHolder& holder,
                                         ProcessLaunch& launch, const at::Device& device,
                                         const RunOptions& options, nlohmann::json& note) {
  const int ranks = c.axes.gpus;
  if (ranks > launch.size()) {
    throw Unsupported("needs " + std::to_string(ranks) + " ranks, the " +
                      launch.environment().launcher + " launch has " +
                      std::to_string(launch.size()));
  }
  if (launch.rank() >= ranks) return std::nullopt;
  DiffusionPipeline& pipeline = holder.get(c, device);
  if (ranks == 1) {
    check_servable(c, pipeline, device);
    return run_generations(c, pipeline, device, nullptr, nullptr);
  }
  check_before_ranks(c, pipeline, device);
  Communicator& group = launch.group(ranks, device);
  RankOutcome outcome = run_rank(c, holder, device, group, options, true);
  note = parallel_note(c, device.is_cuda() ? "nccl" : "store", true, group.send_recv_transport());
  return outcome;
}

// run_in_launch with its failures sorted: a skip stays a skip (every rank decides it alike, before
// any communication); any other failure of this rank is published to the launch, so that every
// rank stops, and ends this rank's run as LaunchStopped.
std::optional<RankOutcome> run_launch_rank(const RunConfig& c, PipelineHolder& holder,
                                           ProcessLaunch& launch, const at::Device& device,
                                           const RunOptions& options, nlohmann::json& note) {
  const std::string me = "rank " + std::to_string(launch.rank());
  try {
    return run_in_launch(c, holder, launch, device, options, note);
  } catch (const Unsupported&) {
    throw;
  } catch (const Interrupted&) {
    throw;
  } catch (const CommAborted& e) {
    throw LaunchStopped(e.what());  // names the rank that failed and what this one was doing
  } catch (const InputError& e) {
    launch.abort(e.what());
    throw;
  } catch (const std::exception& e) {
    std::string what = e.what();
    if (auto nl = what.find('\n'); nl != std::string::npos) what = what.substr(0, nl);
    launch.abort(what);
    throw LaunchStopped(what.rfind(me, 0) == 0 ? what : me + ": " + what);
  }
}

// The device of this process in a launch: its GPU is LOCAL_RANK, and its work runs on a pool
// stream (NCCL's kernels must never meet the legacy default stream's implicit synchronization).
at::Device launch_device(const at::Device& device, const ProcessLaunch& launch) {
  if (!device.is_cuda()) return device;
  const int local = launch.environment().local_rank;
  if (local >= cuda_device_count()) {
    throw InputError("LOCAL_RANK=" + std::to_string(local) + " but this machine has " +
                     std::to_string(cuda_device_count()) + " GPUs");
  }
#ifdef DITBENCH_HAS_CUDA
  const auto index = static_cast<c10::DeviceIndex>(local);
  c10::cuda::set_device(index);
  c10::cuda::setCurrentCUDAStream(c10::cuda::getStreamFromPool(false, index));
  return at::Device(at::kCUDA, index);
#else
  return device;
#endif
}

// Every rank of a launch must run the same matrix in the same order. Rank 0's list of configs and
// of those already done (--resume reads rank 0's results) is shared; a rank whose own matrix
// differs stops the launch. Returns rank 0's done set.
std::set<std::string> agree_on_matrix(ProcessLaunch& launch, const std::vector<RunConfig>& configs,
                                      const std::set<std::string>& done) {
  nlohmann::json mine = nlohmann::json::array();
  for (const auto& c : configs) mine.push_back(c.id);
  const nlohmann::json shared = nlohmann::json::parse(
      launch.from_rank0("matrix", nlohmann::json{{"configs", mine}, {"done", done}}.dump()));
  if (shared["configs"] != mine) {
    size_t i = 0;
    while (i < mine.size() && i < shared["configs"].size() && mine[i] == shared["configs"][i]) ++i;
    auto at = [&](const nlohmann::json& list) {
      return i < list.size() ? list[i].get<std::string>() : std::string("(end of the matrix)");
    };
    const std::string msg = "rank " + std::to_string(launch.rank()) +
                            ": the matrix differs from rank 0's at config #" + std::to_string(i) +
                            ": '" + at(mine) + "' here, '" + at(shared["configs"]) +
                            "' on rank 0; every rank must run the same suite with the same options";
    launch.abort(msg);
    throw InputError(msg);
  }
  return shared["done"].get<std::set<std::string>>();
}

// --gpus N applied to a copy of the suite.
Suite with_gpus(const Suite& suite, int gpus) {
  if (gpus < 1) throw InputError("--gpus: must be at least 1, got " + std::to_string(gpus));
  Suite s = suite;
  std::vector<int> values;
  for (int v : suite.axes.gpus) {
    const int value = v > 1 ? gpus : v;
    if (std::find(values.begin(), values.end(), value) == values.end()) values.push_back(value);
  }
  if (std::find(values.begin(), values.end(), gpus) == values.end()) values.push_back(gpus);
  s.axes.gpus = values;
  if (s.baseline.contains("gpus") && s.baseline["gpus"].is_number_integer() &&
      s.baseline["gpus"].get<int>() > 1) {
    s.baseline["gpus"] = gpus;
  }
  return s;
}

std::string format_eta(double seconds) {
  int s = static_cast<int>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

}  // namespace

at::Device resolve_device(const std::string& setting) {
  if (setting == "cpu") return at::kCPU;
  if (setting == "cuda") {
    if (!at::hasCUDA())
      throw Unsupported("device \"cuda\" asked for, but no CUDA device is present");
    return at::Device(at::kCUDA, 0);
  }
  return at::hasCUDA() ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
}

RunSummary run_suite(const Suite& given_suite, const RunOptions& options) {
  RunSummary summary;
  const Suite suite = options.gpus ? with_gpus(given_suite, *options.gpus) : given_suite;
  const std::vector<RunConfig> matrix = expand_matrix(suite);
  auto configs = filter_configs(matrix, options.filter);
  // The baseline runs first so that every other config is scored against its frames.
  // Then configs that share a quantization mode run together, since each mode rebuilds the model.
  std::stable_sort(configs.begin(), configs.end(), [](const RunConfig& a, const RunConfig& b) {
    if (a.baseline != b.baseline) return a.baseline;
    const bool a_plain = a.axes.quant == "none", b_plain = b.axes.quant == "none";
    if (a_plain != b_plain) return a_plain;
    return a.axes.quant < b.axes.quant;
  });

  // The suite's external reference, loaded and checked before anything runs.
  const QualityReference reference(suite);

  // Under torchrun or srun this process is one rank of a launch: every rank runs the matrix in
  // the same order, and rank 0 alone writes results, artifacts and the report.
  CommOptions comm_options;
  comm_options.timeout = comm_timeout(options);
  std::unique_ptr<ProcessLaunch> launch;
  if (auto launch_env = launch_environment())
    launch = std::make_unique<ProcessLaunch>(*launch_env, comm_options);
  const bool writes = !launch || launch->rank() == 0;
  summary.writes_results = writes;

  const fs::path results = options.out_dir / "results.jsonl";
  const fs::path frames_dir = options.out_dir / "frames";
  std::set<std::string> done;
  if (writes) {
    fs::create_directories(options.out_dir);
    if (options.resume) done = finished_config_ids(results);
  }
  if (launch) done = agree_on_matrix(*launch, configs, done);

  g_signal.store(0);
  auto old_int = std::signal(SIGINT, on_signal);
  auto old_term = std::signal(SIGTERM, on_signal);
  struct RestoreSignals {
    decltype(old_int) int_handler, term_handler;
    ~RestoreSignals() {
      std::signal(SIGINT, int_handler);
      std::signal(SIGTERM, term_handler);
    }
  } restore_signals{old_int, old_term};

  at::Device device = resolve_device(suite.settings.device);
  if (launch) device = launch_device(device, *launch);
  const auto env = capture_environment(device);
  std::optional<ResultsWriter> writer;
  if (writes) writer.emplace(options.out_dir);
  // One pipeline per rank; the single-rank path uses holders[0].
  std::vector<PipelineHolder> holders(1);
  at::Tensor baseline_frames;
  std::string baseline_frames_path;

  // On --resume the baseline's frames come back from its artifact, also for a pass whose
  // --filter leaves the baseline out (the configs it runs are still scored against it).
  for (const auto& c : matrix) {
    if (writes && c.baseline && done.count(c.id)) {
      baseline_frames_path = (frames_dir / (safe_name(c.id) + ".safetensors")).string();
      if (fs::exists(baseline_frames_path)) baseline_frames = load_frames(baseline_frames_path);
    }
  }

  const auto started = std::chrono::steady_clock::now();
  int to_run = 0;
  for (const auto& c : configs) to_run += (!done.count(c.id) && !c.skipped());
  int ran = 0;
  std::string launch_stopped;  // why a launch stopped before its end

  for (const auto& c : configs) {
    if (done.count(c.id)) {
      ++summary.resumed;
      continue;
    }
    if (g_signal.load() != 0) {
      // The other ranks would wait for this one at the next barrier.
      if (launch) launch->abort("interrupted by signal " + std::to_string(g_signal.load()));
      break;
    }
    ResultRecord rec;
    rec.suite = suite.name;
    rec.config_id = c.id;
    rec.baseline = c.baseline;
    rec.config = c.to_json();
    rec.env = env;
    rec.prompt_source = c.settings.prompt.describe();

    auto finish = [&](RunStatus status, const std::string& reason) {
      rec.status = status;
      rec.reason = reason;
      if (writer) writer->append(rec);
      if (status == RunStatus::kOk) ++summary.ok;
      if (status == RunStatus::kFailed) ++summary.failed;
      if (status == RunStatus::kSkipped) ++summary.skipped;
    };

    if (c.skipped()) {
      finish(RunStatus::kSkipped, c.skip_reason);
      continue;
    }
    if (c.axes.graphs) {
      const GraphCheck graphs = check_graphs(device);
      if (!graphs.ok) {
        finish(RunStatus::kSkipped, graphs.reason);
        continue;
      }
    }

    try {
      auto quant_check = check_quant_mode(parse_quant_mode(c.axes.quant), device);
      if (!quant_check.ok) throw Unsupported(quant_check.reason);
      std::optional<RankOutcome> outcome;
      nlohmann::json note;
      if (launch) {
        outcome = run_launch_rank(c, holders[0], *launch, device, options, note);
      } else if (c.axes.gpus > 1) {
        outcome = run_parallel(c, holders, device, options, note);
      } else {
        DiffusionPipeline& pipeline = holders[0].get(c, device);
        check_servable(c, pipeline, device);
        outcome = run_generations(c, pipeline, device, nullptr, nullptr);
      }
      if (writes && outcome) {
        if (!note.is_null()) rec.extra["parallel"] = note;
        if (!outcome->graphs.is_null()) rec.extra["graphs"] = outcome->graphs;
        if (!outcome->comm_not_measured.empty())
          rec.extra["comm_not_measured"] = outcome->comm_not_measured;
        rec.weights_note = outcome->weights_note;
        rec.timings = outcome->timings;
        rec.peak_bytes = outcome->peak_bytes;
        rec.cache = outcome->cache;
        rec.attention = outcome->attention;
        if (outcome->profile) rec.profile = outcome->profile->record;
        rec.telemetry = outcome->telemetry;

        if (outcome->frames.defined()) {
          try {
            rec.artifacts = save_frame_artifacts(options.out_dir, safe_name(c.id), outcome->frames,
                                                 c.settings.fps.value_or(outcome->fps),
                                                 /*exact=*/c.baseline,
                                                 /*viewable=*/c.settings.save_frames);
          } catch (const InputError& e) {
            // An artifact this config cannot write (disk full, a folder in the way) fails this
            // config, not the sweep: bad input stops the run, this must not.
            throw std::runtime_error(e.what());
          }
          if (c.baseline) baseline_frames = outcome->frames;
          rec.quality = reference.score(outcome->frames, baseline_frames);
        }
        if (!rec.artifacts) rec.artifacts = ArtifactsRecord{};
        rec.artifacts->trace = write_chrome_trace(
            options.out_dir, safe_name(c.id), outcome->last_timing, c.id,
            outcome->profile ? outcome->profile->slices : std::vector<KernelSlice>{});
      }
      if (outcome) finish(RunStatus::kOk, "");
    } catch (const Unsupported& e) {
      finish(RunStatus::kSkipped, e.what());
    } catch (const InputError& e) {
      if (launch) launch->abort(e.what());
      throw;
    } catch (const Interrupted& e) {
      if (launch) launch->abort("rank " + std::to_string(launch->rank()) + " " + e.what());
      finish(RunStatus::kFailed, e.what());
      summary.interrupted = true;
      break;
    } catch (const LaunchStopped& e) {
      finish(RunStatus::kFailed, e.what());
      launch_stopped = e.what();
      break;
    } catch (const std::exception& e) {
      // An out-of-memory or CUDA error in one config: record it, release its memory, go on.
      std::string what = e.what();
      if (auto nl = what.find('\n'); nl != std::string::npos) what = what.substr(0, nl);
      for (auto& holder : holders) holder.reset();
      release_memory(device);
      finish(RunStatus::kFailed, what);
    }
    if (launch) {
      // The ranks outside this config's group wait here for those in it.
      try {
        launch->barrier();
      } catch (const CommAborted& e) {
        launch_stopped = e.what();
        break;
      }
    }
    ++ran;
    if (options.progress && writes) {
      double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      double eta = ran > 0 ? elapsed / ran * std::max(0, to_run - ran) : 0;
      std::cerr << "[" << ran << "/" << to_run << "] " << c.id << ": " << to_string(rec.status);
      if (rec.timings) std::cerr << ", e2e " << rec.timings->e2e.median_s << " s";
      if (!rec.reason.empty()) std::cerr << " (" << rec.reason << ")";
      std::cerr << ", elapsed " << format_eta(elapsed) << ", eta " << format_eta(eta) << std::endl;
    }
  }
  if (g_signal.load() != 0) summary.interrupted = true;

  if (writes)
    std::ofstream(options.out_dir / "report.md") << markdown_report(read_results(results));
  if (!launch_stopped.empty() && !summary.interrupted) throw CommError(launch_stopped);
  if (launch) launch->completed();
  return summary;
}

}  // namespace ditbench
