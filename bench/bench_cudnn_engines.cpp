// cuDNN's bf16 attention at HunyuanVideo's 480p shape, once per execution plan cuDNN offers:
// B = 1, 24 heads x 128, 25,640 tokens (25,440 video + 200 valid text), no mask, q/k/v as column
// ranges of the packed [B, S, 3, H, D] projection and the output as [B, S, H, D] (the model's
// layouts). Plans: every one the heuristics list (modes A and FALLBACK), then, from the first
// one's engine and knobs, each knob moved one value at a time. `aten_cudnn` is ATen's
// _scaled_dot_product_cudnn_attention on the same views (what the `cudnn` backend runs).
// TFLOP/s = 4 * H * S^2 * D / time; CUDA-event time per call.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "bench/gpu_timing.h"

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif
#if defined(DITBENCH_HAS_CUDA) && defined(DITBENCH_HAS_CUDNN_FRONTEND)
#include <ATen/cudnn/Handle.h>
#include <cudnn_frontend.h>
#define DITBENCH_ENGINE_PROBE 1
#endif

namespace {

constexpr int64_t kTokens = 25640, kHeads = 24, kHeadDim = 128;

#ifdef DITBENCH_ENGINE_PROBE
namespace fe = cudnn_frontend;
using TensorAttr = std::shared_ptr<fe::graph::Tensor_attributes>;

struct Inputs {
  at::Tensor packed, out;  // [B, S, 3, H, D], [B, S, H, D] bf16
  at::Tensor q, k, v;      // [B, H, S, D] views of packed
};

Inputs make_inputs() {
  auto options = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  Inputs in;
  in.packed = at::randn({1, kTokens, 3, kHeads, kHeadDim}, options);
  in.out = at::empty({1, kTokens, kHeads, kHeadDim}, options);
  in.q = in.packed.select(2, 0).transpose(1, 2);
  in.k = in.packed.select(2, 1).transpose(1, 2);
  in.v = in.packed.select(2, 2).transpose(1, 2);
  return in;
}

struct Probe {
  std::shared_ptr<fe::graph::Graph> graph;
  TensorAttr q, k, v, o;
};

cudnnHandle_t handle() {
  cudnnHandle_t h = at::native::getCudnnHandle();
  cudnnSetStream(h, at::cuda::getCurrentCUDAStream());
  return h;
}

// The graph up to its operation graph; "" or what the frontend said.
std::string describe(Probe& p, const Inputs& in) {
  p.graph = std::make_shared<fe::graph::Graph>();
  p.graph->set_io_data_type(fe::DataType_t::BFLOAT16)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  auto tensor = [&](const char* name, const at::Tensor& t) {
    return p.graph->tensor(fe::graph::Tensor_attributes()
                               .set_name(name)
                               .set_dim(t.sizes().vec())
                               .set_stride(t.strides().vec())
                               .set_data_type(fe::DataType_t::BFLOAT16));
  };
  p.q = tensor("q", in.q);
  p.k = tensor("k", in.k);
  p.v = tensor("v", in.v);
  auto options =
      fe::graph::SDPA_attributes().set_name("sdpa").set_generate_stats(false).set_attn_scale(
          static_cast<float>(1.0 / std::sqrt(double(kHeadDim))));
  auto outputs = p.graph->sdpa(p.q, p.k, p.v, options);
  p.o = outputs[0];
  const auto o_view = in.out.transpose(1, 2);  // [B, H, S, D] view of [B, S, H, D]
  p.o->set_output(true).set_dim(o_view.sizes().vec()).set_stride(o_view.strides().vec());
  for (auto status : {p.graph->validate(), p.graph->build_operation_graph(handle())}) {
    if (status.is_bad()) return status.get_message();
  }
  return "";
}

// One built plan of its own graph, ready to time.
struct Candidate {
  std::string name;
  Probe probe;
  int64_t index = 0;
  at::Tensor workspace;
};

std::string knobs_text(int64_t engine, const std::unordered_map<fe::KnobType_t, int64_t>& knobs) {
  std::map<int64_t, int64_t> sorted;
  for (const auto& [type, value] : knobs) sorted[static_cast<int64_t>(type)] = value;
  std::string text = "eng" + std::to_string(engine);
  for (const auto& [type, value] : sorted) {
    text += "_k" + std::to_string(type) + "=" + std::to_string(value);
  }
  return text;
}

// Checks and builds the candidate's plan; "" or the step that failed and what cuDNN said.
std::string finish(Candidate& c) {
  auto say = [](const char* step, fe::error_t status) {
    return std::string(step) + ": " + status.get_message();
  };
  if (auto s = c.probe.graph->check_support(handle()); s.is_bad()) return say("check_support", s);
  if (auto s = c.probe.graph->build_plan_at_index(c.index); s.is_bad()) return say("build", s);
  int64_t bytes = 0;
  if (auto s = c.probe.graph->get_workspace_size_plan_at_index(c.index, bytes); s.is_bad()) {
    return say("workspace", s);
  }
  if (bytes > 0) {
    c.workspace = at::empty({bytes}, at::TensorOptions().device(at::kCUDA).dtype(at::kByte));
  }
  return "";
}

void run_candidate(const Candidate& c, const Inputs& in) {
  std::unordered_map<TensorAttr, void*> pack = {{c.probe.q, in.q.data_ptr()},
                                                {c.probe.k, in.k.data_ptr()},
                                                {c.probe.v, in.v.data_ptr()},
                                                {c.probe.o, in.out.data_ptr()}};
  auto status = c.probe.graph->execute_plan_at_index(
      handle(), pack, c.workspace.defined() ? c.workspace.data_ptr() : nullptr, c.index);
  if (status.is_bad()) throw std::runtime_error(c.name + ": " + status.get_message());
}

// The heuristics' plans, then the first plan's knobs moved one at a time (at most `limit`).
std::vector<std::shared_ptr<Candidate>> candidates(const Inputs& in, size_t limit) {
  std::vector<std::shared_ptr<Candidate>> out;
  Probe listing;
  if (auto why = describe(listing, in); !why.empty()) {
    std::fprintf(stderr, "cuDNN graph: %s\n", why.c_str());
    return out;
  }
  if (listing.graph
          ->create_execution_plans({fe::HeurMode_t::A, fe::HeurMode_t::B, fe::HeurMode_t::FALLBACK})
          .is_bad())
    return out;
  const int64_t count = listing.graph->get_execution_plan_count();
  int64_t base_engine = -1;
  std::unordered_map<fe::KnobType_t, int64_t> base_knobs;
  for (int64_t i = 0; i < count; ++i) {
    auto c = std::make_shared<Candidate>();
    c->index = i;
    int64_t engine = -1;
    std::unordered_map<fe::KnobType_t, int64_t> knobs;
    if (!describe(c->probe, in).empty() ||
        c->probe.graph
            ->create_execution_plans(
                {fe::HeurMode_t::A, fe::HeurMode_t::B, fe::HeurMode_t::FALLBACK})
            .is_bad() ||
        listing.graph->get_engine_and_knobs_at_index(i, engine, knobs).is_bad()) {
      continue;
    }
    if (base_engine < 0) base_engine = engine, base_knobs = knobs;
    c->name = "heuristic" + std::to_string(i) + "/" + knobs_text(engine, knobs);
    const auto why = finish(*c);
    if (why.empty()) out.push_back(c);
    std::fprintf(stderr, "plan %lld: %s %s\n", static_cast<long long>(i), c->name.c_str(),
                 why.c_str());
  }
  if (base_engine < 0) return out;
  std::vector<fe::Knob> ranges;
  if (listing.graph->get_knobs_for_engine(base_engine, ranges).is_bad()) return out;
  for (const auto& knob : ranges) {
    std::fprintf(stderr, "engine %lld knob %lld: %lld..%lld step %lld\n",
                 static_cast<long long>(base_engine), static_cast<long long>(knob.type),
                 static_cast<long long>(knob.minValue), static_cast<long long>(knob.maxValue),
                 static_cast<long long>(knob.stride));
    const int64_t stride = knob.stride > 0 ? knob.stride : 1;
    for (int64_t value = knob.minValue; value <= knob.maxValue; value += stride) {
      if (out.size() >= limit) return out;
      auto knobs = base_knobs;
      if (knobs.count(knob.type) && knobs[knob.type] == value) continue;
      knobs[knob.type] = value;
      auto c = std::make_shared<Candidate>();
      c->name = "knobs/" + knobs_text(base_engine, knobs);
      std::string why = describe(c->probe, in);
      if (why.empty()) {
        if (auto s = c->probe.graph->create_execution_plan(base_engine, knobs); s.is_bad()) {
          why = "create_execution_plan: " + s.get_message();
        }
      }
      if (why.empty()) why = finish(*c);
      if (why.empty()) {
        out.push_back(c);
      } else {
        std::fprintf(stderr, "%s: %s\n", c->name.c_str(), why.c_str());
      }
    }
  }
  return out;
}
#endif

// Times `work` (after three untimed calls) and reports TFLOP/s.
void time_attention(benchmark::State& state, const std::function<void()>& work) {
  const double flops = 4.0 * kHeads * double(kTokens) * double(kTokens) * kHeadDim;
  ditbench::bench::set_rate(state, "TFLOP/s", flops, ditbench::bench::time_on_gpu(state, work, 3),
                            1e12);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
#ifdef DITBENCH_ENGINE_PROBE
  if (at::hasCUDA()) {
    benchmark::AddCustomContext("cudnn", std::to_string(cudnnGetVersion()));
    benchmark::AddCustomContext("cudnn_frontend", std::to_string(CUDNN_FRONTEND_VERSION));
    auto inputs = std::make_shared<Inputs>(make_inputs());
    benchmark::RegisterBenchmark("cudnn_engines/aten_cudnn",
                                 [inputs](benchmark::State& state) {
                                   time_attention(state, [&] {
                                     at::_scaled_dot_product_cudnn_attention(
                                         inputs->q, inputs->k, inputs->v, std::nullopt, false);
                                   });
                                 })
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(20);
    for (const auto& c : candidates(*inputs, 48)) {
      benchmark::RegisterBenchmark(("cudnn_engines/" + c->name).c_str(),
                                   [inputs, c](benchmark::State& state) {
                                     time_attention(state, [&] { run_candidate(*c, *inputs); });
                                   })
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond)
          ->Iterations(20);
    }
  }
#else
  std::fprintf(stderr, "bench_cudnn_engines: this build has no CUDA or no cuDNN frontend\n");
#endif
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
