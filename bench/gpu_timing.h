#pragma once
// CUDA-event timing shared by the GPU micro-benchmarks: `warmups` untimed calls (allocator,
// kernel images, library heuristics and plans), then one call per timed iteration between two
// events, reported to Google Benchmark as manual time.
#include <benchmark/benchmark.h>

#include <functional>

#ifdef DITBENCH_HAS_CUDA
#include <ATen/Context.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAFunctions.h>

#include "harness/gpu_telemetry.h"
#endif

namespace ditbench::bench {

// The GPU seconds summed over the timed iterations; 0 with the benchmark skipped where there is
// no CUDA build or device. Where NVML can be read, counters `sm_clock_mhz` (median) and `power_w`
// (mean) say what the card ran at meanwhile: a rate means little without its clock.
inline double time_on_gpu(benchmark::State& state, const std::function<void()>& work,
                          int warmups = 1) {
#ifndef DITBENCH_HAS_CUDA
  (void)work, (void)warmups;
  state.SkipWithError("needs a CUDA build");
  return 0;
#else
  if (!at::hasCUDA()) {
    state.SkipWithError("no CUDA device");
    return 0;
  }
  for (int i = 0; i < warmups; ++i) work();
  at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
  double gpu_seconds = 0;
  TelemetrySampler telemetry({c10::cuda::current_device()}, std::chrono::milliseconds(20));
  for (auto _ : state) {
    start.record();
    work();
    stop.record();
    stop.synchronize();
    const double seconds = start.elapsed_time(stop) / 1e3;
    state.SetIterationTime(seconds);
    gpu_seconds += seconds;
  }
  const TelemetryRecord card = telemetry.finish();
  if (!card.devices.empty()) {
    state.counters["sm_clock_mhz"] = card.devices[0].sm_clock_mhz_median;
    state.counters["power_w"] = card.devices[0].power_w_mean;
  }
  return gpu_seconds;
#endif
}

// Counter `name`: `per_call` units (flops, bytes) a call over the timed GPU seconds, divided by
// `scale` (1e12 for TFLOP/s, 1e9 for GB/s). Nothing when nothing was timed.
inline void set_rate(benchmark::State& state, const char* name, double per_call, double gpu_seconds,
                     double scale) {
  if (gpu_seconds <= 0) return;
  state.counters[name] = per_call * double(state.iterations()) / gpu_seconds / scale;
}

}  // namespace ditbench::bench
