// The postprocess stage at 720x1280x129: a decoded bf16 video [1, 3, 129, 720, 1280] on the GPU to
// frames [129, 720, 1280, 3] float32 on the host, as the pipelines hand them to the metrics.
// Host wall time per call (the stage is host-synchronous: it ends with the frames in host memory).
//   library:        ditbench::video_frames, what the pipelines run: scale, clamp, lay out in
//                   frame order and widen on the GPU, then one copy into page-locked host memory
//   host_permute:   scale and clamp on the GPU, then the permuted view to float32 on the host,
//                   which then lays out 1.4 GB in frame order (video_frames before 2026-11-27)
//   pageable:       video_frames_on_device's frames copied into a new pageable host tensor
#include <benchmark/benchmark.h>

#ifdef DITBENCH_HAS_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#include "models/common/family_pipeline.h"

namespace {

enum class Way { library, host_permute, pageable };

at::Tensor frames(const at::Tensor& decoded, Way way) {
  switch (way) {
    case Way::library:
      return ditbench::video_frames(decoded);
    case Way::host_permute: {
      auto video = (decoded / 2 + 0.5).clamp(0, 1);
      return video[0].permute({1, 2, 3, 0}).to(at::kCPU, at::kFloat).contiguous();
    }
    case Way::pageable:
      return ditbench::video_frames_on_device(decoded).to(at::kCPU);
  }
  return {};
}

void postprocess_720p(benchmark::State& state, Way way) {
#ifndef DITBENCH_HAS_CUDA
  (void)way;
  state.SkipWithError("needs a CUDA build");
#else
  if (!at::hasCUDA()) return state.SkipWithError("no CUDA device");
  auto options = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  auto decoded = at::rand({1, 3, 129, 720, 1280}, options) * 2.2 - 1.1;  // [B, 3, F, H, W]
  auto expected = frames(decoded, Way::host_permute);
  if (!frames(decoded, way).equal(expected)) return state.SkipWithError("frames differ");
  c10::cuda::device_synchronize();
  for (auto _ : state) {
    benchmark::DoNotOptimize(frames(decoded, way));
  }
  state.counters["GB/s"] = benchmark::Counter(double(expected.nbytes()) * state.iterations(),
                                              benchmark::Counter::kIsRate);
#endif
}

int register_all() {
  const std::pair<const char*, Way> ways[] = {
      {"library", Way::library}, {"host_permute", Way::host_permute}, {"pageable", Way::pageable}};
  for (const auto& [name, way] : ways) {
    benchmark::RegisterBenchmark((std::string("postprocess_720p/") + name).c_str(),
                                 postprocess_720p, way)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->MinTime(2.0);
  }
  return 0;
}
const int registered = register_all();

}  // namespace

BENCHMARK_MAIN();
