// The producers that end in the FP8 row quantization (optimizations/kernels/fused_fp8.h) against
// their unfused form: the bfloat16 producer, then quantize_rows_fp8. LayerNorm + modulate shares
// its arithmetic with the fused bfloat16 kernel, so it must match bit for bit; the GELU's tanh may
// round differently from ATen's in the last float bit, which moves a few bfloat16 values by one
// step, so it must match all but a few values. Without CUDA they must decline.
#include <gtest/gtest.h>

#include "models/common/layers.h"
#include "optimizations/kernels/fused.h"
#include "optimizations/kernels/fused_fp8.h"
#include "test_util.h"

namespace ditbench {
namespace {

using testing::rel_error;

at::TensorOptions gpu_bf16() { return at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16); }

at::Tensor bytes(const Fp8Rows& rows) { return rows.values.cpu().view(at::kByte); }

// Share of e4m3 values (and of row scales) that are bit-equal.
double equal_share(const at::Tensor& a, const at::Tensor& b) {
  return a.eq(b).to(at::kFloat).mean().item<double>();
}

void expect_bitwise(const Fp8Rows& got, const Fp8Rows& want) {
  ASSERT_EQ(got.values.sizes(), want.values.sizes());
  ASSERT_EQ(got.scale.sizes(), want.scale.sizes());
  EXPECT_TRUE(at::equal(bytes(got), bytes(want)));
  EXPECT_TRUE(at::equal(got.scale.cpu(), want.scale.cpu()));
}

// All but a few values equal, and the dequantized rows as close as e4m3 steps allow.
void expect_nearly_bitwise(const Fp8Rows& got, const Fp8Rows& want) {
  ASSERT_EQ(got.values.sizes(), want.values.sizes());
  EXPECT_GE(equal_share(bytes(got), bytes(want)), 0.999);
  EXPECT_GE(equal_share(got.scale.cpu(), want.scale.cpu()), 0.95);
  EXPECT_LT(rel_error(dequantize_rows_fp8(got).cpu(), dequantize_rows_fp8(want).cpu()), 1e-3);
}

TEST(FusedFp8, DeclineCpuTensorsSoCallersTakeTheUnfusedPath) {
  auto x = at::randn({2, 5, 64}).to(at::kBFloat16);
  auto mod = at::randn({2, 64}).to(at::kBFloat16);
  EXPECT_FALSE(try_layer_norm_modulate_fp8(x, mod, mod, 1e-6, true).fp8.values.defined());
  EXPECT_FALSE(try_gelu_tanh_fp8(x).fp8.values.defined());
  EXPECT_FALSE(try_gelu_tanh_fp8(x, x).fp8.values.defined());
}

class FusedFp8Cuda : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
    if (!fused_kernels_enabled()) GTEST_SKIP() << "DITBENCH_FUSED_KERNELS=0";
  }
};

TEST_F(FusedFp8Cuda, LayerNormModulateRowsEqualTheFusedBf16ResultQuantized) {
  at::manual_seed(21);
  // 3072: HunyuanVideo's width (3 vectors a thread); 64: one vector; 8192: the widest served.
  for (int64_t dim : {3072, 64, 8192}) {
    SCOPED_TRACE("D = " + std::to_string(dim));
    auto x = (at::randn({2, 37, dim}) * 3 + 1).to(gpu_bf16());
    auto shift = at::randn({2, dim}).to(gpu_bf16());
    auto scale = (at::randn({2, dim}) * 0.5).to(gpu_bf16());
    auto bf16 = try_layer_norm_modulate(x, shift, scale, 1e-6);  // [B, S, D]
    ASSERT_TRUE(bf16.defined());
    const auto want = quantize_rows_fp8(bf16.view({-1, dim}));
    for (bool keep_full : {true, false}) {
      auto got = try_layer_norm_modulate_fp8(x, shift, scale, 1e-6, keep_full);
      ASSERT_TRUE(got.fp8.values.defined());
      EXPECT_EQ(got.shape, x.sizes().vec());
      EXPECT_EQ(got.dtype, at::kBFloat16);
      expect_bitwise(got.fp8, want);
      EXPECT_EQ(got.full.defined(), keep_full);
      if (keep_full) EXPECT_TRUE(at::equal(got.full, bf16));
    }
    // A [1, D] modulation row broadcasts over the batch.
    auto one =
        try_layer_norm_modulate_fp8(x, shift.narrow(0, 0, 1), scale.narrow(0, 0, 1), 1e-6, false);
    auto one_bf16 = try_layer_norm_modulate(x, shift.narrow(0, 0, 1), scale.narrow(0, 0, 1), 1e-6);
    expect_bitwise(one.fp8, quantize_rows_fp8(one_bf16.view({-1, dim})));
  }
  // More rows than blocks resident at once: each block walks rows, loading the next while it
  // reduces this one, across the batch boundary (the modulation rows reloaded there).
  auto x = (at::randn({2, 3001, 3072}) * 3 + 1).to(gpu_bf16());
  auto shift = at::randn({2, 3072}).to(gpu_bf16());
  auto scale = (at::randn({2, 3072}) * 0.5).to(gpu_bf16());
  auto bf16 = try_layer_norm_modulate(x, shift, scale, 1e-6);
  ASSERT_TRUE(bf16.defined());
  auto got = try_layer_norm_modulate_fp8(x, shift, scale, 1e-6, false);
  ASSERT_TRUE(got.fp8.values.defined());
  expect_bitwise(got.fp8, quantize_rows_fp8(bf16.view({-1, 3072})));
}

TEST_F(FusedFp8Cuda, GeluRowsMatchAtenGeluQuantized) {
  at::manual_seed(22);
  auto h = (at::randn({2, 33, 1024}) * 3).to(gpu_bf16());  // [B, S, H]
  auto got = try_gelu_tanh_fp8(h);
  ASSERT_TRUE(got.fp8.values.defined());
  EXPECT_FALSE(got.full.defined());
  EXPECT_EQ(got.shape, h.sizes().vec());
  expect_nearly_bitwise(got.fp8, quantize_rows_fp8(at::gelu(h, "tanh").view({-1, 1024})));
  // A column range of a wider projection (rows strided).
  auto wide = (at::randn({2, 33, 1536}) * 3).to(gpu_bf16());
  auto part = wide.narrow(2, 256, 1024);
  auto strided = try_gelu_tanh_fp8(part);
  ASSERT_TRUE(strided.fp8.values.defined());
  expect_nearly_bitwise(strided.fp8, quantize_rows_fp8(at::gelu(part, "tanh").reshape({-1, 1024})));
  // HunyuanVideo's MLP width over more rows than blocks resident at once (each block walks
  // rows, loading the next while it quantizes one).
  auto mlp = (at::randn({2, 700, 12288}) * 3).to(gpu_bf16());
  auto many = try_gelu_tanh_fp8(mlp);
  ASSERT_TRUE(many.fp8.values.defined());
  expect_nearly_bitwise(many.fp8, quantize_rows_fp8(at::gelu(mlp, "tanh").view({-1, 12288})));
}

// Every bfloat16 value below 2^127 in magnitude through the GELU rows, zeros and subnormals
// included: what ATen's GELU, quantized, gives. (From 2^127 on, a row's e4m3 values times its
// scale can round past float32's largest value when dequantized.)
TEST_F(FusedFp8Cuda, GeluRowsOfEveryBf16ValueBelow2To127MatchAten) {
  auto bits = at::arange(0, 65536, at::kInt);
  const auto exponent = bits.bitwise_right_shift(7).bitwise_and(255);
  bits = bits.index({exponent.lt(254)});                                            // 65,024
  auto h = bits.to(at::kShort).view(at::kBFloat16).view({254, 256}).to(at::kCUDA);  // [rows, H]
  auto got = try_gelu_tanh_fp8(h);
  ASSERT_TRUE(got.fp8.values.defined());
  expect_nearly_bitwise(got.fp8, quantize_rows_fp8(at::gelu(h, "tanh")));
}

TEST_F(FusedFp8Cuda, PrefixAndGeluRowsMatchTheConcatenationQuantized) {
  // HunyuanVideo's single block: proj_out(cat([attention, gelu(proj_mlp)])), at a small width.
  at::manual_seed(23);
  auto attention = at::randn({1, 65, 256}).to(gpu_bf16());
  auto h = (at::randn({1, 65, 1024}) * 2).to(gpu_bf16());
  auto got = try_gelu_tanh_fp8(h, attention);
  ASSERT_TRUE(got.fp8.values.defined());
  EXPECT_EQ(got.shape, (std::vector<int64_t>{1, 65, 1280}));
  auto want = at::cat({attention, at::gelu(h, "tanh")}, 2).view({-1, 1280});
  expect_nearly_bitwise(got.fp8, quantize_rows_fp8(want));
  // The prefix columns are quantized exactly as the concatenation's.
  auto got_prefix = got.fp8.values.narrow(1, 0, 256).cpu().view(at::kByte);
  auto want_prefix = quantize_rows_fp8(want).values.narrow(1, 0, 256).cpu().view(at::kByte);
  auto same_scale = got.fp8.scale.cpu().eq(quantize_rows_fp8(want).scale.cpu()).squeeze(1);
  EXPECT_TRUE(at::equal(got_prefix.index({same_scale}), want_prefix.index({same_scale})));
}

// A GELU-tanh FeedForward of random weights (normal, standard deviation `std`) whose net.2 runs
// fp8_dynamic.
FeedForward fp8_output_feed_forward(int64_t dim, int64_t inner, const at::TensorOptions& options,
                                    double std) {
  FeedForward ff(dim, inner, FeedForwardActivation::kGeluTanh, options);
  for (auto& p : ff->parameters()) p.set_data(at::randn(p.sizes()).to(options) * std);
  ff->out->quantize(QuantMode::fp8_dynamic);
  return ff;
}

// FeedForward with an FP8 net.2 after a GELU: the fused GELU + quantization feeds net.2 its e4m3
// rows; the result is the unfused chain's, up to the few GELU values rounded differently.
TEST_F(FusedFp8Cuda, FeedForwardWithFp8OutputProjectionMatchesTheChain) {
  auto check = check_quant_mode(QuantMode::fp8_dynamic, at::kCUDA);
  if (!check.ok) GTEST_SKIP() << check.reason;
  at::manual_seed(24);
  auto ff = fp8_output_feed_forward(64, 256, gpu_bf16(), 0.2);
  auto x = at::randn({2, 40, 64}).to(gpu_bf16());
  auto fused = ff(x);
  auto chain = ff->out(at::gelu(ff->act_proj->proj(x), "tanh"));
  EXPECT_EQ(fused.sizes(), chain.sizes());
  EXPECT_EQ(fused.scalar_type(), at::kBFloat16);
  EXPECT_LT(rel_error(fused.to(at::kFloat).cpu(), chain.to(at::kFloat).cpu()), 2e-3);
}

// A block's gated MLP branch, residual + gate * ff(x), with both projections in FP8 at a size
// whose net.2 product goes to CUTLASS (K = 8192, 1024 tokens): the GELU rows feed the GEMM that
// adds the gated residual in its epilogue, the chain's result bit for bit.
TEST_F(FusedFp8Cuda, FeedForwardAddsItsGatedResidualAsTheChain) {
  auto check = check_quant_mode(QuantMode::fp8_dynamic, at::kCUDA);
  if (!check.ok) GTEST_SKIP() << check.reason;
  at::manual_seed(25);
  auto ff = fp8_output_feed_forward(256, 8192, gpu_bf16(), 0.05);
  ff->act_proj->proj->quantize(QuantMode::fp8_dynamic);
  auto h = quantized_activation(at::randn({1, 1024, 256}).to(gpu_bf16()), true);
  auto residual = at::randn({1, 1024, 256}).to(gpu_bf16());
  auto gate = at::randn({1, 256}).to(gpu_bf16());
  auto fused = ff->forward_gated_residual(h, residual, gate);
  EXPECT_TRUE(at::equal(fused, residual + ff->forward_quantized(h) * gate.unsqueeze(1)));
}

// Off the GPU the gated branch is the chain itself.
TEST(FeedForwardGatedResidual, OnTheCpuIsTheChain) {
  at::manual_seed(26);
  const auto options = at::TensorOptions().dtype(at::kBFloat16);
  auto ff = fp8_output_feed_forward(32, 64, options, 0.2);
  auto x = at::randn({2, 5, 32}).to(options);
  auto residual = at::randn({2, 5, 32}).to(options);
  auto gate = at::randn({2, 32}).to(options);
  auto h = quantized_activation(x, false);
  EXPECT_TRUE(at::equal(ff->forward_gated_residual(h, residual, gate),
                        residual + ff(x) * gate.unsqueeze(1)));
}

TEST_F(FusedFp8Cuda, DeclineWhatTheKernelsDoNotServe) {
  auto h = at::randn({4, 1001}).to(gpu_bf16());  // not whole 16-byte vectors
  EXPECT_FALSE(try_gelu_tanh_fp8(h).fp8.values.defined());
  auto x = at::randn({1, 4, 8200}).to(gpu_bf16());  // wider than 8192
  auto mod = at::randn({1, 8200}).to(gpu_bf16());
  EXPECT_FALSE(try_layer_norm_modulate_fp8(x, mod, mod, 1e-6, true).fp8.values.defined());
  auto f32 = at::randn({4, 64}, at::TensorOptions().device(at::kCUDA));
  EXPECT_FALSE(try_gelu_tanh_fp8(f32).fp8.values.defined());
}

}  // namespace
}  // namespace ditbench
