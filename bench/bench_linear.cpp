// HunyuanVideo's linears at 720p x 129 frames (M = 25,696 tokens): bf16 against fp8_dynamic,
// whose time includes quantizing the activations on every call (as inference pays it). Reports
// TFLOP/s counting 2*M*K*N flops over GPU time from CUDA events.
#include <benchmark/benchmark.h>

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAEvent.h>
#endif

#include "optimizations/quant/linear.h"

namespace {

constexpr int64_t kTokens = 25696;

void linear_at_hunyuan_shape(benchmark::State& state, ditbench::QuantMode mode, int64_t in,
                             int64_t out) {
#ifndef DITBENCH_HAS_CUDA
  state.SkipWithError("needs a CUDA build");
  return;
#else
  if (!at::hasCUDA()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const at::Device device(at::kCUDA, 0);
  auto check = ditbench::check_quant_mode(mode, device);
  if (!check.ok) {
    state.SkipWithError(check.reason.c_str());
    return;
  }
  auto options = at::TensorOptions().device(device).dtype(at::kBFloat16);
  ditbench::Linear linear(in, out, true, options);
  linear->weight.normal_(0, 0.02);
  linear->bias.zero_();
  linear->quantize(mode);
  auto x = at::randn({1, kTokens, in}, options);  // [B, S, K]
  linear->forward(x);                             // warm-up: cuBLASLt heuristics
  at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
  double gpu_seconds = 0;
  for (auto _ : state) {
    start.record();
    auto y = linear->forward(x);
    stop.record();
    stop.synchronize();
    const double seconds = start.elapsed_time(stop) / 1e3;
    state.SetIterationTime(seconds);
    gpu_seconds += seconds;
  }
  const double flops = 2.0 * double(kTokens) * double(in) * double(out);
  state.counters["TFLOP/s"] = flops * double(state.iterations()) / gpu_seconds / 1e12;
#endif
}

int register_all() {
  const std::vector<std::pair<int64_t, int64_t>> shapes{
      {3072, 9216}, {3072, 12288}, {12288, 3072}, {15360, 3072}};
  for (auto [in, out] : shapes) {
    for (auto mode : {ditbench::QuantMode::none, ditbench::QuantMode::fp8_dynamic}) {
      const std::string name =
          "linear/" + std::string(mode == ditbench::QuantMode::none ? "bf16" : "fp8_dynamic") +
          "/" + std::to_string(in) + "x" + std::to_string(out);
      benchmark::RegisterBenchmark(name.c_str(), linear_at_hunyuan_shape, mode, in, out)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond)
          ->MinTime(0.2);
    }
  }
  return 0;
}
const int registered = register_all();

}  // namespace

BENCHMARK_MAIN();
