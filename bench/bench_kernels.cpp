// The fused kernels of optimizations/kernels against the ATen chains they replace, at
// HunyuanVideo's 480x848x61 single-stream shape: 25,696 tokens (25,440 video + 256 text) x 3072
// (24 heads x 128), bf16, batch 1. GB/s is the effective bandwidth: the bytes the fused
// kernel must move at least (each activation read once, each output written once, the RoPE tables
// read once) over GPU time from CUDA events, the same byte count for both forms. ring_merge: the
// log-sum-exp merge of ring attention's 4 partial results on one rank of 4 at 720x1280x129
// (29,750 queries x 24 heads x 128, bf16 outputs stored [B, S, H, D] as cuDNN writes them).
// ulysses_pack: Ulysses 4's packing of q, k, v (views of the packed projection, token stride
// 3·3072) into its send buffer [4, 1, 29,750, 3, 6, 128] on one rank at 720x1280x129.
// tail_queries_broadcast: the CUTLASS FMHA split tail's last 296 queries [296, 24, 128] copied
// once per key chunk (5) at 480p (GB/s counts the 5 reads and 5 writes).
// group_norm_silu: GroupNorm (32 groups) + SiLU of the HunyuanVideo VAE decoder's widest
// activation, one 256x256 tile of 65 frames at 128 channels [1, 128, 65, 256, 256] (GB/s counts
// one read and one write). layer_norm_modulate_fp8: LayerNorm + modulate ending in e4m3 rows, the
// input of an FP8 q | k | v projection (GB/s: the bf16 read and the e4m3 write). gelu_tanh_fp8: the
// single block's MLP input to proj_out, e4m3 rows of [attention | GELU-tanh(proj_mlp)] (3072 +
// 12,288 columns, 25,696 rows); quantize_rows_fp8: the e4m3 rows of one [25,696 x 3072] bf16
// activation (GB/s: the bf16 read and the e4m3 write). bandwidth/*: what the card's memory
// gives such passes without any arithmetic of ours, the ceiling the row kernels are measured
// against: ATen's elementwise cast of bf16 [25,696 x C] into e4m3 (the row quantizers' bytes
// without their row scales) at C = 3072 and 15,360, and a bf16 copy of [25,696 x 15,360].
#include <benchmark/benchmark.h>

#include <functional>
#include <string>
#include <tuple>

#include "bench/gpu_timing.h"
#include "models/common/embeddings.h"
#include "models/common/norms.h"
#include "optimizations/kernels/fused.h"
#include "optimizations/kernels/fused_fp8.h"
#include "optimizations/kernels/group_norm.h"
#include "optimizations/kernels/strided_copy.h"
#include "optimizations/parallel/context_parallel.h"

namespace {

constexpr int64_t kTokens = 25696, kImageTokens = 25440, kDim = 3072, kHeads = 24, kHeadDim = 128;
constexpr double kEps = 1e-6;

// Times `run` with CUDA events per iteration and reports GB/s for `bytes` per call.
void time_on_gpu(benchmark::State& state, double bytes, const std::function<void()>& run) {
  ditbench::bench::set_rate(state, "GB/s", bytes, ditbench::bench::time_on_gpu(state, run), 1e9);
}

at::TensorOptions bf16() { return at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16); }
constexpr double kActivationBytes = double(kTokens) * kDim * 2;  // one [1, S, D] bf16 tensor

void layer_norm_modulate(benchmark::State& state, bool fused) {
  if (!at::hasCUDA()) return time_on_gpu(state, 0, {});
  auto x = at::randn({1, kTokens, kDim}, bf16());
  auto mod = at::randn({1, 3 * kDim}, bf16()).chunk(3, 1);  // shift, scale, gate
  if (fused && !ditbench::try_layer_norm_modulate(x, mod[0], mod[1], kEps).defined()) {
    return state.SkipWithError("the fused kernel declined");
  }
  time_on_gpu(state, 2 * kActivationBytes, [&] {
    if (fused) {
      benchmark::DoNotOptimize(ditbench::try_layer_norm_modulate(x, mod[0], mod[1], kEps));
    } else {
      benchmark::DoNotOptimize(
          ditbench::modulate(ditbench::layer_norm_plain(x, kEps), mod[0], mod[1]));
    }
  });
}

void layer_norm_modulate_fp8(benchmark::State& state, bool fused) {
  if (!at::hasCUDA()) return time_on_gpu(state, 0, {});
  auto x = at::randn({1, kTokens, kDim}, bf16());
  auto mod = at::randn({1, 3 * kDim}, bf16()).chunk(3, 1);  // shift, scale, gate
  if (fused &&
      !ditbench::try_layer_norm_modulate_fp8(x, mod[0], mod[1], kEps, false).fp8.values.defined()) {
    return state.SkipWithError("the fused kernel declined");
  }
  time_on_gpu(state, 1.5 * kActivationBytes, [&] {
    if (fused) {
      benchmark::DoNotOptimize(
          ditbench::try_layer_norm_modulate_fp8(x, mod[0], mod[1], kEps, false));
    } else {
      auto y = ditbench::try_layer_norm_modulate(x, mod[0], mod[1], kEps);
      benchmark::DoNotOptimize(ditbench::quantize_rows_fp8(y.view({kTokens, kDim})));
    }
  });
}

void gate_residual(benchmark::State& state, bool fused) {
  if (!at::hasCUDA()) return time_on_gpu(state, 0, {});
  auto x = at::randn({1, kTokens, kDim}, bf16()), y = at::randn({1, kTokens, kDim}, bf16());
  auto gate = at::randn({1, 3 * kDim}, bf16()).chunk(3, 1)[2];
  if (fused && !ditbench::try_gate_residual(x, gate, y).defined()) {
    return state.SkipWithError("the fused kernel declined");
  }
  time_on_gpu(state, 3 * kActivationBytes, [&] {
    if (fused) {
      benchmark::DoNotOptimize(ditbench::try_gate_residual(x, gate, y));
    } else {
      benchmark::DoNotOptimize(x + y * gate.unsqueeze(1));
    }
  });
}

// q and k of a single-stream block: RMSNorm of every row, RoPE on the 25,440 video rows.
void qk_rms_norm_rope(benchmark::State& state, bool fused) {
  if (!at::hasCUDA()) return time_on_gpu(state, 0, {});
  auto q = at::randn({1, kTokens, kHeads, kHeadDim}, bf16());
  auto k = at::randn({1, kTokens, kHeads, kHeadDim}, bf16());
  ditbench::RMSNorm norm_q(kHeadDim, kEps, true, bf16()), norm_k(kHeadDim, kEps, true, bf16());
  norm_q->weight.fill_(1.0);
  norm_k->weight.fill_(1.0);
  // The 480p grid is 16 x 30 x 53 = 25,440 video tokens.
  auto [cos, sin] = ditbench::rope_3d_grid(16, 30, 53, {16, 56, 56}, 256.0, at::kCUDA);
  const double table_bytes = 2.0 * kImageTokens * kHeadDim * 4;
  if (fused &&
      !ditbench::try_qk_rms_norm_rope_(q, k, norm_q->weight, norm_k->weight, cos, sin, kEps)) {
    return state.SkipWithError("the fused kernel declined");
  }
  auto chain = [&](const at::Tensor& t, ditbench::RMSNorm& norm) {
    auto y = norm(t);
    return at::cat({ditbench::apply_rotary_emb(y.narrow(1, 0, kImageTokens), cos, sin, 1),
                    y.narrow(1, kImageTokens, kTokens - kImageTokens)},
                   1);
  };
  time_on_gpu(state, 4 * kActivationBytes + table_bytes, [&] {
    if (fused) {
      // In place, as the model runs it on fresh projections (the values do not matter here).
      ditbench::try_qk_rms_norm_rope_(q, k, norm_q->weight, norm_k->weight, cos, sin, kEps);
    } else {
      benchmark::DoNotOptimize(chain(q, norm_q));
      benchmark::DoNotOptimize(chain(k, norm_k));
    }
  });
}

// Ring attention's merge of 4 partial results (one per key block) into the bf16 output.
void ring_merge(benchmark::State& state, bool fused) {
  if (!at::hasCUDA()) return time_on_gpu(state, 0, {});
  constexpr int64_t kQueries = (118800 + 200) / 4, kParts = 4;
  std::vector<ditbench::LocalAttentionResult> parts;
  for (int i = 0; i < kParts; ++i) {
    auto out = at::randn({1, kQueries, kHeads, kHeadDim}, bf16()).transpose(1, 2);
    auto lse = at::randn({1, kHeads, kQueries}, bf16().dtype(at::kFloat)) + 10;
    parts.push_back({out, lse});
  }
  const bool was = ditbench::fused_kernels_enabled();
  ditbench::set_fused_kernels_enabled(fused);
  const double out_bytes = double(kQueries) * kHeads * kHeadDim * 2;
  time_on_gpu(state, (kParts + 1) * out_bytes, [&] {
    benchmark::DoNotOptimize(ditbench::merge_attention_parts(parts, at::kBFloat16));
  });
  ditbench::set_fused_kernels_enabled(was);
}

// Ulysses 4's packing of one rank's q, k and v into the all-to-all's send buffer.
void ulysses_pack(benchmark::State& state, bool fused) {
  if (!at::hasCUDA()) return time_on_gpu(state, 0, {});
  constexpr int64_t kRanks = 4, kLocalTokens = (118800 + 200) / 4, kLocalHeads = kHeads / kRanks;
  auto packed = at::randn({1, kLocalTokens, 3, kHeads, kHeadDim}, bf16());
  auto send = at::empty({kRanks, 1, kLocalTokens, 3, kLocalHeads, kHeadDim}, bf16());
  const bool was = ditbench::fused_kernels_enabled();
  ditbench::set_fused_kernels_enabled(fused);
  time_on_gpu(state, 2.0 * packed.numel() * 2, [&] {
    for (int64_t i = 0; i < 3; ++i) {
      at::Tensor slot = send.select(3, i);
      ditbench::copy_strided(
          slot, packed.select(2, i).unflatten(2, {kRanks, kLocalHeads}).permute({2, 0, 1, 3, 4}));
    }
  });
  ditbench::set_fused_kernels_enabled(was);
}

// The CUTLASS FMHA split tail's queries at 480p (296 of 25,640 tokens) copied once per key chunk
// (5): a broadcast of one [R, H, D] block.
void tail_queries_broadcast(benchmark::State& state, bool fused) {
  if (!at::hasCUDA()) return time_on_gpu(state, 0, {});
  constexpr int64_t kRest = 296, kParts = 5;
  auto q = at::randn({1, kRest, kHeads, kHeadDim}, bf16());
  auto out = at::empty({kParts, kRest, kHeads, kHeadDim}, bf16());
  const bool was = ditbench::fused_kernels_enabled();
  ditbench::set_fused_kernels_enabled(fused);
  time_on_gpu(state, double(out.nbytes()) * 2, [&] {
    ditbench::copy_strided(out, q.expand({kParts, -1, -1, -1}));
  });
  ditbench::set_fused_kernels_enabled(was);
}

void group_norm_silu(benchmark::State& state, bool fused) {
  if (!at::hasCUDA()) return time_on_gpu(state, 0, {});
  auto x = at::randn({1, 128, 65, 256, 256}, bf16());  // [B, C, F, H, W]
  auto w = at::rand({128}, bf16()) + 0.5, b = at::randn({128}, bf16());
  if (fused && !ditbench::try_group_norm(x, 32, w, b, kEps, true).defined()) {
    return state.SkipWithError("the fused kernel declined");
  }
  time_on_gpu(state, 2.0 * double(x.nbytes()), [&] {
    if (fused) {
      benchmark::DoNotOptimize(ditbench::try_group_norm(x, 32, w, b, kEps, true));
    } else {
      benchmark::DoNotOptimize(at::silu(at::group_norm(x, 32, w, b, kEps)));
    }
  });
}

void gelu_tanh_fp8(benchmark::State& state, bool fused) {
  if (!at::hasCUDA()) return time_on_gpu(state, 0, {});
  constexpr int64_t kHidden = 4 * kDim;
  auto attention = at::randn({1, kTokens, kDim}, bf16());
  auto h = at::randn({1, kTokens, kHidden}, bf16());
  if (fused && !ditbench::try_gelu_tanh_fp8(h, attention).fp8.values.defined()) {
    return state.SkipWithError("the fused kernel declined");
  }
  time_on_gpu(state, double(kTokens) * (kDim + kHidden) * 3, [&] {
    if (fused) {
      benchmark::DoNotOptimize(ditbench::try_gelu_tanh_fp8(h, attention));
    } else {
      auto rows = at::cat({attention, at::gelu(h, "tanh")}, 2).view({kTokens, -1});
      benchmark::DoNotOptimize(ditbench::quantize_rows_fp8(rows));
    }
  });
}

void quantize_rows_fp8(benchmark::State& state, bool fused) {
  if (!at::hasCUDA()) return time_on_gpu(state, 0, {});
  auto x = at::randn({kTokens, kDim}, bf16());
  time_on_gpu(state, 1.5 * kActivationBytes, [&] {
    benchmark::DoNotOptimize(fused ? ditbench::quantize_rows_fp8(x)
                                   : ditbench::quantize_rows_fp8_aten(x));
  });
}

// ATen's bf16 -> e4m3 cast (cast) or bf16 copy (copy) of [25,696 x columns] into a buffer made
// beforehand.
void bandwidth(benchmark::State& state, bool cast, int64_t columns) {
  if (!at::hasCUDA()) return time_on_gpu(state, 0, {});
  auto x = at::randn({kTokens, columns}, bf16());
  auto out = at::empty_like(x, cast ? bf16().dtype(at::kFloat8_e4m3fn) : bf16());
  time_on_gpu(state, double(x.nbytes()) + double(out.nbytes()), [&] { out.copy_(x); });
}

int register_all() {
  using Fn = void (*)(benchmark::State&, bool);
  const std::pair<const char*, Fn> kernels[] = {
      {"layer_norm_modulate", layer_norm_modulate},
      {"layer_norm_modulate_fp8", layer_norm_modulate_fp8},
      {"gate_residual", gate_residual},
      {"qk_rms_norm_rope", qk_rms_norm_rope},
      {"ring_merge", ring_merge},
      {"ulysses_pack", ulysses_pack},
      {"tail_queries_broadcast", tail_queries_broadcast},
      {"group_norm_silu", group_norm_silu},
      {"gelu_tanh_fp8", gelu_tanh_fp8},
      {"quantize_rows_fp8", quantize_rows_fp8}};
  for (const auto& [name, fn] : kernels) {
    for (bool fused : {true, false}) {
      const std::string id = std::string(name) + (fused ? "/fused" : "/aten_chain");
      benchmark::RegisterBenchmark(id.c_str(), fn, fused)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond)
          ->MinTime(0.2);
    }
  }
  for (const auto& [name, cast, columns] :
       {std::tuple{"bandwidth/cast_e4m3/3072", true, kDim},
        std::tuple{"bandwidth/cast_e4m3/15360", true, 5 * kDim},
        std::tuple{"bandwidth/copy_bf16/15360", false, 5 * kDim}}) {
    benchmark::RegisterBenchmark(name, bandwidth, cast, columns)
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond)
        ->MinTime(0.2);
  }
  return 0;
}
const int registered = register_all();

}  // namespace

BENCHMARK_MAIN();
