// cudnn_fp8: the per-tensor e4m3 quantizer (hand-derived values, any device), the reasons it
// gives where it cannot serve, and on a GPU its output against the float32 reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "optimizations/attention/attention.h"
#include "optimizations/attention/backends.h"
#include "optimizations/attention/cudnn_fp8.h"
#include "optimizations/kernels/fused.h"
#include "test_util.h"

namespace ditbench {
namespace {

using testing::rel_error;

TEST(CudnnFp8Attention, PerTensorScaleMapsTheAmaxTo448) {
  // amax 3.5: scale 448 / 3.5 = 128, and every value times 128 is an e4m3 number.
  auto x =
      at::tensor({1.0f, -2.0f, 0.5f, 3.5f, -0.0625f, 0.0f}).to(at::kBFloat16).view({1, 1, 2, 3});
  auto q = quantize_e4m3_per_tensor(x);
  EXPECT_EQ(q.data.scalar_type(), at::kFloat8_e4m3fn);
  EXPECT_EQ(q.data.sizes(), x.sizes());
  EXPECT_EQ(q.scale.dim(), 0);
  EXPECT_FLOAT_EQ(q.scale.item<float>(), 128.0f);
  EXPECT_FLOAT_EQ(q.descale.item<float>(), 1.0f / 128.0f);
  auto raw = q.data.to(at::kFloat).flatten();
  const std::vector<float> expected{128, -256, 64, 448, -8, 0};
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(raw[i].item<float>(), expected[i]) << i;
  EXPECT_TRUE(at::equal(dequantize_e4m3(q, at::kBFloat16), x));

  // Rounding: 1.1 * (448 / 3.5) = 140.8 lies between the e4m3 numbers 128 and 144 (spacing 16).
  auto r = quantize_e4m3_per_tensor(at::tensor({1.1f, 3.5f}));
  EXPECT_EQ(r.data.to(at::kFloat)[0].item<float>(), 144.0f);

  // All zeros: scale 1, no NaN.
  auto z = quantize_e4m3_per_tensor(at::zeros({2, 2}, at::kBFloat16));
  EXPECT_EQ(z.scale.item<float>(), 1.0f);
  EXPECT_EQ(z.data.to(at::kFloat).abs().sum().item<float>(), 0.0f);
}

TEST(CudnnFp8Attention, QuantizationKeepsAPermutedLayoutWithUnitLastStride) {
  // [B, S, H, D] viewed as [B, H, S, D], as models hand q over.
  auto x = at::randn({2, 5, 3, 16}).transpose(1, 2);
  auto q = quantize_e4m3_per_tensor(x);
  EXPECT_EQ(q.data.stride(-1), 1);
  EXPECT_EQ(q.data.sizes(), x.sizes());
  // Dense in x's dimension order: [B, S, H, D] storage, the layout cuDNN's plan is built for.
  EXPECT_TRUE(q.data.transpose(1, 2).is_contiguous());
  EXPECT_TRUE(quantize_e4m3_per_tensor(x.contiguous()).data.is_contiguous());
  // Every element within e4m3's half spacing (2^-4 relative) of x, or of the subnormal step.
  auto back = dequantize_e4m3(q, at::kFloat);
  auto bound = x.abs() * (1.0 / 16) + q.descale * std::ldexp(1.0, -9);
  EXPECT_TRUE(((back - x).abs() <= bound).all().item<bool>());
}

TEST(CudnnFp8Attention, OutputDequantizationRoundsTheFloatProductOnce) {
  // e4m3 values 448, -3, 0.015625 with scale 2: value / 2 = 224, -1.5, 0.0078125 in bf16.
  auto values = at::tensor({448.0f, -3.0f, 0.015625f}).to(at::kFloat8_e4m3fn);
  auto out = dequantize_e4m3_output(values, at::tensor({2.0f}), at::kBFloat16);
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(out.to(at::kFloat), at::tensor({224.0f, -1.5f, 0.0078125f})));
  // 1 / 3 is not exact: 15 * float(1/3) rounds to bf16 5.0, one rounding after the product.
  auto third = dequantize_e4m3_output(at::tensor({15.0f}).to(at::kFloat8_e4m3fn),
                                      at::tensor({3.0f}), at::kBFloat16);
  EXPECT_EQ(third.item<float>(), 5.0f);
  // The layout of the values is kept: a [B, H, S, D] view of [B, S, H, D] storage stays one.
  auto permuted = at::zeros({1, 4, 2, 8}).to(at::kFloat8_e4m3fn).transpose(1, 2);
  EXPECT_EQ(dequantize_e4m3_output(permuted, at::tensor({1.0f}), at::kBFloat16).strides(),
            permuted.strides());
}

TEST(CudnnFp8Attention, CannotServeOnTheCpuAndSaysWhy) {
  for (bool mask : {false, true}) {
    auto check = check_backend("cudnn_fp8", at::kCPU, at::kBFloat16, 128, mask);
    EXPECT_FALSE(check.ok);
    EXPECT_EQ(check.reason.rfind("cudnn_fp8 needs a CUDA", 0), 0u) << check.reason;
  }
  auto in = at::randn({1, 2, 8, 16}, at::kBFloat16);
  AttentionScope scope({"cudnn_fp8", nullptr});
  try {
    attend(in, in, in);
    FAIL() << "cudnn_fp8 served on the CPU";
  } catch (const Unsupported& e) {
    EXPECT_EQ(std::string(e.what()),
              check_backend("cudnn_fp8", at::kCPU, at::kBFloat16, 16, false).reason);
  }
}

TEST(CudnnFp8Attention, ReasonsThatNeedNoDevice) {
  // Only the device name is looked at before these reasons, so no GPU is needed.
  const at::Device cuda(at::kCUDA, 0);
  auto reason = [&](at::ScalarType dtype, int64_t dim) {
    return check_backend("cudnn_fp8", cuda, dtype, dim, false).reason;
  };
#ifndef DITBENCH_HAS_CUDA
  EXPECT_EQ(reason(at::kBFloat16, 128), "cudnn_fp8 needs a CUDA build of ditbench");
#else
  if (!cudnn_frontend_built()) {
    EXPECT_EQ(reason(at::kBFloat16, 128).rfind("cudnn_fp8: built without the cuDNN frontend", 0),
              0u)
        << reason(at::kBFloat16, 128);
    return;
  }
  EXPECT_EQ(reason(at::kFloat, 128), "cudnn_fp8 takes fp16/bf16, not float32");
  EXPECT_EQ(reason(at::kBFloat16, 100),
            "cudnn_fp8: head dim 100 is not a multiple of 16 up to 256 (cuDNN's FP8 attention)");
  EXPECT_EQ(reason(at::kHalf, 272),
            "cudnn_fp8: head dim 272 is not a multiple of 16 up to 256 (cuDNN's FP8 attention)");
#endif
}

// ---- GPU: against math on the same e4m3-rounded inputs, and on the bf16 inputs ----

struct Fp8Case {
  int64_t batch, heads, queries, keys;
  bool permuted = false;   // q, k, v as [B, S, H, D] storage viewed [B, H, S, D]
  int64_t valid_keys = 0;  // > 0: a key mask shared by the batch (served by key selection)
};

std::string case_name(const Fp8Case& c) {
  return "B" + std::to_string(c.batch) + " H" + std::to_string(c.heads) + " Sq" +
         std::to_string(c.queries) + " Sk" + std::to_string(c.keys) + (c.permuted ? " bshd" : "") +
         (c.valid_keys ? " valid" + std::to_string(c.valid_keys) : "");
}

at::Tensor random_bhsd(const Fp8Case& c, int64_t seq, const at::TensorOptions& options) {
  const int64_t d = 128;
  if (c.permuted) return at::randn({c.batch, seq, c.heads, d}, options).transpose(1, 2);
  return at::randn({c.batch, c.heads, seq, d}, options);
}

TEST(Fp8AttentionCuda, MatchesMathWithinFp8Rounding) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const at::Device device(at::kCUDA, 0);
  auto check = check_backend("cudnn_fp8", device, at::kBFloat16, 128, true);
  ASSERT_TRUE(check.ok) << check.reason;
  const auto options = at::TensorOptions().device(device).dtype(at::kBFloat16);
  const std::vector<Fp8Case> cases{{1, 4, 256, 256},          {2, 8, 1000, 1000},
                                   {1, 24, 4096, 4096},       {2, 4, 512, 1000},
                                   {1, 24, 1000, 1000, true}, {2, 4, 640, 640, false, 600}};
  for (const auto& c : cases) {
    SCOPED_TRACE(case_name(c));
    at::manual_seed(11);
    auto q = random_bhsd(c, c.queries, options), k = random_bhsd(c, c.keys, options),
         v = random_bhsd(c, c.keys, options);
    at::Tensor mask;  // [B, Sk]
    if (c.valid_keys > 0) {
      mask = at::zeros({c.batch, c.keys}, options.dtype(at::kBool));
      mask.narrow(1, 0, c.valid_keys).fill_(true);
    }
    // The FP8 inputs' own effect: math on q, k, v rounded to e4m3 with the backend's scales.
    auto rounded = [](const at::Tensor& x) {
      return dequantize_e4m3(quantize_e4m3_per_tensor(x), at::kFloat);
    };
    auto ref_fp8 = math_attention(rounded(q), rounded(k), rounded(v), mask, true);
    auto ref_bf16 = math_attention(q, k, v, mask, true);

    AttentionScope scope({"cudnn_fp8", nullptr});
    take_attention_log();
    auto got = local_attention(q, k, v, mask, true);
    ASSERT_EQ(got.out.scalar_type(), at::kBFloat16);
    ASSERT_EQ(got.out.sizes(), q.sizes());
    ASSERT_TRUE(got.lse.defined());
    ASSERT_EQ(got.lse.sizes(), (std::vector<int64_t>{c.batch, c.heads, c.queries}));
    EXPECT_FALSE(at::isnan(got.out).any().item<bool>());
    const double err_fp8 = rel_error(got.out, ref_fp8.out);
    const double err_bf16 = rel_error(got.out, ref_bf16.out);
    const double lse_err = (got.lse - ref_fp8.lse).abs().max().item<double>();
    std::printf(
        "cudnn_fp8 %s: rel err vs math(e4m3 inputs) %.4f, vs math(bf16) %.4f, "
        "max |lse - math(e4m3 inputs)| %.2e\n",
        case_name(c).c_str(), err_fp8, err_bf16, lse_err);
    // Beyond the inputs' rounding, the kernel rounds the probabilities (e4m3, 2^-4 relative) and,
    // on Hopper, its output (e4m3 again); a CPU emulation of both at these shapes gives 0.036
    // against math(e4m3 inputs) and 0.060 against math(bf16).
    EXPECT_LT(err_fp8, 5e-2);
    EXPECT_LT(err_bf16, 8e-2);
    // The log-sum-exp comes from the float32 scores of the e4m3 inputs, before P is rounded.
    EXPECT_LT(lse_err, 2e-2);
    EXPECT_LT(rel_error(attend(q, k, v, mask), ref_fp8.out), 5e-2);
    auto log = take_attention_log();
    ASSERT_FALSE(log.empty());
    EXPECT_EQ(log[0].backend, "cudnn_fp8");
    EXPECT_EQ(log[0].op, "cudnn_frontend::sdpa_fp8");
  }
}

// The per-tensor kernels (amax, scale and round; output dequantization) against the ATen chain
// they replace (fused kernels switched off), bit for bit, in the layouts models hand over.
TEST(Fp8TensorCuda, KernelsMatchTheAtenChainBitForBit) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  struct Restore {
    ~Restore() { set_fused_kernels_enabled(true); }
  } restore;
  const auto options = at::TensorOptions().device(at::kCUDA);
  at::manual_seed(5);
  // [B, S, 3, H, D] packed projection output and its q view; contiguous [B, H, S, D]; a
  // [B, S, H, D] tensor viewed [B, H, S, D]; a tensor of zeros; an odd sequence length.
  auto packed = at::randn({2, 333, 3, 4, 64}, options.dtype(at::kBFloat16)) * 7;
  std::vector<std::pair<std::string, at::Tensor>> cases{
      {"packed q", packed.select(2, 0).transpose(1, 2)},
      {"packed v", packed.select(2, 2).transpose(1, 2)},
      {"bhsd", at::randn({1, 3, 257, 128}, options.dtype(at::kBFloat16))},
      {"bshd", at::randn({2, 100, 5, 16}, options.dtype(at::kBFloat16)).transpose(1, 2)},
      {"fp16", at::randn({1, 2, 50, 32}, options.dtype(at::kHalf)) * 1e-3},
      {"zeros", at::zeros({1, 2, 16, 64}, options.dtype(at::kBFloat16))}};
  for (const auto& [name, x] : cases) {
    SCOPED_TRACE(name);
    set_fused_kernels_enabled(true);
    auto got = quantize_e4m3_per_tensor(x);
    set_fused_kernels_enabled(false);
    auto want = quantize_e4m3_per_tensor(x);
    EXPECT_EQ(got.data.strides(), want.data.strides());
    EXPECT_TRUE(at::equal(got.data.view(at::kByte), want.data.view(at::kByte)));
    EXPECT_EQ(got.scale.item<float>(), want.scale.item<float>());
    EXPECT_EQ(got.descale.item<float>(), want.descale.item<float>());
    // The output side: e4m3 values back to x's dtype with a scale that is not a power of two.
    const auto scale = (got.scale / 3).reshape({1});
    set_fused_kernels_enabled(true);
    auto back = dequantize_e4m3_output(got.data, scale, x.scalar_type());
    set_fused_kernels_enabled(false);
    auto back_want = dequantize_e4m3_output(got.data, scale, x.scalar_type());
    EXPECT_EQ(back.strides(), got.data.strides());
    EXPECT_TRUE(at::equal(back, back_want));
  }
}

TEST(Fp8AttentionCuda, RefusesHeadDimsOutsideItsRangeAndServesFp16) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const at::Device device(at::kCUDA, 0);
  // A head dim that is not a multiple of 16 is refused in words.
  auto check = check_backend("cudnn_fp8", device, at::kBFloat16, 72, false);
  EXPECT_FALSE(check.ok);
  EXPECT_NE(check.reason.find("head dim 72"), std::string::npos) << check.reason;
  // fp16 is served like bf16.
  auto half = check_backend("cudnn_fp8", device, at::kHalf, 64, false);
  std::printf("cudnn_fp8 fp16 head dim 64: %s\n", half.ok ? "ok" : half.reason.c_str());
  EXPECT_TRUE(half.ok) << half.reason;
}

}  // namespace
}  // namespace ditbench
