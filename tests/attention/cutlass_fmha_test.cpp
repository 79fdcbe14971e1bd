// The CUTLASS FMHA backend (optimizations/attention/cutlass_fmha.h): every kernel variant against
// the float32 reference in the layouts and sizes the adapter handles (column ranges of a packed
// projection, a query count that is not a multiple of 8, keys that end inside a key block,
// operands the kernel cannot read in place).
#include "optimizations/attention/cutlass_fmha.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "models/common/error.h"
#include "test_util.h"

#ifdef DITBENCH_HAS_CUDA
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
  EXPECT_EQ(names, (std::vector<std::string>{"coop_128x128", "pingpong_128x128"}));
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
              "pingpong_128x128)");
  }
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
#endif
}

}  // namespace
}  // namespace ditbench
