// The CUTLASS FMHA backend (optimizations/attention/cutlass_fmha.h): every kernel variant against
// the float32 reference in the layouts and sizes the adapter handles (column ranges of a packed
// projection, a query count that is not a multiple of 8, keys that end inside a key block,
// operands the kernel cannot read in place).
#include "optimizations/attention/cutlass_fmha.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdlib>
#include <iostream>

#include "models/common/error.h"
#include "test_util.h"

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace ditbench {
namespace {

using testing::rel_error;

TEST(CutlassFmha, RefusesWhatItCannotRun) {
  auto q = at::randn({1, 2, 16, 128}).to(at::kBFloat16);
  try {
    cutlass_fmha_attention(q, q, q, false);
    FAIL() << "ran on the CPU";
  } catch (const Unsupported& e) {
#ifdef DITBENCH_HAS_CUDA
    EXPECT_EQ(std::string(e.what()), "cutlass_fmha takes bf16 CUDA tensors, not bf16 on cpu");
#else
    EXPECT_EQ(std::string(e.what()), "cutlass_fmha needs a CUDA build of ditbench");
#endif
  }
  std::vector<std::string> names;
  for (const auto& [variant, name] : fmha_variants()) names.push_back(name);
  // The pairs serve the 480p step's keys, not the 720p step's.
  EXPECT_EQ(fmha_default_variant(25640), FmhaVariant::kPingpong128x128QueryRegistersCluster2);
  EXPECT_EQ(fmha_default_variant(119056), FmhaVariant::kPingpong128x128QueryRegisters);
  EXPECT_EQ(names,
            (std::vector<std::string>{"coop_128x128", "pingpong_128x128", "pingpong_128x128_qreg",
                                      "pingpong_128x128_qreg_c2x1"}));
}

TEST(CutlassFmha, UnknownKernelNameIsAnInputErrorNamingTheKnownOnes) {
  auto q = at::randn({1, 2, 16, 128}).to(at::kBFloat16);
  setenv("DITBENCH_FMHA_KERNEL", "coop_64x64", 1);
  try {
    attention_backend("cutlass_fmha").run(q, q, q, {}, false);
    unsetenv("DITBENCH_FMHA_KERNEL");
    FAIL() << "an unknown kernel name was accepted";
  } catch (const InputError& e) {
    unsetenv("DITBENCH_FMHA_KERNEL");
    EXPECT_EQ(std::string(e.what()),
              "DITBENCH_FMHA_KERNEL: unknown FMHA kernel 'coop_64x64' (known: coop_128x128, "
              "pingpong_128x128, pingpong_128x128_qreg, pingpong_128x128_qreg_c2x1)");
  }
}

// The tail split's plan in tile rounds, derived by hand. HunyuanVideo 480x848x61 on 132 SMs:
// 201 query tiles x 24 heads = 4824 tiles, 36.5 rounds; the main launch takes 198 query tiles
// (4752 tiles, 36 full rounds), the other 72 tiles split 11 ways (2336 keys each) fill 6 rounds
// of 0.10 tile: 36 + 0.61 + 0.08 against 37. Among 2..16 chunks dividing 25,696 keys, 8 (5
// rounds of 0.135) and 16 (9 of 0.072) finish later.
TEST(CutlassFmha, TailSplitPlanFillsTheLastRound) {
  auto p480 = plan_fmha_tail_split(1, 24, 25696, 25696, 132);
  EXPECT_EQ(p480.main_queries, 198 * 128);
  EXPECT_EQ(p480.parts, 11);
  // The step's own shape, 56 padded text tokens dropped (25,640 tokens, still 201 query tiles):
  // 25,640 = 8 * 5 * 641; 5 chunks take 3 rounds of 0.21 tile (0.63), 10 take 6 of 0.11 (0.66),
  // 8 take 5 of 0.135 (0.67).
  auto step = plan_fmha_tail_split(1, 24, 25640, 25640, 132);
  EXPECT_EQ(step.main_queries, 198 * 128);
  EXPECT_EQ(step.parts, 5);
  // 720x1280x129 (119,056 tokens): 931 x 24 = 22,344 tiles; the main launch 929 query tiles
  // (22,296 tiles, 169 rounds); 48 tiles left. 119,056 = 16 * 7 * 1063: 8 chunks take 3 rounds
  // of 0.127 tile (0.38), 16 take 6 of 0.065 (0.39), 7 take 3 of 0.145 (0.44).
  auto p720 = plan_fmha_tail_split(1, 24, 119056, 119056, 132);
  EXPECT_EQ(p720.main_queries, 929 * 128);
  EXPECT_EQ(p720.parts, 8);
  // Clusters of two neighbouring query tiles: the main launch takes whole pairs a head. 720p:
  // 928 query tiles (929 is odd), 72 tiles left (3 a head); 7 chunks take 4 rounds of 0.145
  // tile (0.580), 16 take 9 of 0.0647 (0.582), 14 take 8 of 0.0736 (0.589), 8 take 5 of 0.127.
  auto p720_pairs = plan_fmha_tail_split(1, 24, 119056, 119056, 132, 2);
  EXPECT_EQ(p720_pairs.main_queries, 928 * 128);
  EXPECT_EQ(p720_pairs.parts, 7);
  // The step's shape: 198 is even, the same plan as one tile a block.
  auto step_pairs = plan_fmha_tail_split(1, 24, 25640, 25640, 132, 2);
  EXPECT_EQ(step_pairs.main_queries, 198 * 128);
  EXPECT_EQ(step_pairs.parts, 5);
  // No split: batch 2, a last round without idle SMs (55 query tiles x 24 heads = 10 rounds),
  // fewer than 4 rounds, keys that no 2..16 chunks of 1024 or more divide (25,693 is prime).
  EXPECT_EQ(plan_fmha_tail_split(2, 24, 25696, 25696, 132).parts, 1);
  EXPECT_EQ(plan_fmha_tail_split(1, 24, 55 * 128, 25696, 132).parts, 1);
  EXPECT_EQ(plan_fmha_tail_split(1, 2, 333, 333, 132).parts, 1);
  EXPECT_EQ(plan_fmha_tail_split(1, 24, 25693, 25693, 132).parts, 1);
}

// q [B, H, Sq, D] and k, v [B, H, Sk, D] as column ranges of packed projections
// [B, S, 3, H, D] (token stride 3*H*D), the layout HunyuanVideo's blocks hand over.
struct Packed {
  at::Tensor q, k, v;
};
Packed packed_inputs(int64_t batch, int64_t heads, int64_t queries, int64_t keys,
                     uint64_t seed = 11) {
  at::manual_seed(seed);
  auto options = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  auto pq = at::randn({batch, queries, 3, heads, 128}, options);
  auto pkv = at::randn({batch, keys, 3, heads, 128}, options);
  return {pq.select(2, 0).transpose(1, 2), pkv.select(2, 1).transpose(1, 2),
          pkv.select(2, 2).transpose(1, 2)};
}

TEST(CutlassFmhaCuda, EveryVariantMatchesTheReference) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  auto check = check_backend("cutlass_fmha", at::Device(at::kCUDA, 0), at::kBFloat16, 128, false);
  if (!check.ok) GTEST_SKIP() << check.reason;
  // (queries, keys): a partial query tile, 333 queries (padded to 336) against keys that end
  // inside a 128-key block, and more keys than queries.
  const std::vector<std::pair<int64_t, int64_t>> sizes{{200, 200}, {333, 333}, {512, 777}};
  for (const auto& [variant, name] : fmha_variants()) {
    for (const auto& [queries, keys] : sizes) {
      SCOPED_TRACE(name + " " + std::to_string(queries) + "x" + std::to_string(keys));
      auto in = packed_inputs(2, 3, queries, keys);
      auto ref = math_attention(in.q, in.k, in.v, {}, true);
      auto got = cutlass_fmha_attention(in.q, in.k, in.v, true, variant);
      ASSERT_EQ(got.out.sizes(), in.q.sizes());
      EXPECT_EQ(got.out.scalar_type(), at::kBFloat16);
      EXPECT_LT(rel_error(got.out, ref.out), 1e-2);
      ASSERT_EQ(got.lse.sizes(), (std::vector<int64_t>{2, 3, queries}));
      EXPECT_LT((got.lse - ref.lse).abs().max().item<double>(), 2e-2);
      // Written token-major: each token's heads are one row of H*D.
      EXPECT_EQ(got.out.stride(1), 128);
      EXPECT_EQ(got.out.stride(2), 3 * 128);
    }
  }
}

// Q held in registers changes where the Q K^T products read Q from, not what they compute: the
// same instructions on the same values as CUTLASS's mainloop, so the same bits; so do blocks in
// pairs that share their K and V loads. Sizes: one key block (masked), two, a partial last block
// (3 query tiles a head: the pairs' fourth tile lies wholly past the queries), many blocks, more
// tiles than SMs (the persistent blocks walk several, loading the next tile's Q).
TEST(CutlassFmhaCuda, QueryRegistersComputeTheSameBitsAsCutlassMainloop) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  auto check = check_backend("cutlass_fmha", at::Device(at::kCUDA, 0), at::kBFloat16, 128, false);
  if (!check.ok) GTEST_SKIP() << check.reason;
  // The pairs' launch: whole clusters of two, at most a block an SM.
  const auto pairs = fmha_sm90_launch_shape(FmhaVariant::kPingpong128x128QueryRegistersCluster2);
  std::cout << "pingpong_128x128_qreg_c2x1: " << pairs.resident << " blocks resident\n";
  EXPECT_EQ(pairs.cluster, 2);
  EXPECT_GT(pairs.resident, 0);
  EXPECT_EQ(pairs.resident % 2, 0);
  EXPECT_LE(pairs.resident, at::cuda::getCurrentDeviceProperties()->multiProcessorCount);
  EXPECT_EQ(fmha_sm90_launch_shape(FmhaVariant::kPingpong128x128QueryRegisters).cluster, 1);
  const std::vector<std::pair<int64_t, int64_t>> sizes{
      {200, 100}, {256, 256}, {333, 777}, {640, 2000}, {4096, 1000}};
  for (auto variant : {FmhaVariant::kPingpong128x128QueryRegisters,
                       FmhaVariant::kPingpong128x128QueryRegistersCluster2}) {
    for (const auto& [queries, keys] : sizes) {
      SCOPED_TRACE(std::to_string(static_cast<int>(variant)) + ": " + std::to_string(queries) +
                   "x" + std::to_string(keys));
      auto in = packed_inputs(2, 24, queries, keys, 5);
      auto got = cutlass_fmha_attention(in.q, in.k, in.v, true, variant, FmhaTailSplit{});
      auto want = cutlass_fmha_attention(in.q, in.k, in.v, true, FmhaVariant::kPingpong128x128,
                                         FmhaTailSplit{});
      EXPECT_TRUE(at::equal(got.out, want.out));
      EXPECT_TRUE(at::equal(got.lse, want.lse));
    }
  }
}

TEST(CutlassFmhaCuda, OperandsItCannotReadInPlaceAreCopiedFirst) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  auto check = check_backend("cutlass_fmha", at::Device(at::kCUDA, 0), at::kBFloat16, 128, false);
  if (!check.ok) GTEST_SKIP() << check.reason;
  auto in = packed_inputs(1, 2, 256, 256);
  // The same values one element past a 16-byte boundary: TMA cannot read them in place.
  auto storage = at::empty({in.q.numel() + 1}, in.q.options());
  auto shifted = storage.narrow(0, 1, in.q.numel()).view({1, 2, 256, 128}).copy_(in.q);
  ASSERT_NE(reinterpret_cast<uintptr_t>(shifted.data_ptr()) % 16, 0u);
  auto aligned = cutlass_fmha_attention(in.q, in.k, in.v, true);
  auto copied = cutlass_fmha_attention(shifted, in.k, in.v, true);
  // One kernel on the same values: the same bits.
  EXPECT_TRUE(at::equal(copied.out, aligned.out));
  EXPECT_TRUE(at::equal(copied.lse, aligned.lse));
}

// The split tail (the last queries against equal key chunks, merged by log-sum-exp) against the
// reference and against one launch, forced on small problems (chunks ending inside a key block,
// 11 and 16 chunks) and as planned on one where the plan splits on an H100 or H200.
TEST(CutlassFmhaCuda, SplitTailMatchesTheReferenceAndOneLaunch) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  auto check = check_backend("cutlass_fmha", at::Device(at::kCUDA, 0), at::kBFloat16, 128, false);
  if (!check.ok) GTEST_SKIP() << check.reason;
  // (queries, keys, main queries, parts)
  const std::vector<std::array<int64_t, 4>> cases{
      {1000, 1100, 768, 4}, {1000, 1100, 896, 11}, {333, 1600, 128, 16}};
  for (const auto& [queries, keys, main, parts] : cases) {
    SCOPED_TRACE(std::to_string(queries) + "x" + std::to_string(keys) + " split " +
                 std::to_string(main) + "/" + std::to_string(parts));
    auto in = packed_inputs(1, 3, queries, keys);
    auto ref = math_attention(in.q, in.k, in.v, {}, true);
    auto one = cutlass_fmha_attention(in.q, in.k, in.v, true, std::nullopt, FmhaTailSplit{});
    auto got =
        cutlass_fmha_attention(in.q, in.k, in.v, true, std::nullopt, FmhaTailSplit{main, parts});
    ASSERT_EQ(got.out.sizes(), in.q.sizes());
    EXPECT_LT(rel_error(got.out, ref.out), 1e-2);
    EXPECT_LT((got.lse - ref.lse).abs().max().item<double>(), 2e-2);
    // The main queries are one launch's rows, bit for bit; the rest within bf16 rounding.
    EXPECT_TRUE(at::equal(got.out.narrow(2, 0, main), one.out.narrow(2, 0, main)));
    EXPECT_LT(rel_error(got.out, one.out), 4e-3);
    EXPECT_LT((got.lse - one.lse).abs().max().item<double>(), 1e-3);
    // Without the lse asked for: the same output.
    auto no_lse =
        cutlass_fmha_attention(in.q, in.k, in.v, false, std::nullopt, FmhaTailSplit{main, parts});
    EXPECT_TRUE(at::equal(no_lse.out, got.out));
  }
  // As planned: 2900 queries x 24 heads (552 tiles, 4.2 rounds on 132 SMs), 16,384 keys.
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  if (plan_fmha_tail_split(1, 24, 2900, 16384, sms).parts == 1) GTEST_SKIP() << sms << " SMs";
  auto in = packed_inputs(1, 24, 2900, 16384);
  auto planned = cutlass_fmha_attention(in.q, in.k, in.v, true);
  auto one = cutlass_fmha_attention(in.q, in.k, in.v, true, std::nullopt, FmhaTailSplit{});
  EXPECT_FALSE(at::equal(planned.out, one.out));  // the tail did run split
  EXPECT_LT(rel_error(planned.out, one.out), 4e-3);
  EXPECT_LT((planned.lse - one.lse).abs().max().item<double>(), 1e-3);
  // Switched off, one launch.
  setenv("DITBENCH_FMHA_SPLIT_TAIL", "0", 1);
  auto off = cutlass_fmha_attention(in.q, in.k, in.v, true);
  unsetenv("DITBENCH_FMHA_SPLIT_TAIL");
  EXPECT_TRUE(at::equal(off.out, one.out));
}

TEST(CutlassFmhaCuda, ReplaysOfACapturedCallComputeWhatTheEagerCallDoes) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  auto check = check_backend("cutlass_fmha", at::Device(at::kCUDA, 0), at::kBFloat16, 128, false);
  if (!check.ok) GTEST_SKIP() << check.reason;
#ifdef DITBENCH_HAS_CUDA
  auto input = packed_inputs(1, 2, 333, 333);               // the padded-query path, captured too
  cutlass_fmha_attention(input.q, input.k, input.v, true);  // eager first, as the models capture
  c10::cuda::CUDAStreamGuard on_side_stream(c10::cuda::getStreamFromPool());
  at::cuda::CUDAGraph graph;
  graph.capture_begin();
  auto captured = cutlass_fmha_attention(input.q, input.k, input.v, true);
  graph.capture_end();
  for (uint64_t seed : {21, 22}) {
    auto fresh = packed_inputs(1, 2, 333, 333, seed);
    input.q.copy_(fresh.q), input.k.copy_(fresh.k), input.v.copy_(fresh.v);
    graph.replay();
    auto eager = cutlass_fmha_attention(fresh.q, fresh.k, fresh.v, true);
    EXPECT_TRUE(at::equal(captured.out, eager.out)) << "seed " << seed;
    EXPECT_TRUE(at::equal(captured.lse, eager.lse)) << "seed " << seed;
  }
  // The split tail captured: its copy, two launches and merge replay as run eagerly.
  const FmhaTailSplit split{256, 3};
  cutlass_fmha_attention(input.q, input.k, input.v, true, std::nullopt, split);
  at::cuda::CUDAGraph split_graph;
  split_graph.capture_begin();
  auto split_captured =
      cutlass_fmha_attention(input.q, input.k, input.v, true, std::nullopt, split);
  split_graph.capture_end();
  auto fresh = packed_inputs(1, 2, 333, 333, 23);
  input.q.copy_(fresh.q), input.k.copy_(fresh.k), input.v.copy_(fresh.v);
  split_graph.replay();
  auto eager = cutlass_fmha_attention(fresh.q, fresh.k, fresh.v, true, std::nullopt, split);
  EXPECT_TRUE(at::equal(split_captured.out, eager.out));
  EXPECT_TRUE(at::equal(split_captured.lse, eager.lse));
#endif
}

}  // namespace
}  // namespace ditbench
