// GroupNorm (+ SiLU) in one statistics pass over many blocks per group and one elementwise pass
// (optimizations/kernels/group_norm.h): on a GPU against ATen's group_norm (and silu) with float32
// statistics, for float32 and bfloat16 tensors, over groups of one and of several statistics
// blocks, vectorized and not, with a large mean; channels-last inputs, with the replicate padding
// of a causal convolution written in the same pass; what it declines; without CUDA it declines.
#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "optimizations/kernels/fused.h"
#include "optimizations/kernels/group_norm.h"

namespace ditbench {
namespace {

// GroupNorm in float32 of the (possibly bfloat16) operands, rounded to their dtype, then SiLU of
// that rounded value in float32, rounded again: what the eager ops compute with float32
// statistics. (ATen's CUDA GroupNorm of bfloat16 differs from this, and from its own CPU kernel,
// by several bfloat16 steps where a group's mean is large against its spread: its statistics
// pass through bfloat16.)
at::Tensor chain(const at::Tensor& x, int64_t groups, const at::Tensor& w, const at::Tensor& b,
                 double eps, bool silu) {
  const auto dtype = x.scalar_type();
  at::Tensor y =
      at::group_norm(x.to(at::kFloat), groups, w.to(at::kFloat), b.to(at::kFloat), eps).to(dtype);
  return silu ? at::silu(y.to(at::kFloat)).to(dtype) : y;
}

TEST(GroupNorm, DeclinesOnTheCpu) {
  auto x = at::randn({1, 8, 4, 4});
  EXPECT_FALSE(try_group_norm(x, 4, at::ones({8}), at::zeros({8}), 1e-6, true).defined());
}

struct Case {
  std::vector<int64_t> shape;
  int64_t groups;
};

// Operands of a case: x with a mean far from zero (3) against a spread of 0.5 per channel (the
// statistics must not lose the variance to cancellation), weight and bias.
struct Operands {
  at::Tensor x, w, b;
};
Operands operands(const Case& c, at::ScalarType dtype) {
  const auto options = at::TensorOptions().device(at::kCUDA).dtype(at::kFloat);
  const int64_t channels = c.shape[1];
  return {(at::randn(c.shape, options) * 0.5 + 3).to(dtype),
          (at::rand({channels}, options) + 0.5).to(dtype),
          at::randn({channels}, options).to(dtype)};
}

// The kernel's result against the reference: within float32's last bits or bfloat16's rounding,
// and in bfloat16 (the same roundings as the eager ops) nearly every element equal bit for bit;
// float32 results differ in the last bits with the statistics' summation order.
void expect_matches(const at::Tensor& fused, const at::Tensor& expected, const std::string& what) {
  ASSERT_TRUE(fused.defined()) << what;
  ASSERT_EQ(fused.sizes(), expected.sizes()) << what;
  ASSERT_EQ(fused.scalar_type(), expected.scalar_type()) << what;
  const bool fp32 = fused.scalar_type() == at::kFloat;
  const double tol = fp32 ? 1e-5 : 1.6e-2;
  EXPECT_TRUE(at::allclose(fused.to(at::kFloat), expected.to(at::kFloat), tol, tol))
      << what << ": max difference "
      << (fused.to(at::kFloat) - expected.to(at::kFloat)).abs().max().item<float>();
  const double equal = fused.eq(expected).to(at::kFloat).mean().item<double>();
  if (!fp32) EXPECT_GT(equal, 0.97) << what;
}

std::string describe(at::ScalarType dtype, const Case& c, bool silu) {
  std::ostringstream out;
  out << dtype << " " << c.shape << " silu " << silu;
  return out.str();
}

TEST(GroupNormCuda, MatchesAtenWithAndWithoutSilu) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  // [N, C, F, H, W]: S = 420 (not a multiple of 8: one element a thread), S = 1280 and a group of
  // 2 x 9 x 64 x 64 = 73,728 elements (5 statistics blocks), a 4-D input.
  const Case cases[] = {{{2, 64, 3, 10, 14}, 32},
                        {{1, 128, 5, 16, 16}, 32},
                        {{1, 64, 9, 64, 64}, 32},
                        {{2, 32, 24, 40}, 8}};
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    for (const Case& c : cases) {
      const auto [x, w, b] = operands(c, dtype);
      for (bool silu : {false, true}) {
        expect_matches(try_group_norm(x, c.groups, w, b, 1e-6, silu),
                       chain(x, c.groups, w, b, 1e-6, silu), describe(dtype, c, silu));
      }
    }
  }
}

// Channels-last x: the same values as the reference chain (in ATen's layout), padded like
// ATen's replicate padding when asked, written channels-last; groups of 2, 4 and 16 channels
// (a 16-byte vector spans several groups or part of one) and of several statistics blocks.
TEST(GroupNormCuda, ChannelsLastMatchesAtenWithAndWithoutPadding) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const Case cases[] = {{{2, 64, 3, 10, 14}, 32},
                        {{1, 128, 5, 16, 16}, 32},
                        {{1, 512, 3, 9, 7}, 32},
                        {{1, 64, 9, 64, 64}, 16}};
  CausalResample pad;
  pad.pad_frames = 2;
  pad.pad_height = pad.pad_width = 1;
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    for (const Case& c : cases) {
      const auto [x, w, b] = operands(c, dtype);
      const auto x_cl = x.contiguous(at::MemoryFormat::ChannelsLast3d);
      for (bool silu : {false, true}) {
        for (bool padded : {false, true}) {
          auto fused =
              try_group_norm(x_cl, c.groups, w, b, 1e-6, silu, padded ? pad : CausalResample{});
          auto expected = chain(x, c.groups, w, b, 1e-6, silu);
          if (padded) expected = at::pad(expected, {1, 1, 1, 1, 2, 0}, "replicate");
          expect_matches(fused, expected,
                         describe(dtype, c, silu) + (padded ? " padded" : " unpadded"));
          if (fused.defined()) {
            EXPECT_TRUE(fused.is_contiguous(at::MemoryFormat::ChannelsLast3d));
          }
        }
      }
    }
  }
}

TEST(GroupNormCuda, DeclinesWhatItCannotServe) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const auto options = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  auto x = at::randn({1, 8, 4, 6}, options);
  auto w = at::ones({8}, options), b = at::zeros({8}, options);
  EXPECT_TRUE(try_group_norm(x, 4, w, b, 1e-6, false).defined());
  EXPECT_FALSE(try_group_norm(x.transpose(2, 3), 4, w, b, 1e-6, false).defined());  // strided
  EXPECT_FALSE(try_group_norm(x, 3, w, b, 1e-6, false).defined());  // 8 channels, 3 groups
  EXPECT_FALSE(try_group_norm(x, 4, w.to(at::kFloat), b, 1e-6, false).defined());  // dtypes
  EXPECT_FALSE(try_group_norm(x, 4, w, at::Tensor(), 1e-6, false).defined());      // no bias
  EXPECT_FALSE(
      try_group_norm(x.to(at::kDouble), 4, w.to(at::kDouble), b.to(at::kDouble), 1e-6, false)
          .defined());
  // Channels-last: 12 bfloat16 channels are not whole 16-byte vectors, 4096 are more vectors
  // than a block has threads; a contiguous x serves no padding.
  CausalResample pad;
  pad.pad_frames = 2;
  EXPECT_FALSE(try_group_norm(x.view({1, 8, 1, 4, 6}), 4, w, b, 1e-6, false, pad).defined());
  auto x12 = at::randn({1, 12, 2, 4, 4}, options).contiguous(at::MemoryFormat::ChannelsLast3d);
  auto ones12 = at::ones({12}, options);
  EXPECT_FALSE(try_group_norm(x12, 4, ones12, ones12, 1e-6, false).defined());
  auto x4096 = at::randn({1, 4096, 2, 2, 2}, options).contiguous(at::MemoryFormat::ChannelsLast3d);
  auto ones4096 = at::ones({4096}, options);
  EXPECT_FALSE(try_group_norm(x4096, 32, ones4096, ones4096, 1e-6, false).defined());
  set_fused_kernels_enabled(false);
  EXPECT_FALSE(try_group_norm(x, 4, w, b, 1e-6, false).defined());
  set_fused_kernels_enabled(true);
}

}  // namespace
}  // namespace ditbench
