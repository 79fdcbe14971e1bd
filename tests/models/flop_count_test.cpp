// FlopCount: the arithmetic of the GEMMs and attention calls as they run, against hand counts.
#include <gtest/gtest.h>

#include "models/common/flop_count.h"
#include "models/common/linear_fusions.h"
#include "optimizations/attention/attention.h"
#include "optimizations/quant/linear.h"

namespace ditbench {
namespace {

Linear filled_linear(int64_t in, int64_t out) {
  Linear linear(in, out, true, at::TensorOptions().dtype(at::kFloat));
  torch::NoGradGuard no_grad;
  linear->weight.normal_();
  linear->bias.normal_();
  return linear;
}

TEST(FlopCount, LinearCountsTwoTimesRowsTimesInTimesOut) {
  Linear linear = filled_linear(8, 16);
  const auto x = at::randn({2, 3, 8});  // 6 rows
  FlopCount flops;
  (void)linear(x);
  EXPECT_DOUBLE_EQ(flops.gemm(), 2.0 * 6 * 8 * 16);
  EXPECT_DOUBLE_EQ(flops.attention(), 0.0);
  // The FP8 emulation does the same arithmetic (its quantization is not counted).
  linear->quantize(QuantMode::fp8_dynamic);
  (void)linear(x);
  EXPECT_DOUBLE_EQ(flops.gemm(), 2 * 2.0 * 6 * 8 * 16);
}

TEST(FlopCount, AttentionCountsQkAndPv) {
  AttentionScope scope({"math", nullptr});
  const auto q = at::randn({1, 2, 5, 4}), kv = at::randn({1, 2, 7, 4});  // [B, H, S, D]
  FlopCount flops;
  (void)attend(q, kv, kv);
  EXPECT_DOUBLE_EQ(flops.attention(), 4.0 * 1 * 2 * 5 * 7 * 4);
  EXPECT_DOUBLE_EQ(flops.total(), flops.attention());
}

TEST(FlopCount, FusedFormsCountLikeTheirLinears) {
  Linear a = filled_linear(8, 16), b = filled_linear(8, 4);
  const auto x = at::randn({5, 8});
  FlopCount flops;
  LinearGroup group({a, b});
  (void)group.forward(x);
  EXPECT_DOUBLE_EQ(flops.gemm(), 2.0 * 5 * 8 * (16 + 4));
  Linear c = filled_linear(6, 3);
  FlopCount split;
  (void)linear_split_input({at::randn({5, 2}), at::randn({5, 4})}, c->weight, c->bias);
  EXPECT_DOUBLE_EQ(split.gemm(), 2.0 * 5 * 6 * 3);  // two GEMMs of K = 2 and 4
}

TEST(FlopCount, NestedCountersAddUpIsolatedOnesDoNot) {
  Linear linear = filled_linear(4, 4);
  const auto x = at::randn({1, 4});
  const double one = 2.0 * 1 * 4 * 4;
  (void)linear(x);  // no counter alive: nothing to count into
  FlopCount outer;
  {
    FlopCount inner;
    (void)linear(x);
    EXPECT_DOUBLE_EQ(inner.gemm(), one);
    {
      FlopCount isolated(FlopCount::Scope::isolated);
      (void)linear(x);
      EXPECT_DOUBLE_EQ(isolated.gemm(), one);
    }
    EXPECT_DOUBLE_EQ(inner.gemm(), one);
  }
  EXPECT_DOUBLE_EQ(outer.gemm(), one);
  FlopCount::add(2.0, 3.0);  // as a CUDA graph replay adds its captured blocks' count
  EXPECT_DOUBLE_EQ(outer.gemm(), one + 2.0);
  EXPECT_DOUBLE_EQ(outer.attention(), 3.0);
}

}  // namespace
}  // namespace ditbench
