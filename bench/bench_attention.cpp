// Attention backends at HunyuanVideo's shapes: B=1, 24 heads x 128, a 720p video of 25,440 or
// 118,800 tokens joined with 256 text tokens of which 200 are valid (the padding mask). Reports
// TFLOP/s counting 4*B*H*Sq*Sk*D flops (the two matmuls) over GPU time from CUDA events.
// The `attention-layout` family runs the model's own case (no mask: 25,440 video + 200 valid text
// tokens) with q, k, v in three memory layouts: contiguous [B, H, S, D], contiguous [B, S, H, D]
// per tensor (token stride H*D), and column ranges of one packed q | k | v projection output
// (token stride 3*H*D), the layout the HunyuanVideo blocks hand to attention. The
// `attention-sustained` family runs the packed case 300 times in a row (about 4 s on an H100): long
// enough for the card to settle at its power limit, as inside a full-size step, where a burst of
// 20 calls still runs at a higher clock (the counters sm_clock_mhz and power_w say which). The
// `attention-fmha` families run each CUTLASS FMHA variant (fmha_sm90_cuda.h) on the packed case,
// in bursts of 20 and sustained (300).
#include <benchmark/benchmark.h>

#include <array>

#include "bench/gpu_timing.h"
#include "optimizations/attention/attention.h"
#include "optimizations/attention/backends.h"
#include "optimizations/attention/cutlass_fmha.h"

namespace {

constexpr int64_t kHeads = 24, kHeadDim = 128, kTextTokens = 256, kValidText = 200;

// Whether the benchmark can run: a CUDA build and device, and BACKEND serving bf16 at head dim
// 128 (with a key mask or not); otherwise it is skipped with the reason.
bool backend_ready(benchmark::State& state, const std::string& backend, bool has_mask) {
#ifndef DITBENCH_HAS_CUDA
  (void)backend, (void)has_mask;
  state.SkipWithError("needs a CUDA build");
  return false;
#else
  if (!at::hasCUDA()) {
    state.SkipWithError("no CUDA device");
    return false;
  }
  auto check =
      ditbench::check_backend(backend, at::Device(at::kCUDA, 0), at::kBFloat16, kHeadDim, has_mask);
  if (!check.ok) state.SkipWithError(check.reason.c_str());
  return check.ok;
#endif
}

#ifdef DITBENCH_HAS_CUDA
// The TFLOP/s counter of self-attention over q [1, H, S, D] taking `seconds` in all.
void set_attention_rate(benchmark::State& state, const at::Tensor& q, double seconds) {
  const double tokens = double(q.size(2));
  const double flops = 4.0 * double(q.size(1)) * tokens * tokens * double(q.size(3));
  ditbench::bench::set_rate(state, "TFLOP/s", flops, seconds, 1e12);
}

// Times ditbench::attend(q, k, v, key_mask) with CUDA events after one warm-up call (kernel
// selection, cuDNN plan build): TFLOP/s counter and the kernel as label. Returns the last output.
at::Tensor time_attend(benchmark::State& state, const at::Tensor& q, const at::Tensor& k,
                       const at::Tensor& v, const at::Tensor& key_mask) {
  at::Tensor out;
  const double seconds =
      ditbench::bench::time_on_gpu(state, [&] { out = ditbench::attend(q, k, v, key_mask); });
  set_attention_rate(state, q, seconds);
  state.counters["tokens"] = double(q.size(2));
  state.SetLabel(ditbench::take_kernel_log().front());
  return out;
}
#endif

void attention_at_hunyuan_shape(benchmark::State& state, const std::string& backend,
                                int64_t video_tokens) {
  if (!backend_ready(state, backend, true)) return;
#ifdef DITBENCH_HAS_CUDA
  const int64_t tokens = video_tokens + kTextTokens;
  const at::Device device(at::kCUDA, 0);
  auto options = at::TensorOptions().device(device).dtype(at::kBFloat16);
  auto q = at::randn({1, kHeads, tokens, kHeadDim}, options);  // [B, H, S, D]
  auto k = at::randn_like(q), v = at::randn_like(q);
  auto key_mask = at::ones({1, tokens}, options.dtype(at::kBool));  // [B, S]
  key_mask.narrow(1, video_tokens + kValidText, kTextTokens - kValidText).fill_(false);

  ditbench::AttentionScope scope({backend, nullptr});
  time_attend(state, q, k, v, key_mask);
#endif
}

// q, k, v as [B, H, S, D] views in LAYOUT ("bhsd", "bshd" or "packed"), random bf16.
std::array<at::Tensor, 3> qkv_in_layout(const std::string& layout, int64_t tokens,
                                        const at::TensorOptions& options) {
  if (layout == "bhsd") {
    return {at::randn({1, kHeads, tokens, kHeadDim}, options),
            at::randn({1, kHeads, tokens, kHeadDim}, options),
            at::randn({1, kHeads, tokens, kHeadDim}, options)};
  }
  if (layout == "bshd") {
    auto make = [&] { return at::randn({1, tokens, kHeads, kHeadDim}, options).transpose(1, 2); };
    return {make(), make(), make()};
  }
  auto packed = at::randn({1, tokens, 3, kHeads, kHeadDim}, options);  // [B, S, 3, H, D]
  return {packed.select(2, 0).transpose(1, 2), packed.select(2, 1).transpose(1, 2),
          packed.select(2, 2).transpose(1, 2)};
}

void unmasked_attention_in_layout(benchmark::State& state, const std::string& backend,
                                  const std::string& layout) {
  if (!backend_ready(state, backend, false)) return;
#ifdef DITBENCH_HAS_CUDA
  const int64_t tokens = 25440 + kValidText;
  const at::Device device(at::kCUDA, 0);
  auto [q, k, v] =
      qkv_in_layout(layout, tokens, at::TensorOptions().device(device).dtype(at::kBFloat16));
  ditbench::AttentionScope scope({backend, nullptr});
  auto out = time_attend(state, q, k, v, {});
  // The output's layout: whether [B, S, H*D] is a view of it (the model's next GEMM reads that).
  state.counters["out_bshd"] = out.transpose(1, 2).is_contiguous() ? 1 : 0;
#endif
}

// One CUTLASS FMHA variant on the packed case, called directly (the backend runs the default one).
void fmha_variant_packed(benchmark::State& state, ditbench::FmhaVariant variant) {
  if (!backend_ready(state, "cutlass_fmha", false)) return;
#ifdef DITBENCH_HAS_CUDA
  const int64_t tokens = 25440 + kValidText;
  auto [q, k, v] = qkv_in_layout("packed", tokens,
                                 at::TensorOptions().device(at::kCUDA, 0).dtype(at::kBFloat16));
  const double seconds = ditbench::bench::time_on_gpu(
      state, [&] { ditbench::cutlass_fmha_attention(q, k, v, false, variant); });
  set_attention_rate(state, q, seconds);
#else
  (void)variant;
#endif
}

int register_all() {
  for (const auto& [variant, name] : ditbench::fmha_variants()) {
    for (int calls : {20, 300}) {
      benchmark::RegisterBenchmark(
          (std::string(calls == 20 ? "attention-fmha/" : "attention-fmha-sustained/") + name +
           "/packed/25640")
              .c_str(),
          fmha_variant_packed, variant)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond)
          ->Iterations(calls);
    }
  }
  for (const std::string backend : {"cudnn", "flash", "cutlass_fmha"}) {
    for (const std::string layout : {"bhsd", "bshd", "packed"}) {
      benchmark::RegisterBenchmark(
          ("attention-layout/" + backend + "/" + layout + "/25640").c_str(),
          unmasked_attention_in_layout, backend, layout)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond)
          ->Iterations(20);
    }
  }
  for (const std::string backend : {"cudnn", "cutlass_fmha"}) {
    benchmark::RegisterBenchmark(("attention-sustained/" + backend + "/packed/25640").c_str(),
                                 unmasked_attention_in_layout, backend, std::string("packed"))
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(300);
  }
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
