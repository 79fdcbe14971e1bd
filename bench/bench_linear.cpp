// HunyuanVideo's linears at 720p x 129 frames (M = 25,696 tokens): bf16 against fp8_dynamic,
// whose time includes quantizing the activations on every call (as inference pays it), and the
// two parts of fp8_dynamic on their own: the row quantization of the activation (quantize/K, with
// its effective bandwidth: bf16 read, e4m3 and scales written) and the FP8 GEMM from rows
// quantized beforehand (fp8_gemm/KxN, what a linear costs when its producer emits e4m3 rows).
// fp8_gemm_cutlass/KxN times the same GEMM through ATen's CUTLASS row-scaled kernel
// (at::cuda::detail::f8f8bf16_rowwise, which at::_scaled_mm leaves for cuBLASLt from cuBLAS 12.9
// on): another kernel to compare the cuBLASLt one against at these shapes.
// GPU time from CUDA events; TFLOP/s counts 2*M*K*N flops.
#include <benchmark/benchmark.h>

#include <functional>

#ifdef DITBENCH_HAS_CUDA
#include <ATen/native/cuda/RowwiseScaledMM.h>
#endif

#include "bench/gpu_timing.h"
#include "optimizations/quant/linear.h"

namespace {

constexpr int64_t kTokens = 25696;

// Whether fp8_dynamic (and so everything here) can run; if not, skips the benchmark with why.
bool runnable(benchmark::State& state) {
#ifndef DITBENCH_HAS_CUDA
  state.SkipWithError("needs a CUDA build");
  return false;
#else
  if (!at::hasCUDA()) {
    state.SkipWithError("no CUDA device");
    return false;
  }
  auto check =
      ditbench::check_quant_mode(ditbench::QuantMode::fp8_dynamic, at::Device(at::kCUDA, 0));
  if (!check.ok) state.SkipWithError(check.reason.c_str());
  return check.ok;
#endif
}

at::TensorOptions gpu_bf16() {
  return at::TensorOptions().device(at::Device(at::kCUDA, 0)).dtype(at::kBFloat16);
}

ditbench::Linear make_linear(int64_t in, int64_t out, ditbench::QuantMode mode) {
  ditbench::Linear linear(in, out, true, gpu_bf16());
  linear->weight.normal_(0, 0.02);
  linear->bias.zero_();
  linear->quantize(mode);
  return linear;
}

void set_tflops(benchmark::State& state, double gpu_seconds, int64_t in, int64_t out) {
  ditbench::bench::set_rate(state, "TFLOP/s", 2.0 * double(kTokens) * double(in) * double(out),
                            gpu_seconds, 1e12);
}

// bf16 or fp8_dynamic from a bf16 activation: quantization included for fp8_dynamic.
void linear_at_hunyuan_shape(benchmark::State& state, ditbench::QuantMode mode, int64_t in,
                             int64_t out) {
  if (!runnable(state)) return;
  auto linear = make_linear(in, out, mode);
  auto x = at::randn({1, kTokens, in}, gpu_bf16());  // [B, S, K]
  set_tflops(state, ditbench::bench::time_on_gpu(state, [&] { linear->forward(x); }), in, out);
}

// The FP8 GEMM alone: the activation's e4m3 rows are made once, outside the timing.
void fp8_gemm_at_hunyuan_shape(benchmark::State& state, int64_t in, int64_t out) {
  if (!runnable(state)) return;
  auto linear = make_linear(in, out, ditbench::QuantMode::fp8_dynamic);
  auto x = ditbench::quantized_activation(at::randn({1, kTokens, in}, gpu_bf16()), true);
  x.full = at::Tensor();  // as a producer that emits e4m3 rows only
  set_tflops(state, ditbench::bench::time_on_gpu(state, [&] { linear->forward_quantized(x); }), in,
             out);
}

// The FP8 GEMM alone through ATen's CUTLASS row-scaled kernel, same operands as fp8_gemm.
void fp8_gemm_cutlass_at_hunyuan_shape(benchmark::State& state, int64_t in, int64_t out) {
  if (!runnable(state)) return;
#ifdef DITBENCH_HAS_CUDA
  auto linear = make_linear(in, out, ditbench::QuantMode::fp8_dynamic);
  auto x = ditbench::quantize_rows_fp8(at::randn({kTokens, in}, gpu_bf16()));  // [M, K]
  const auto& w = linear->weight_fp8;  // values [N, K], scale [N, 1]
  std::optional<at::Tensor> bias = linear->bias.to(at::kBFloat16);
  auto y = at::empty({kTokens, w.values.size(0)}, gpu_bf16());  // [M, N]
  set_tflops(state,
             ditbench::bench::time_on_gpu(state,
                                          [&] {
                                            at::cuda::detail::f8f8bf16_rowwise(
                                                x.values, w.values.t(), x.scale, w.scale.t(), bias,
                                                /*use_fast_accum=*/true, y);
                                          }),
             in, out);
#endif
}

// The row quantization alone, with its effective bandwidth (bytes read and written per second).
void quantize_at_hunyuan_shape(benchmark::State& state, int64_t in) {
  if (!runnable(state)) return;
  auto x = at::randn({kTokens, in}, gpu_bf16());  // [M, K]
  const double seconds =
      ditbench::bench::time_on_gpu(state, [&] { ditbench::quantize_rows_fp8(x); });
  const double bytes = double(kTokens) * (double(in) * 3 + 4);  // bf16 in, e4m3 + scale out
  ditbench::bench::set_rate(state, "TB/s", bytes, seconds, 1e12);
}

benchmark::internal::Benchmark* timed(benchmark::internal::Benchmark* b) {
  return b->UseManualTime()->Unit(benchmark::kMillisecond)->MinTime(0.2);
}

int register_all() {
  const std::vector<std::pair<int64_t, int64_t>> shapes{
      {3072, 9216}, {3072, 12288}, {12288, 3072}, {15360, 3072}};
  for (auto [in, out] : shapes) {
    const std::string shape = std::to_string(in) + "x" + std::to_string(out);
    timed(benchmark::RegisterBenchmark(("linear/bf16/" + shape).c_str(), linear_at_hunyuan_shape,
                                       ditbench::QuantMode::none, in, out));
    timed(benchmark::RegisterBenchmark(("linear/fp8_dynamic/" + shape).c_str(),
                                       linear_at_hunyuan_shape, ditbench::QuantMode::fp8_dynamic,
                                       in, out));
    timed(benchmark::RegisterBenchmark(("fp8_gemm/" + shape).c_str(), fp8_gemm_at_hunyuan_shape, in,
                                       out));
    timed(benchmark::RegisterBenchmark(("fp8_gemm_cutlass/" + shape).c_str(),
                                       fp8_gemm_cutlass_at_hunyuan_shape, in, out));
  }
  for (int64_t in : {3072, 12288, 15360}) {
    timed(benchmark::RegisterBenchmark(("quantize/" + std::to_string(in)).c_str(),
                                       quantize_at_hunyuan_shape, in));
  }
  return 0;
}
const int registered = register_all();

}  // namespace

BENCHMARK_MAIN();
