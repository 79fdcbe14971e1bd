#include "optimizations/attention/backends.h"

#include <gtest/gtest.h>

#include <cmath>

#include "models/common/error.h"
#include "optimizations/attention/attention.h"
#include "optimizations/attention/kernel_log.h"
#include "test_util.h"

namespace ditbench {
namespace {

using testing::rel_error;

struct Inputs {
  at::Tensor q, k, v;
};

// q: [B, H, Sq, D], k/v: [B, H, Sk, D]
Inputs random_inputs(int64_t batch, int64_t heads, int64_t queries, int64_t keys, int64_t dim,
                     const at::TensorOptions& options) {
  at::manual_seed(7);
  auto f = at::TensorOptions().dtype(at::kFloat);
  return {at::randn({batch, heads, queries, dim}, f).to(options),
          at::randn({batch, heads, keys, dim}, f).to(options),
          at::randn({batch, heads, keys, dim}, f).to(options)};
}

// [B, Sk] bool: sample b attends to its first valid[b] keys (HunyuanVideo's right-padded text),
// with a hole in the middle of sample 0 so nothing relies on the masks being prefixes.
at::Tensor key_mask_with_valid(const std::vector<int64_t>& valid, int64_t keys, bool hole) {
  auto mask = at::zeros({static_cast<int64_t>(valid.size()), keys}, at::kBool);
  for (size_t b = 0; b < valid.size(); ++b) mask[b].narrow(0, 0, valid[b]).fill_(true);
  if (hole) mask[0][keys / 3] = false;
  return mask;
}

// Explicit double-precision attention of one (batch, head): the independent reference.
LocalAttentionResult double_reference(const Inputs& in, const at::Tensor& key_mask) {
  auto q = in.q.to(at::kDouble), k = in.k.to(at::kDouble), v = in.v.to(at::kDouble);
  auto scores = at::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(q.size(-1)));
  if (key_mask.defined()) {
    scores = scores.masked_fill(key_mask.logical_not().view({q.size(0), 1, 1, -1}), -INFINITY);
  }
  auto lse = at::logsumexp(scores, -1);
  return {at::matmul(at::softmax(scores, -1), v), lse};
}

TEST(AttentionBackends, RegistryListsEveryBackendInOrder) {
  const std::vector<std::string> expected{"math",  "sdpa",      "flash",       "efficient",
                                          "cudnn", "cudnn_fp8", "cutlass_fmha"};
  EXPECT_EQ(attention_backend_names(), expected);
  for (const auto& name : expected) EXPECT_EQ(attention_backend(name).name(), name);
  EXPECT_THROW(attention_backend("flash3"), InputError);
  try {
    check_backend("flash3", at::kCPU, at::kFloat, 64, false);
    FAIL() << "unknown backend accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'flash3'"), std::string::npos) << e.what();
  }
}

TEST(AttentionBackends, MathLogSumExpMatchesHandComputation) {
  // One query [1, 0] against keys [1, 0], [0, 1], [2, 0]; D = 2, so scores are k.q / sqrt(2).
  auto q = at::tensor({1.0f, 0.0f}).view({1, 1, 1, 2});
  auto k = at::tensor({1.0f, 0.0f, 0.0f, 1.0f, 2.0f, 0.0f}).view({1, 1, 3, 2});
  auto v = at::tensor({1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f}).view({1, 1, 3, 2});
  const double s0 = 1.0 / std::sqrt(2.0), s1 = 0.0, s2 = 2.0 / std::sqrt(2.0);
  const double z = std::exp(s0) + std::exp(s1) + std::exp(s2);
  auto full = math_attention(q, k, v, {}, true);
  EXPECT_NEAR(full.lse.item<double>(), std::log(z), 1e-6);
  const double p0 = std::exp(s0) / z, p1 = std::exp(s1) / z, p2 = std::exp(s2) / z;
  EXPECT_NEAR(full.out[0][0][0][0].item<double>(), p0 * 1 + p1 * 3 + p2 * 5, 1e-5);
  EXPECT_NEAR(full.out[0][0][0][1].item<double>(), p0 * 2 + p1 * 4 + p2 * 6, 1e-5);

  // The third key masked out: only the first two count.
  auto mask = at::tensor({1, 1, 0}).to(at::kBool).view({1, 3});
  auto masked = math_attention(q, k, v, mask, true);
  const double zm = std::exp(s0) + std::exp(s1);
  EXPECT_NEAR(masked.lse.item<double>(), std::log(zm), 1e-6);
  EXPECT_NEAR(masked.out[0][0][0][0].item<double>(), (std::exp(s0) * 1 + 3) / zm, 1e-5);
  EXPECT_EQ(masked.lse.scalar_type(), at::kFloat);
}

TEST(AttentionBackends, MathMatchesDoubleReferenceAcrossQueryChunks) {
  // 4096 / (B*H*Sk) = 4096 / (2*2*100) = 10 queries per chunk: 37 queries span four chunks.
  auto in = random_inputs(2, 2, 37, 100, 8, at::kFloat);
  auto mask = key_mask_with_valid({90, 71}, 100, true);
  auto ref = double_reference(in, mask);
  auto got = math_attention(in.q, in.k, in.v, mask, true, 4096);
  EXPECT_LT(rel_error(got.out, ref.out), 1e-5);
  EXPECT_LT((got.lse.to(at::kDouble) - ref.lse).abs().max().item<double>(), 1e-4);
}

// Every backend this machine's CPU can serve, against the double reference, for no mask, one
// mask shared by all samples and a different mask per sample, with and without the lse.
TEST(AttentionBackends, CpuServableBackendsMatchReference) {
  auto in = random_inputs(2, 3, 24, 40, 16, at::kFloat);
  const std::vector<std::pair<std::string, at::Tensor>> masks{
      {"none", {}},
      {"shared", key_mask_with_valid({29, 29}, 40, false)},
      {"per-sample", key_mask_with_valid({33, 21}, 40, true)}};
  int served = 0;
  for (const auto& name : attention_backend_names()) {
    if (!check_backend(name, at::kCPU, at::kFloat, 16, true).ok) continue;
    ++served;
    for (const auto& [mask_name, mask] : masks) {
      SCOPED_TRACE(name + " mask " + mask_name);
      auto ref = double_reference(in, mask);
      AttentionScope scope({name, nullptr});
      auto with_lse = local_attention(in.q, in.k, in.v, mask, true);
      EXPECT_LT(rel_error(with_lse.out, ref.out), 1e-5);
      ASSERT_TRUE(with_lse.lse.defined());
      EXPECT_EQ(with_lse.lse.sizes(), (std::vector<int64_t>{2, 3, 24}));
      EXPECT_LT((with_lse.lse.to(at::kDouble) - ref.lse).abs().max().item<double>(), 1e-4);
      EXPECT_LT(rel_error(attend(in.q, in.k, in.v, mask), ref.out), 1e-5);
    }
  }
  EXPECT_GE(served, 2);  // math and sdpa serve everywhere
}

// The path of the kernels that take no mask (flash, and per-sample masks anywhere), run on the
// CPU through an unmasked math kernel: shared masks gather once, differing masks split.
TEST(AttentionBackends, KeySelectionIsExactForSharedAndPerSampleMasks) {
  auto in = random_inputs(3, 2, 10, 32, 8, at::kFloat);
  int kernel_calls = 0;
  UnmaskedAttentionFn unmasked = [&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     bool need_lse) {
    ++kernel_calls;
    return math_attention(q, k, v, {}, need_lse);
  };
  {
    auto shared = key_mask_with_valid({20, 20, 20}, 32, false);
    auto ref = double_reference(in, shared);
    auto got = attend_by_key_selection(in.q, in.k, in.v, shared, true, unmasked);
    EXPECT_EQ(kernel_calls, 1);
    EXPECT_LT(rel_error(got.out, ref.out), 1e-5);
    EXPECT_LT((got.lse.to(at::kDouble) - ref.lse).abs().max().item<double>(), 1e-4);
  }
  {
    kernel_calls = 0;
    auto per_sample = key_mask_with_valid({25, 7, 32}, 32, true);
    auto ref = double_reference(in, per_sample);
    auto got = attend_by_key_selection(in.q, in.k, in.v, per_sample, true, unmasked);
    EXPECT_EQ(kernel_calls, 3);
    EXPECT_LT(rel_error(got.out, ref.out), 1e-5);
    EXPECT_LT((got.lse.to(at::kDouble) - ref.lse).abs().max().item<double>(), 1e-4);
  }
  {
    // A sample with no valid key: zeros and lse -inf, as the masked softmax defines them.
    auto none_valid = key_mask_with_valid({12, 0, 5}, 32, false);
    auto got = attend_by_key_selection(in.q, in.k, in.v, none_valid, true, unmasked);
    EXPECT_EQ(got.out[1].abs().max().item<float>(), 0.0f);
    EXPECT_TRUE(std::isinf(got.lse[1].max().item<float>()));
    auto ref = double_reference(in, none_valid);
    EXPECT_LT(rel_error(got.out[0], ref.out[0]), 1e-5);
    EXPECT_LT(rel_error(got.out[2], ref.out[2]), 1e-5);
    // math agrees on the empty sample.
    auto math = math_attention(in.q, in.k, in.v, none_valid, true);
    EXPECT_EQ(math.out[1].abs().max().item<float>(), 0.0f);
    EXPECT_TRUE(std::isinf(math.lse[1].max().item<float>()));
  }
}

TEST(AttentionBackends, FusedBackendsExplainWhyTheyCannotServe) {
  for (const std::string name : {"flash", "efficient", "cudnn", "cudnn_fp8", "cutlass_fmha"}) {
    auto check = check_backend(name, at::kCPU, at::kFloat, 128, true);
    EXPECT_FALSE(check.ok) << name;
    EXPECT_EQ(check.reason.rfind(name + " needs a CUDA", 0), 0u) << check.reason;
  }
  EXPECT_TRUE(check_backend("math", at::kCPU, at::kBFloat16, 128, true).ok);
  EXPECT_TRUE(check_backend("sdpa", at::kCPU, at::kFloat, 128, true).ok);
  const at::Device cuda(at::kCUDA, 0);
#ifndef DITBENCH_HAS_CUDA
  // A build without CUDA gives that reason first, for a CUDA device too.
  EXPECT_EQ(check_backend("flash", cuda, at::kFloat, 128, false).reason,
            "flash needs a CUDA build of ditbench");
  return;
#endif
  // Dtype and head-dim reasons come before any device query, so a CUDA device name is enough.
  EXPECT_EQ(check_backend("flash", cuda, at::kFloat, 128, false).reason,
            "flash takes fp16/bf16, not float32");
  EXPECT_EQ(check_backend("cudnn", cuda, at::kFloat, 128, false).reason,
            "cudnn takes fp16/bf16, not float32");
  EXPECT_EQ(check_backend("efficient", cuda, at::kDouble, 128, false).reason,
            "efficient takes fp16/bf16/float32, not float64");
  EXPECT_EQ(check_backend("flash", cuda, at::kBFloat16, 320, false).reason,
            "flash: head dim 320 > 256");
  EXPECT_EQ(check_backend("flash", cuda, at::kBFloat16, 100, false).reason,
            "flash: head dim 100 is not a multiple of 8");
  EXPECT_EQ(check_backend("cutlass_fmha", cuda, at::kHalf, 128, false).reason,
            "cutlass_fmha takes bf16, not fp16");
  EXPECT_EQ(check_backend("cutlass_fmha", cuda, at::kBFloat16, 64, false).reason,
            "cutlass_fmha: head dim 64 (built for 128)");
}

TEST(AttentionBackends, UnservableBackendThrowsUnsupportedWithTheReason) {
  auto in = random_inputs(1, 1, 4, 4, 8, at::kFloat);
  AttentionScope scope({"flash", nullptr});
  try {
    attend(in.q, in.k, in.v);
    FAIL() << "flash served float32 on the CPU";
  } catch (const Unsupported& e) {
    EXPECT_EQ(std::string(e.what()), check_backend("flash", at::kCPU, at::kFloat, 8, false).reason);
  }
  AttentionScope unknown({"nope", nullptr});
  EXPECT_THROW(attend(in.q, in.k, in.v), InputError);
}

TEST(AttentionBackends, BadMaskShapeIsAnInputError) {
  auto in = random_inputs(2, 1, 4, 6, 8, at::kFloat);
  AttentionScope scope({"math", nullptr});
  EXPECT_THROW(attend(in.q, in.k, in.v, at::ones({2, 5}, at::kBool)), InputError);
}

TEST(AttentionBackends, LogNamesWhatServedEachCall) {
  auto in = random_inputs(1, 2, 8, 8, 8, at::kFloat);
  take_attention_log();
  {
    AttentionScope scope({"math", nullptr});
    attend(in.q, in.k, in.v);
    attend(in.q, in.k, in.v);
  }
  {
    AttentionScope scope({"sdpa", nullptr});
    attend(in.q, in.k, in.v);
  }
  auto log = take_attention_log();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].backend, "math");
  EXPECT_EQ(log[0].calls, 2);
  EXPECT_EQ(log[1].backend, "sdpa");
  EXPECT_EQ(log[1].op.rfind("aten::scaled_dot_product_attention", 0), 0u) << log[1].op;
  EXPECT_TRUE(take_attention_log().empty());

  AttentionScope scope({"sdpa", nullptr});
  local_attention(in.q, in.k, in.v, {}, true);
  auto flat = take_kernel_log();
  ASSERT_EQ(flat.size(), 1u);
  EXPECT_EQ(flat[0].rfind("sdpa: aten::", 0), 0u) << flat[0];
}

TEST(AttentionBackends, KernelCollectorSaysWhyNamesAreMissing) {
  if (KernelNameCollector::available()) {
    EXPECT_TRUE(KernelNameCollector::unavailable_reason().empty());
  } else {
    EXPECT_EQ(KernelNameCollector::unavailable_reason(), "kernel names need a CUPTI build");
    KernelNameCollector collector;
    EXPECT_TRUE(collector.take().empty());
  }
}

// ---- GPU: the fused kernels against the float32 reference in bf16 ----

TEST(AttentionBackendsCuda, FusedBackendsMatchMathInBf16) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const auto options = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  // Joint sequence: 200 "video" keys + 56 text keys of which a prefix is valid.
  auto in = random_inputs(2, 4, 200, 256, 128, options);
  const std::vector<std::pair<std::string, at::Tensor>> masks{
      {"none", {}},
      {"shared", key_mask_with_valid({230, 230}, 256, false).cuda()},
      {"per-sample", key_mask_with_valid({250, 210}, 256, true).cuda()}};
  for (const auto& name : attention_backend_names()) {
    if (name == "cudnn_fp8") continue;  // bounded by FP8's own effect in fp8_attention_test.cpp
    auto check = check_backend(name, in.q.device(), at::kBFloat16, 128, true);
    if (!check.ok) {
      ADD_FAILURE() << name << " cannot serve bf16 on this GPU: " << check.reason;
      continue;
    }
    for (const auto& [mask_name, mask] : masks) {
      SCOPED_TRACE(name + " mask " + mask_name);
      auto ref = math_attention(in.q, in.k, in.v, mask, true);
      AttentionScope scope({name, nullptr});
      auto got = local_attention(in.q, in.k, in.v, mask, true);
      EXPECT_EQ(got.out.scalar_type(), at::kBFloat16);
      EXPECT_EQ(got.out.sizes(), in.q.sizes());
      EXPECT_LT(rel_error(got.out, ref.out), 1e-2);
      EXPECT_EQ(got.lse.sizes(), (std::vector<int64_t>{2, 4, 200}));
      EXPECT_LT((got.lse - ref.lse).abs().max().item<double>(), 2e-2);
      EXPECT_LT(rel_error(attend(in.q, in.k, in.v, mask), ref.out), 1e-2);
    }
  }
}

TEST(AttentionBackendsCuda, KernelNamesAreCollectedOnRequest) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  if (!KernelNameCollector::available()) GTEST_SKIP() << KernelNameCollector::unavailable_reason();
  const auto options = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  auto in = random_inputs(1, 2, 64, 64, 64, options);
  take_attention_log();
  AttentionSettings settings{"flash", nullptr};
  settings.collect_kernel_names = true;
  AttentionScope scope(settings);
  attend(in.q, in.k, in.v, key_mask_with_valid({50}, 64, false).cuda());
  auto kernels = take_kernel_log();
  ASSERT_FALSE(kernels.empty());
  bool flash_named = false;
  for (const auto& k : kernels) flash_named |= k.find("flash") != std::string::npos;
  EXPECT_TRUE(flash_named) << ::testing::PrintToString(kernels);
}

}  // namespace
}  // namespace ditbench
