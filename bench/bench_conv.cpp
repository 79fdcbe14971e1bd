// The HunyuanVideo VAE decoder's causal 3x3x3 convolutions at the shapes of one tile of the tiled
// decode (5 latent frames x 256 x 256 pixels -> 17 frames), bf16, batch 1, cuDNN through ATen:
// the convolution of the replicate-padded clip alone, with its activation and weight in ATen's
// default layout (NCDHW) and in channels-last (NDHWC), each with cuDNN's heuristic choice of
// algorithm (ATen's default) and with the fastest algorithm found by trying them
// (`cudnn_benchmark`, ATen's cuDNN benchmark mode, on for that case only), and the replicate
// padding alone (NCDHW, the copy the model makes before every such convolution). TFLOP/s counts 2 *
// C_in * 27 multiply-adds per output element; GB/s one read of the clip and one write of the padded
// clip.
#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#include "bench/gpu_timing.h"

namespace {

using ditbench::bench::set_rate;
using ditbench::bench::time_on_gpu;

at::TensorOptions bf16() { return at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16); }

// Arguments: C_in, C_out, frames, height (= width).
struct Shape {
  int64_t in, out, frames, side;
  explicit Shape(const benchmark::State& state)
      : in(state.range(0)), out(state.range(1)), frames(state.range(2)), side(state.range(3)) {}
  double flops() const { return 2.0 * in * 27 * out * frames * side * side; }
};

void conv(benchmark::State& state, at::MemoryFormat format, bool cudnn_benchmark) {
  if (!at::hasCUDA()) return (void)time_on_gpu(state, {});
  const Shape s(state);
  const bool was = at::globalContext().benchmarkCuDNN();
  at::globalContext().setBenchmarkCuDNN(cudnn_benchmark);
  // x_padded: [1, C_in, F + 2, H + 2, W + 2]; weight: [C_out, C_in, 3, 3, 3]
  auto x = at::randn({1, s.in, s.frames + 2, s.side + 2, s.side + 2}, bf16()).contiguous(format);
  auto w = (at::randn({s.out, s.in, 3, 3, 3}, bf16()) * 0.02).contiguous(format);
  auto b = at::randn({s.out}, bf16());
  set_rate(state, "TFLOP/s", s.flops(),
           time_on_gpu(state, [&] { benchmark::DoNotOptimize(at::conv3d(x, w, b)); }), 1e12);
  at::globalContext().setBenchmarkCuDNN(was);
}

void replicate_pad(benchmark::State& state) {
  if (!at::hasCUDA()) return (void)time_on_gpu(state, {});
  const Shape s(state);
  auto x = at::randn({1, s.in, s.frames, s.side, s.side}, bf16());
  const double bytes =
      2.0 * s.in *
      (double(s.frames) * s.side * s.side + double(s.frames + 2) * (s.side + 2) * (s.side + 2));
  set_rate(state, "GB/s", bytes,
           time_on_gpu(state,
                       [&] {
                         benchmark::DoNotOptimize(at::pad(x, {1, 1, 1, 1, 2, 0}, "replicate"));
                       }),
           1e9);
}

// Up block 3 (128 channels at full size), up block 2 (256 at half size) and its upsampler's
// convolution at full size, up block 1 (512 at a quarter size), the mid block (512 at an eighth,
// 5 latent frames).
void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"cin", "cout", "frames", "side"});
  b->Args({128, 128, 17, 256})->Args({256, 256, 17, 128})->Args({256, 256, 17, 256});
  b->Args({512, 512, 17, 64})->Args({512, 512, 5, 32});
  b->UseManualTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK_CAPTURE(conv, ncdhw, at::MemoryFormat::Contiguous, false)->Apply(shapes);
BENCHMARK_CAPTURE(conv, ndhwc, at::MemoryFormat::ChannelsLast3d, false)->Apply(shapes);
BENCHMARK_CAPTURE(conv, ncdhw_tuned, at::MemoryFormat::Contiguous, true)->Apply(shapes);
BENCHMARK_CAPTURE(conv, ndhwc_tuned, at::MemoryFormat::ChannelsLast3d, true)->Apply(shapes);
BENCHMARK(replicate_pad)->Apply(shapes);

}  // namespace

BENCHMARK_MAIN();
