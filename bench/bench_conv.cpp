// The HunyuanVideo VAE decoder's causal 3x3x3 convolutions at the shapes of one tile of the tiled
// decode (5 latent frames x 256 x 256 pixels -> 17 frames), bf16, batch 1, cuDNN through ATen:
// the convolution of the replicate-padded clip alone, with its activation and weight in ATen's
// default layout (NCDHW) and in channels-last (NDHWC), each with cuDNN's heuristic choice of
// algorithm (ATen's default) and with the fastest algorithm found by trying them
// (`cudnn_benchmark`, ATen's cuDNN benchmark mode, on for that case only); the copies in front of
// a convolution: the replicate padding by ATen (NCDHW) and by the channels-last gather
// (try_causal_resample), the up-sampler's interpolation + padding likewise (input of half the
// frames and side), and GroupNorm + SiLU with the padding (NCDHW: the GroupNorm kernel, then ATen's
// padding; NDHWC: one pass). TFLOP/s counts 2 * C_in * 27 multiply-adds per output element; GB/s
// one read of the input and one write of the padded output.
#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#include "bench/gpu_timing.h"
#include "optimizations/kernels/group_norm.h"
#include "optimizations/kernels/video_resample.h"

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

constexpr auto kChannelsLast = at::MemoryFormat::ChannelsLast3d;

// The causal conv's padding (2 frames in front, 1 row and column per side), after a causal
// up-sampling by 2 in time and space when `upsample`.
ditbench::CausalResample conv_padding(bool upsample) {
  ditbench::CausalResample r;
  if (upsample) r.scale = {2, 2, 2};
  r.pad_frames = 2;
  r.pad_height = r.pad_width = 1;
  return r;
}

// x: [1, C_in, F, side, side], or [1, C_in, (F + 1) / 2, side / 2, side / 2] to up-sample.
void resample(benchmark::State& state, bool channels_last, bool upsample) {
  if (!at::hasCUDA()) return (void)time_on_gpu(state, {});
  const Shape s(state);
  const int64_t frames = upsample ? (s.frames + 1) / 2 : s.frames;
  const int64_t side = upsample ? s.side / 2 : s.side;
  auto x = at::randn({1, s.in, frames, side, side}, bf16());
  if (channels_last) x = x.contiguous(kChannelsLast);
  const auto r = conv_padding(upsample);
  auto run = [&] {
    if (channels_last) return ditbench::try_causal_resample(x, r);
    at::Tensor up = x;
    if (upsample) {
      up = at::upsample_nearest3d(x, {2 * frames, 2 * side, 2 * side}).narrow(2, 1, 2 * frames - 1);
    }
    return at::pad(up, {1, 1, 1, 1, 2, 0}, "replicate");
  };
  if (!run().defined()) return state.SkipWithError("the gather declined");
  const double bytes =
      2.0 * (double(x.numel()) + double(s.in) * (s.frames + 2) * (s.side + 2) * (s.side + 2));
  set_rate(state, "GB/s", bytes, time_on_gpu(state, [&] { benchmark::DoNotOptimize(run()); }), 1e9);
}

// GroupNorm (32 groups) + SiLU + the causal conv's padding of [1, C_in, F, side, side].
void group_norm_silu_pad(benchmark::State& state, bool channels_last) {
  if (!at::hasCUDA()) return (void)time_on_gpu(state, {});
  const Shape s(state);
  auto x = at::randn({1, s.in, s.frames, s.side, s.side}, bf16());
  if (channels_last) x = x.contiguous(kChannelsLast);
  auto w = at::rand({s.in}, bf16()) + 0.5, b = at::randn({s.in}, bf16());
  const auto pad = conv_padding(false);
  auto run = [&] {
    if (channels_last) return ditbench::try_group_norm(x, 32, w, b, 1e-6, true, pad);
    at::Tensor y = ditbench::try_group_norm(x, 32, w, b, 1e-6, true);
    return y.defined() ? at::pad(y, {1, 1, 1, 1, 2, 0}, "replicate") : y;
  };
  if (!run().defined()) return state.SkipWithError("the GroupNorm kernel declined");
  const double bytes =
      2.0 * (double(x.numel()) + double(s.in) * (s.frames + 2) * (s.side + 2) * (s.side + 2));
  set_rate(state, "GB/s", bytes, time_on_gpu(state, [&] { benchmark::DoNotOptimize(run()); }), 1e9);
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
BENCHMARK_CAPTURE(resample, pad_ncdhw_aten, false, false)->Apply(shapes);
BENCHMARK_CAPTURE(resample, pad_ndhwc_gather, true, false)->Apply(shapes);
BENCHMARK_CAPTURE(resample, upsample_pad_ncdhw_aten, false, true)->Apply(shapes);
BENCHMARK_CAPTURE(resample, upsample_pad_ndhwc_gather, true, true)->Apply(shapes);
BENCHMARK_CAPTURE(group_norm_silu_pad, ncdhw_then_aten_pad, false)->Apply(shapes);
BENCHMARK_CAPTURE(group_norm_silu_pad, ndhwc_one_pass, true)->Apply(shapes);

}  // namespace

BENCHMARK_MAIN();
