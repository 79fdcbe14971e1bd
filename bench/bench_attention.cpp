// Attention backends at HunyuanVideo's shapes: B=1, 24 heads x 128, a 720p video of 25,440 or
// 118,800 tokens joined with 256 text tokens of which 200 are valid (the padding mask). Reports
// TFLOP/s counting 4*B*H*Sq*Sk*D flops (the two matmuls) over GPU time from CUDA events.
#include <benchmark/benchmark.h>

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAEvent.h>
#endif

#include "optimizations/attention/attention.h"
#include "optimizations/attention/backends.h"

namespace {

constexpr int64_t kHeads = 24, kHeadDim = 128, kTextTokens = 256, kValidText = 200;

void attention_at_hunyuan_shape(benchmark::State& state, const std::string& backend,
                                int64_t video_tokens) {
#ifndef DITBENCH_HAS_CUDA
  state.SkipWithError("needs a CUDA build");
  return;
#else
  if (!at::hasCUDA()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const int64_t tokens = video_tokens + kTextTokens;
  const at::Device device(at::kCUDA, 0);
  auto check = ditbench::check_backend(backend, device, at::kBFloat16, kHeadDim, true);
  if (!check.ok) {
    state.SkipWithError(check.reason.c_str());
    return;
  }
  auto options = at::TensorOptions().device(device).dtype(at::kBFloat16);
  auto q = at::randn({1, kHeads, tokens, kHeadDim}, options);  // [B, H, S, D]
  auto k = at::randn_like(q), v = at::randn_like(q);
  auto key_mask = at::ones({1, tokens}, options.dtype(at::kBool));  // [B, S]
  key_mask.narrow(1, video_tokens + kValidText, kTextTokens - kValidText).fill_(false);

  ditbench::AttentionScope scope({backend, nullptr});
  ditbench::attend(q, k, v, key_mask);  // warm-up: kernel selection, cuDNN plan build
  at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
  double gpu_seconds = 0;
  for (auto _ : state) {
    start.record();
    auto out = ditbench::attend(q, k, v, key_mask);
    stop.record();
    stop.synchronize();
    const double seconds = start.elapsed_time(stop) / 1e3;
    state.SetIterationTime(seconds);
    gpu_seconds += seconds;
  }
  const double flops = 4.0 * kHeads * double(tokens) * double(tokens) * kHeadDim;
  state.counters["TFLOP/s"] = flops * double(state.iterations()) / gpu_seconds / 1e12;
  state.counters["tokens"] = double(tokens);
  state.SetLabel(ditbench::take_kernel_log().front());
#endif
}

int register_all() {
  for (const auto& backend : ditbench::attention_backend_names()) {
    for (int64_t video : {int64_t{25440}, int64_t{118800}}) {
      // The float32 reference takes seconds per call at 119k tokens; it is measured at 25k only.
      if (backend == "math" && video > 25440) continue;
      benchmark::RegisterBenchmark(
          ("attention/" + backend + "/" + std::to_string(video + kTextTokens)).c_str(),
          attention_at_hunyuan_shape, backend, video)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond)
          ->Iterations(backend == "math" ? 2 : 10);
    }
  }
  return 0;
}
const int registered = register_all();

}  // namespace

BENCHMARK_MAIN();
