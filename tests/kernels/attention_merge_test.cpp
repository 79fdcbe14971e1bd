// The one-pass log-sum-exp merge of ring attention's partial results
// (optimizations/kernels/attention_merge.h) against attention over all keys at once and against
// the float32 ATen fold it replaces (merge_attention_parts on the CPU). Without CUDA it must
// decline, so ring attention keeps the fold.
#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

#include "fused_kernels_gpu.h"
#include "optimizations/kernels/attention_merge.h"
#include "optimizations/kernels/fused.h"
#include "optimizations/parallel/context_parallel.h"

namespace ditbench {
namespace {

// Attention of q over k, v (float64 on the CPU): out [B, H, Sq, D] and lse [B, H, Sq].
LocalAttentionResult attention64(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  auto scores = at::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(q.size(-1)));
  auto lse = at::logsumexp(scores, -1);
  return {at::matmul(at::exp(scores - lse.unsqueeze(-1)), v), lse};
}

struct Blocks {
  LocalAttentionResult whole;               // over every key, float64
  std::vector<LocalAttentionResult> parts;  // one per key block, float64
};

// q: [B, H, Sq, D]; keys split into `count` blocks of `block` keys.
Blocks attention_blocks(int64_t B, int64_t H, int64_t Sq, int64_t D, int count, int64_t block) {
  auto opts = at::TensorOptions().dtype(at::kDouble);
  auto q = at::randn({B, H, Sq, D}, opts), k = at::randn({B, H, count * block, D}, opts),
       v = at::randn({B, H, count * block, D}, opts);
  Blocks blocks{attention64(q, k, v), {}};
  for (int i = 0; i < count; ++i) {
    blocks.parts.push_back(
        attention64(q, k.narrow(2, i * block, block), v.narrow(2, i * block, block)));
  }
  return blocks;
}

// The part as an attention kernel hands it over: out in `dtype` on `device`, stored [B, S, H, D]
// when `token_major` (the layout cuDNN and flash write), lse float32.
LocalAttentionResult as_kernel_output(const LocalAttentionResult& part, at::ScalarType dtype,
                                      at::Device device, bool token_major) {
  auto out = part.out.to(device, dtype);
  if (token_major) out = out.transpose(1, 2).contiguous().transpose(1, 2);
  return {out, part.lse.to(device, at::kFloat)};
}

TEST(AttentionMerge, DeclinesCpuTensorsSoRingAttentionFolds) {
  auto out = at::randn({1, 2, 3, 8}), lse = at::randn({1, 2, 3});
  auto [merged, merged_lse] = try_merge_attention_parts({out, out}, {lse, lse});
  EXPECT_FALSE(merged.defined());
  EXPECT_FALSE(merged_lse.defined());
}

TEST(AttentionMerge, FoldOfThreeBlocksEqualsAttentionOverAllKeys) {
  at::manual_seed(3);
  auto blocks = attention_blocks(2, 3, 5, 8, 3, 4);
  std::vector<LocalAttentionResult> parts;
  for (const auto& p : blocks.parts)
    parts.push_back(as_kernel_output(p, at::kFloat, at::kCPU, false));
  auto merged = merge_attention_parts(parts, at::kFloat);
  EXPECT_LT((merged.out.to(at::kDouble) - blocks.whole.out).abs().max().item<double>(), 1e-6);
  EXPECT_LT((merged.lse.to(at::kDouble) - blocks.whole.lse).abs().max().item<double>(), 1e-6);
}

// ---- on the GPU ----

class AttentionMergeGpu : public testing::FusedKernelsGpuTest {};

// Runs the kernel on the parts' GPU copies and the float32 fold on their CPU copies.
std::pair<LocalAttentionResult, LocalAttentionResult> kernel_and_fold(
    const std::vector<LocalAttentionResult>& gpu_parts, at::ScalarType dtype) {
  std::vector<at::Tensor> outs, lses;
  std::vector<LocalAttentionResult> cpu_parts;
  for (const auto& p : gpu_parts) {
    outs.push_back(p.out);
    lses.push_back(p.lse);
    cpu_parts.push_back({p.out.cpu(), p.lse.cpu()});
  }
  auto [out, lse] = try_merge_attention_parts(outs, lses);
  EXPECT_TRUE(out.defined());
  if (!out.defined()) return {};
  EXPECT_EQ(out.scalar_type(), dtype);
  EXPECT_EQ(out.strides(), gpu_parts[0].out.strides());  // the parts' layout, no copy after
  return {{out.cpu(), lse.cpu()}, merge_attention_parts(cpu_parts, dtype)};
}

TEST_F(AttentionMergeGpu, EqualsAttentionOverAllKeysAndTheFoldInEveryDtypeAndLayout) {
  for (auto dtype : {at::kFloat, at::kHalf, at::kBFloat16}) {
    for (int count : {2, 3, 4, 8, 11, 16}) {
      for (int64_t D : {int64_t{128}, int64_t{36}}) {  // 36: no 16-byte rows in 16-bit dtypes
        for (bool token_major : {true, false}) {
          SCOPED_TRACE(std::string(c10::toString(dtype)) + " parts " + std::to_string(count) +
                       " D " + std::to_string(D) + (token_major ? " [B,S,H,D]" : " [B,H,S,D]"));
          auto blocks = attention_blocks(2, 3, 37, D, count, 11);
          std::vector<LocalAttentionResult> parts;
          for (const auto& p : blocks.parts) {
            parts.push_back(as_kernel_output(p, dtype, at::kCUDA, token_major));
          }
          auto [kernel, fold] = kernel_and_fold(parts, dtype);
          if (!kernel.out.defined()) continue;
          // Rounded once from float32 sums that differ only in their order: equal but for ties.
          auto kernel_out = kernel.out.to(at::kDouble), fold_out = fold.out.to(at::kDouble);
          const double ulp = dtype == at::kFloat  ? 1e-6
                             : dtype == at::kHalf ? 1.0 / 1024
                                                  : 1.0 / 128;
          EXPECT_TRUE(
              ((kernel_out - fold_out).abs() <= fold_out.abs() * ulp + 1e-6).all().item<bool>());
          if (dtype != at::kFloat) {  // float32 output keeps the fold's own roundings apart
            EXPECT_GT(kernel.out.eq(fold.out).to(at::kFloat).mean().item<double>(), 0.99);
          }
          EXPECT_LT((kernel.lse.to(at::kDouble) - blocks.whole.lse).abs().max().item<double>(),
                    1e-5);
          // Against attention over every key: the error of the parts' rounding, no more.
          const double tolerance = dtype == at::kFloat ? 1e-5 : dtype == at::kHalf ? 4e-3 : 3e-2;
          EXPECT_LT((kernel_out - blocks.whole.out).abs().max().item<double>(), tolerance);
        }
      }
    }
  }
}

TEST_F(AttentionMergeGpu, MaskedBlocksContributeNothingAndFullyMaskedRowsAreZero) {
  const double inf = std::numeric_limits<double>::infinity();
  auto blocks = attention_blocks(1, 2, 6, 128, 3, 5);
  // Block 1 fully masked for queries 0..2 (NaN output, lse -inf, as the math path gives); every
  // block masked for query 4.
  for (auto& p : blocks.parts) p.lse.select(2, 4).fill_(-inf), p.out.select(2, 4).fill_(NAN);
  blocks.parts[1].lse.narrow(2, 0, 3).fill_(-inf);
  blocks.parts[1].out.narrow(2, 0, 3).fill_(NAN);
  std::vector<LocalAttentionResult> parts;
  for (const auto& p : blocks.parts)
    parts.push_back(as_kernel_output(p, at::kFloat, at::kCUDA, true));
  auto [kernel, fold] = kernel_and_fold(parts, at::kFloat);
  ASSERT_TRUE(kernel.out.defined());
  EXPECT_FALSE(at::isnan(kernel.out).any().item<bool>());
  EXPECT_TRUE(at::equal(kernel.out.select(2, 4), at::zeros_like(kernel.out.select(2, 4))));
  EXPECT_TRUE(at::isneginf(kernel.lse.select(2, 4)).all().item<bool>());
  // Queries 0..2 are the merge of blocks 0 and 2 alone.
  auto expected = merge_attention_parts({blocks.parts[0], blocks.parts[2]}, at::kDouble);
  EXPECT_LT((kernel.out.narrow(2, 0, 3).to(at::kDouble) - expected.out.narrow(2, 0, 3))
                .abs()
                .max()
                .item<double>(),
            1e-6);
  EXPECT_LT((kernel.out - fold.out).abs().max().item<float>(), 1e-6);
  EXPECT_TRUE(at::equal(at::isneginf(kernel.lse), at::isneginf(fold.lse)));
}

// Written into a given tensor (a row range of a token-major buffer, as the FMHA's split tail
// writes its queries' rows): the same values as into a tensor of its own, nothing else touched.
TEST_F(AttentionMergeGpu, WritesIntoAGivenRowRange) {
  auto blocks = attention_blocks(1, 2, 6, 128, 3, 5);
  std::vector<at::Tensor> outs, lses;
  for (const auto& p : blocks.parts) {
    auto part = as_kernel_output(p, at::kBFloat16, at::kCUDA, true);
    outs.push_back(part.out);
    lses.push_back(part.lse);
  }
  auto own = try_merge_attention_parts(outs, lses);
  ASSERT_TRUE(own.first.defined());
  auto buffer = at::full({1, 10, 2, 128}, 7.0, outs[0].options());  // [B, S, H, D]
  auto rows = buffer.narrow(1, 3, 6).transpose(1, 2);               // [B, H, 6, D] view
  auto written = try_merge_attention_parts(outs, lses, rows);
  ASSERT_TRUE(written.first.defined());
  EXPECT_EQ(written.first.data_ptr(), rows.data_ptr());
  EXPECT_TRUE(at::equal(rows, own.first));
  EXPECT_TRUE(at::equal(written.second, own.second));
  EXPECT_TRUE(at::equal(buffer.narrow(1, 0, 3), at::full_like(buffer.narrow(1, 0, 3), 7.0)));
  EXPECT_TRUE(at::equal(buffer.narrow(1, 9, 1), at::full_like(buffer.narrow(1, 9, 1), 7.0)));
}

TEST_F(AttentionMergeGpu, DeclinesWhatItCannotServe) {
  auto blocks = attention_blocks(1, 2, 4, 16, 2, 3);
  auto a = as_kernel_output(blocks.parts[0], at::kBFloat16, at::kCUDA, false);
  auto b = as_kernel_output(blocks.parts[1], at::kBFloat16, at::kCUDA, false);
  EXPECT_FALSE(
      try_merge_attention_parts({a.out, b.out.to(at::kHalf)}, {a.lse, b.lse}).first.defined());
  EXPECT_FALSE(
      try_merge_attention_parts({a.out, b.out}, {a.lse, b.lse.to(at::kHalf)}).first.defined());
  EXPECT_FALSE(
      try_merge_attention_parts({a.out, b.out.narrow(2, 0, 3)}, {a.lse, b.lse}).first.defined());
  std::vector<at::Tensor> many_outs(17, a.out), many_lses(17, a.lse);
  EXPECT_FALSE(try_merge_attention_parts(many_outs, many_lses).first.defined());
  auto wrong_shape = at::empty_like(a.out.narrow(2, 0, 3));
  EXPECT_FALSE(
      try_merge_attention_parts({a.out, b.out}, {a.lse, b.lse}, wrong_shape).first.defined());
  set_fused_kernels_enabled(false);
  EXPECT_FALSE(try_merge_attention_parts({a.out, b.out}, {a.lse, b.lse}).first.defined());
  // The ring's merge still works through the fold.
  auto merged = merge_attention_parts({a, b}, at::kBFloat16);
  EXPECT_TRUE(merged.out.is_cuda());
  EXPECT_LT((merged.out.cpu().to(at::kDouble) - blocks.whole.out).abs().max().item<double>(), 3e-2);
}

}  // namespace
}  // namespace ditbench
