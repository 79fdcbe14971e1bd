// HunyuanVideo's linears at 480x848x61 (M = 25,696 tokens: 25,440 video + 256 text): bf16 against
// fp8_dynamic, whose time includes quantizing the activations on every call (as inference pays it),
// and the two parts of fp8_dynamic on their own: the row quantization of the activation
// (quantize/K, with its effective bandwidth: bf16 read, e4m3 and scales written) and the FP8 GEMM
// from rows quantized beforehand (fp8_gemm/KxN, what a linear costs when its producer emits e4m3
// rows). fp8_gemm/scaled_mm/KxN times the same GEMM through at::_scaled_mm (cuBLASLt's one kernel
// for row-wise scales), fp8_gemm/<kernel>/<order>/KxN through each CUTLASS kernel of fp8_gemm.h
// with the tile order `order`: auto (CUTLASS's choice), m1 (along M), n1/n8 (along N, groups of 1
// or 8 tiles), and fp8_gemm/<kernel>/less<Q>/KxN on all SMs but Q. At the large-K shapes,
// linear/fp8_dynamic_q<Q>/KxN is fp8_dynamic through the default CUTLASS kernel with the
// activation quantized on Q SMs beside the GEMM (fp8_linear_overlapped), q0 quantizing first.
// GPU time from CUDA events; TFLOP/s counts 2*M*K*N flops.
#include <benchmark/benchmark.h>

#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>

#include "optimizations/quant/fp8_rows_cuda.h"
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

// The FP8 GEMM alone through one GEMM: at::_scaled_mm (cuBLASLt) or a CUTLASS kernel of
// fp8_gemm.h with a given tile order; same operands as fp8_gemm.
void fp8_gemm_kernel_at_hunyuan_shape(benchmark::State& state, int64_t in, int64_t out,
                                      std::optional<ditbench::Fp8GemmKernel> kernel,
                                      ditbench::Fp8GemmSchedule schedule) {
  if (!runnable(state)) return;
  auto linear = make_linear(in, out, ditbench::QuantMode::fp8_dynamic);
  auto x = ditbench::quantize_rows_fp8(at::randn({kTokens, in}, gpu_bf16()));  // [M, K]
  const auto& w = linear->weight_fp8;  // values [N, K], scale [N, 1]
#ifdef DITBENCH_HAS_CUDA
  if (schedule.sm_count < 0) {
    schedule.sm_count += at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  }
#endif
  auto gemm = [&] {
    return kernel
               ? ditbench::fp8_linear_cutlass(x, at::kBFloat16, w, linear->bias, *kernel, schedule)
               : ditbench::fp8_linear_aten_scaled_mm(x, at::kBFloat16, w, linear->bias);
  };
  if (!gemm().defined()) {
    state.SkipWithError("the kernel cannot serve these operands on this device");
    return;
  }
  set_tflops(state, ditbench::bench::time_on_gpu(state, [&] { gemm(); }), in, out);
}

// fp8_dynamic from a bf16 activation through the default CUTLASS kernel, the activation
// quantized on `quant_sms` SMs beside the GEMM, or first when quant_sms is 0.
void overlapped_at_hunyuan_shape(benchmark::State& state, int64_t in, int64_t out, int quant_sms) {
  if (!runnable(state)) return;
  auto linear = make_linear(in, out, ditbench::QuantMode::fp8_dynamic);
  auto x = at::randn({kTokens, in}, gpu_bf16());  // [M, K]
  const auto& w = linear->weight_fp8;
  constexpr auto kernel = ditbench::Fp8GemmKernel::coop_128x256_c2x1;
  auto run = [&] {
    return quant_sms > 0
               ? ditbench::fp8_linear_overlapped(x, w, linear->bias, kernel, {}, quant_sms)
               : ditbench::fp8_linear_cutlass(ditbench::quantize_rows_fp8(x), at::kBFloat16, w,
                                              linear->bias, kernel);
  };
  if (!run().defined()) {
    state.SkipWithError("the kernel cannot serve these operands on this device");
    return;
  }
  set_tflops(state, ditbench::bench::time_on_gpu(state, [&] { run(); }), in, out);
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

// The row quantizer that runs beside the GEMM (fp8_linear_overlapped), alone on `blocks` SMs.
void signalled_quantize_at_hunyuan_shape(benchmark::State& state, int64_t in, int blocks) {
  if (!runnable(state)) return;
#ifdef DITBENCH_HAS_CUDA
  auto x = at::randn({kTokens, in}, gpu_bf16());  // [M, K]
  auto values = at::empty({kTokens, in}, x.options().dtype(at::kFloat8_e4m3fn));
  auto scale = at::empty({kTokens}, x.options().dtype(at::kFloat));
  auto ready = at::zeros({(kTokens + 127) / 128}, x.options().dtype(at::kInt));
  auto stream = at::cuda::getCurrentCUDAStream();
  const double seconds = ditbench::bench::time_on_gpu(state, [&] {
    ditbench::quantize_rows_fp8_signalled_cuda(
        x.data_ptr(), ditbench::Fp8RowsInput::bfloat16, kTokens, in, in, values.data_ptr(),
        scale.data_ptr<float>(), ready.data_ptr<int>(), 128, blocks, stream);
  });
  const double bytes = double(kTokens) * (double(in) * 3 + 4);
  ditbench::bench::set_rate(state, "TB/s", bytes, seconds, 1e12);
#else
  (void)in, (void)blocks;
#endif
}

benchmark::internal::Benchmark* timed(benchmark::internal::Benchmark* b) {
  return b->UseManualTime()->Unit(benchmark::kMillisecond)->MinTime(0.2);
}

int register_all() {
  const std::vector<std::pair<int64_t, int64_t>> shapes{
      {3072, 9216}, {3072, 12288}, {12288, 3072}, {15360, 3072}};
  using ditbench::Fp8GemmRaster;
  const std::vector<std::tuple<Fp8GemmRaster, int, std::string>> schedules{
      {Fp8GemmRaster::heuristic, 1, "auto"},
      {Fp8GemmRaster::along_m, 1, "m1"},
      {Fp8GemmRaster::along_n, 1, "n1"},
      {Fp8GemmRaster::along_n, 8, "n8"}};
  for (auto [in, out] : shapes) {
    const std::string shape = std::to_string(in) + "x" + std::to_string(out);
    timed(benchmark::RegisterBenchmark(("linear/bf16/" + shape).c_str(), linear_at_hunyuan_shape,
                                       ditbench::QuantMode::none, in, out));
    timed(benchmark::RegisterBenchmark(("linear/fp8_dynamic/" + shape).c_str(),
                                       linear_at_hunyuan_shape, ditbench::QuantMode::fp8_dynamic,
                                       in, out));
    timed(benchmark::RegisterBenchmark(("fp8_gemm/" + shape).c_str(), fp8_gemm_at_hunyuan_shape, in,
                                       out));
    timed(benchmark::RegisterBenchmark(("fp8_gemm/scaled_mm/" + shape).c_str(),
                                       fp8_gemm_kernel_at_hunyuan_shape, in, out, std::nullopt,
                                       ditbench::Fp8GemmSchedule{}));
    for (int k = 0; k < ditbench::kFp8GemmKernelCount; ++k) {
      const auto kernel = static_cast<ditbench::Fp8GemmKernel>(k);
      for (auto [raster, swizzle, name] : schedules) {
        timed(benchmark::RegisterBenchmark(
            ("fp8_gemm/" + std::string(ditbench::fp8_gemm_kernel_name(kernel)) + "/" + name + "/" +
             shape)
                .c_str(),
            fp8_gemm_kernel_at_hunyuan_shape, in, out, kernel,
            ditbench::Fp8GemmSchedule{raster, swizzle}));
      }
    }
  }
  for (auto [in, out] : shapes) {
    if (in < 8192) continue;
    const std::string shape = std::to_string(in) + "x" + std::to_string(out);
    for (int quant_sms : {0, 8, 12, 16, 20, 24}) {
      timed(benchmark::RegisterBenchmark(
          ("linear/fp8_dynamic_q" + std::to_string(quant_sms) + "/" + shape).c_str(),
          overlapped_at_hunyuan_shape, in, out, quant_sms));
    }
    for (int less : {8, 16, 24}) {
      ditbench::Fp8GemmSchedule schedule;
      schedule.sm_count = -less;  // resolved against the device's SMs when the benchmark runs
      timed(benchmark::RegisterBenchmark(
          ("fp8_gemm/coop_128x256_c2x1/less" + std::to_string(less) + "/" + shape).c_str(),
          fp8_gemm_kernel_at_hunyuan_shape, in, out, ditbench::Fp8GemmKernel::coop_128x256_c2x1,
          schedule));
    }
  }
  for (int blocks : {16, 32, 132}) {
    timed(benchmark::RegisterBenchmark(
        ("quantize/signalled_q" + std::to_string(blocks) + "/12288").c_str(),
        signalled_quantize_at_hunyuan_shape, 12288, blocks));
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
