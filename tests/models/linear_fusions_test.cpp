// The GEMM arrangements of models/common/linear_fusions.h. On the CPU: the split over a
// concatenated input and the grouped GEMM compute what the plain Linears compute, the grouped
// Linears keep their keys and shapes while their parameters view the concatenated weight (and
// follow a loader that copies or replaces them), and every path that must keep the plain chain
// does (CPU activations, whose _addmm_activation is the erf GELU; FP8 Linears, which scale each
// row of their whole input). On the GPU: each arrangement against its chain in bfloat16 and a
// float32 reference, and the premise that CUDA's _addmm_activation applies the tanh GELU.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "fused_kernels_gpu.h"
#include "models/common/layers.h"
#include "models/common/linear_fusions.h"
#include "optimizations/kernels/fused.h"
#include "test_util.h"

namespace ditbench {
namespace {

using testing::rel_error;

// Weights drawn from N(0, 1/in), the bias from N(0, 0.1).
void fill_random(Linear& linear) {
  torch::NoGradGuard no_grad;
  const int64_t in = linear->in_features(), out = linear->out_features();
  linear->weight.copy_(at::randn({out, in}) / std::sqrt(static_cast<double>(in)));
  linear->bias.copy_(at::randn({out}) * 0.1);
}

Linear random_linear(int64_t in, int64_t out, const at::TensorOptions& options) {
  Linear linear(in, out, true, options);
  fill_random(linear);
  return linear;
}

at::Tensor gelu_tanh_formula(
    const at::Tensor& x) {  // 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3)))
  return 0.5 * x * (1 + at::tanh(0.7978845608028654 * (x + 0.044715 * x.pow(3))));
}

// ---- every build ----

TEST(LinearGeluTanh, CpuKeepsTheTanhChainWhereTheFusedOpWouldApplyErf) {
  at::manual_seed(1);
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    auto linear = random_linear(16, 24, at::TensorOptions().dtype(dtype));
    auto x = (at::randn({2, 5, 16}) * 2).to(dtype);
    auto y = linear_gelu_tanh(linear, x);
    EXPECT_TRUE(at::equal(y, at::gelu(linear(x), "tanh")));
    EXPECT_FALSE(gemm_fusion_serves(linear, x));
  }
  // Why: the CPU kernel of _addmm_activation is the erf form, measurably off the tanh formula.
  auto linear = random_linear(16, 24, {});
  auto x = at::randn({40, 16}) * 3;
  auto fused_cpu = at::_addmm_activation(linear->bias, x, linear->weight.t(), 1, 1, true);
  auto pre = at::addmm(linear->bias, x, linear->weight.t());
  EXPECT_LT((fused_cpu - at::gelu(pre)).abs().max().item<double>(), 1e-5);
  EXPECT_GT((fused_cpu - gelu_tanh_formula(pre)).abs().max().item<double>(), 1e-4);
  EXPECT_LT((at::gelu(pre, "tanh") - gelu_tanh_formula(pre)).abs().max().item<double>(), 1e-5);
}

TEST(LinearGeluTanh, FeedForwardGeluTanhOnCpuIsTheChain) {
  at::manual_seed(2);
  FeedForward ff(8, 32, FeedForwardActivation::kGeluTanh, at::TensorOptions().dtype(at::kBFloat16));
  fill_random(ff->act_proj->proj);
  fill_random(ff->out);
  auto x = at::randn({1, 7, 8}).to(at::kBFloat16);
  EXPECT_TRUE(at::equal(ff(x), ff->out(at::gelu(ff->act_proj->proj(x), "tanh"))));
}

TEST(LinearSplitInput, EqualsTheLinearOfTheConcatenation) {
  at::manual_seed(3);
  auto linear = random_linear(3 + 7 + 5, 4, {});
  std::vector<at::Tensor> parts = {at::randn({2, 6, 3}), at::randn({2, 6, 7}),
                                   at::randn({2, 6, 5})};
  auto whole = linear(at::cat(parts, -1));  // [2, 6, 4]
  auto split = linear_split_input(parts, linear->weight, linear->bias);
  ASSERT_EQ(split.sizes(), whole.sizes());
  EXPECT_LT(rel_error(split, whole), 1e-6);
  auto no_bias = linear_split_input(parts, linear->weight, {});
  EXPECT_LT(rel_error(no_bias, at::linear(at::cat(parts, -1), linear->weight)), 1e-6);
  // In bfloat16 the first partial sum is rounded once more: equal up to that rounding.
  auto bf = [](const at::Tensor& t) { return t.to(at::kBFloat16); };
  std::vector<at::Tensor> parts16 = {bf(parts[0]), bf(parts[1]), bf(parts[2])};
  auto split16 = linear_split_input(parts16, bf(linear->weight), bf(linear->bias));
  EXPECT_LT(rel_error(split16.to(at::kFloat), whole), 1e-2);
  EXPECT_THROW(linear_split_input({parts[0]}, linear->weight, linear->bias), c10::Error);
}

TEST(LinearOfConcat, CpuAndFp8LinearsGetTheConcatenationItself) {
  at::manual_seed(4);
  std::vector<at::Tensor> parts = {at::randn({1, 9, 16}), at::randn({1, 9, 48})};
  auto linear = random_linear(64, 16, {});
  EXPECT_TRUE(at::equal(linear_of_concat(linear, parts), linear(at::cat(parts, -1))));
  // An FP8 Linear's activation scale is per row of the whole input: it must see the concatenation.
  linear->quantize(QuantMode::fp8_dynamic);
  EXPECT_TRUE(at::equal(linear_of_concat(linear, parts), linear(at::cat(parts, -1))));
}

TEST(LinearOfPrefixAndGelu, IsTheLinearOfTheConcatenationWithTheGeluApplied) {
  at::manual_seed(6);
  auto prefix = at::randn({1, 9, 16}), h = at::randn({1, 9, 48}) * 2;
  auto linear = random_linear(64, 16, {});
  auto chain = linear(at::cat({prefix, at::gelu(h, "tanh")}, -1));
  EXPECT_TRUE(at::equal(linear_of_prefix_and_gelu(linear, prefix, h), chain));
  // The CPU's FP8 emulation quantizes the rows of the whole concatenation.
  linear->quantize(QuantMode::fp8_dynamic);
  EXPECT_TRUE(at::equal(linear_of_prefix_and_gelu(linear, prefix, h),
                        linear(at::cat({prefix, at::gelu(h, "tanh")}, -1))));
}

TEST(LinearGroup, OneGemmGivesEachMemberItsColumnsAndKeepsKeysAndShapes) {
  at::manual_seed(5);
  Linear a = random_linear(8, 4, {}), b = random_linear(8, 6, {}), c = random_linear(8, 4, {});
  LinearGroup group({a, b, c});
  EXPECT_EQ(group.out_features(), 14);
  auto x = at::randn({2, 5, 8});
  EXPECT_FALSE(group.serves(x));  // CPU: callers keep the separate Linears
  auto y = group.forward(x);      // [2, 5, 14]
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{2, 5, 14}));
  EXPECT_LT(rel_error(group.member_output(y, 0), a(x)), 1e-6);
  EXPECT_LT(rel_error(group.member_output(y, 1), b(x)), 1e-6);
  EXPECT_LT(rel_error(group.member_output(y, 2), c(x)), 1e-6);
  // The members' parameters are now views of the concatenated weight: no weight is held twice.
  for (const auto* m : {&a, &b, &c}) {
    EXPECT_TRUE((*m)->weight.is_alias_of(group.packed_weight()));
    EXPECT_EQ((*m)->weight.size(1), 8);
  }
  EXPECT_EQ(b->weight.size(0), 6);
  EXPECT_EQ(b->named_parameters().keys(), (std::vector<std::string>{"weight", "bias"}));
  // Written into a row range of a larger buffer.
  auto buffer = at::zeros({7, 14});
  group.forward_into(x[1], buffer.narrow(0, 2, 5));
  EXPECT_LT(rel_error(buffer.narrow(0, 2, 5), y[1]), 1e-6);
  EXPECT_EQ(buffer.narrow(0, 0, 2).abs().sum().item<double>(), 0.0);
}

TEST(LinearGroup, FollowsParametersALoaderCopiesIntoOrReplaces) {
  at::manual_seed(6);
  Linear a = random_linear(8, 4, {}), b = random_linear(8, 4, {});
  LinearGroup group({a, b});
  auto x = at::randn({3, 8});
  group.forward(x);
  torch::NoGradGuard no_grad;
  a->weight.copy_(at::randn({4, 8}));  // as the checkpoint loader does
  EXPECT_LT(rel_error(group.member_output(group.forward(x), 0), a(x)), 1e-6);
  b->weight.set_data(at::randn({4, 8}));  // a replaced parameter: the concatenation is rebuilt
  b->bias.set_data(at::randn({4}));
  EXPECT_LT(rel_error(group.member_output(group.forward(x), 1), b(x)), 1e-6);
  EXPECT_TRUE(b->weight.is_alias_of(group.packed_weight()));
}

TEST(LinearGroup, AQuantizedMemberEndsTheGroupAndTheOthersGetTheirOwnStorage) {
  at::manual_seed(7);
  Linear a = random_linear(16, 16, {}), b = random_linear(16, 16, {});
  LinearGroup group({a, b});
  auto x = at::randn({4, 16});
  auto expected_b = b(x);
  group.forward(x);
  a->quantize(QuantMode::fp8_dynamic);
  EXPECT_FALSE(group.serves(x));
  EXPECT_FALSE(group.packed_weight().defined());
  EXPECT_FALSE(b->weight.is_alias_of(a->weight));
  EXPECT_TRUE(at::equal(b(x), expected_b));
}

TEST(LinearGroup, Fp8MembersStackTheirWeightsAndGiveEachMemberItsColumns) {
  at::manual_seed(8);
  Linear a = random_linear(32, 16, {}), b = random_linear(32, 32, {}),
         c = random_linear(32, 16, {});
  for (auto* m : {&a, &b, &c}) (*m)->quantize(QuantMode::fp8_dynamic);
  auto x = at::randn({2, 5, 32});
  auto shared = quantized_activation(x, true);
  const std::vector<at::Tensor> separate = {
      a->forward_quantized(shared), b->forward_quantized(shared), c->forward_quantized(shared)};
  LinearGroup group({a, b, c});
  EXPECT_FALSE(group.serves(shared));  // CPU: callers keep the separate Linears
  auto y = group.forward(shared);      // the emulation of the stacked weight: [2, 5, 64]
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{2, 5, 64}));
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_LT(rel_error(group.member_output(y, i), separate[i]), 1e-6) << "member " << i;
  }
  // The members' e4m3 weights, scales and biases now view the stack and compute what they did.
  for (const auto* m : {&a, &b, &c}) {
    EXPECT_TRUE((*m)->weight_fp8.values.is_alias_of(group.packed_fp8_weight().values));
    EXPECT_TRUE((*m)->weight_fp8.scale.is_alias_of(group.packed_fp8_weight().scale));
  }
  EXPECT_TRUE(b->bias.is_alias_of(a->bias));
  EXPECT_EQ(group.packed_fp8_weight().values.sizes(), (std::vector<int64_t>{64, 32}));
  EXPECT_TRUE(at::equal(b->forward_quantized(shared), separate[1]));
  // One sample into a row range of a larger buffer.
  auto buffer = at::zeros({7, 64});
  group.forward_into(sample_of(shared, 1), buffer.narrow(0, 2, 5));
  EXPECT_LT(rel_error(buffer.narrow(0, 2, 5), y[1]), 1e-6);
  EXPECT_EQ(buffer.narrow(0, 0, 2).abs().sum().item<double>(), 0.0);
}

TEST(LinearGroup, MembersInMixedModesAreNotGrouped) {
  at::manual_seed(9);
  Linear a = random_linear(16, 16, {}), b = random_linear(16, 16, {});
  a->quantize(QuantMode::fp8_dynamic);
  LinearGroup group({a, b});
  auto shared = quantized_activation(at::randn({4, 16}), true);
  EXPECT_FALSE(group.serves(shared));
  EXPECT_THROW(group.forward(shared), c10::Error);
}

// ---- on the GPU ----

class LinearFusionsGpu : public testing::FusedKernelsGpuTest {};

at::TensorOptions gpu(at::ScalarType dtype = at::kBFloat16) {
  return at::TensorOptions().device(at::kCUDA).dtype(dtype);
}
at::Tensor f32_cpu(const at::Tensor& t) { return t.to(at::kCPU, at::kFloat); }

TEST_F(LinearFusionsGpu, CudaAddmmActivationAppliesTheTanhGelu) {
  // float32 (no TF32 for matmuls by default): the GEMM is exact enough to tell tanh from erf,
  // which differ by up to ~5e-4 near |x| = 2.
  auto x = at::randn({300, 64}, gpu(at::kFloat)) * 2;
  auto w = at::randn({96, 64}, gpu(at::kFloat)) / 8, b = at::randn({96}, gpu(at::kFloat));
  auto fused = at::_addmm_activation(b, x, w.t(), 1, 1, true);
  auto pre = at::addmm(b, x, w.t());
  const double to_tanh = (fused - at::gelu(pre, "tanh")).abs().max().item<double>();
  const double to_erf = (fused - at::gelu(pre)).abs().max().item<double>();
  EXPECT_LT(to_tanh, 2e-5);
  EXPECT_GT(to_erf, 10 * to_tanh);
}

TEST_F(LinearFusionsGpu, GeluEpilogueEqualsTheChainUpToOneRounding) {
  auto linear = random_linear(512, 1024, gpu());
  auto x = at::randn({1, 257, 512}, gpu());
  ASSERT_TRUE(gemm_fusion_serves(linear, x));
  auto fused = linear_gelu_tanh(linear, x);
  auto chain = at::gelu(linear(x), "tanh");
  auto ref =
      at::gelu(at::linear(f32_cpu(x), f32_cpu(linear->weight), f32_cpu(linear->bias)), "tanh");
  EXPECT_LT(rel_error(f32_cpu(fused), f32_cpu(chain)), 1e-2);
  EXPECT_LT(rel_error(f32_cpu(fused), ref), rel_error(f32_cpu(chain), ref) * 1.5 + 1e-5);
  // Switched off, the chain itself.
  set_fused_kernels_enabled(false);
  EXPECT_TRUE(at::equal(linear_gelu_tanh(linear, x), chain));
}

TEST_F(LinearFusionsGpu, SplitInputEqualsTheConcatenationAndFp8KeepsIt) {
  std::vector<at::Tensor> parts = {at::randn({1, 300, 256}, gpu()),
                                   at::randn({1, 300, 1024}, gpu())};
  auto linear = random_linear(1280, 256, gpu());
  auto whole = linear(at::cat(parts, -1));
  auto split = linear_of_concat(linear, parts);
  auto ref = at::linear(at::cat({f32_cpu(parts[0]), f32_cpu(parts[1])}, -1),
                        f32_cpu(linear->weight), f32_cpu(linear->bias));
  EXPECT_LT(rel_error(f32_cpu(split), f32_cpu(whole)), 1e-2);
  EXPECT_LT(rel_error(f32_cpu(split), ref), rel_error(f32_cpu(whole), ref) * 1.5 + 1e-5);
  if (check_quant_mode(QuantMode::fp8_dynamic, parts[0].device()).ok) {
    linear->quantize(QuantMode::fp8_dynamic);
    EXPECT_TRUE(at::equal(linear_of_concat(linear, parts), linear(at::cat(parts, -1))));
  }
}

TEST_F(LinearFusionsGpu, PrefixAndGeluReachAnFp8LinearAsTheChainsRows) {
  if (!check_quant_mode(QuantMode::fp8_dynamic, at::Device(at::kCUDA)).ok) GTEST_SKIP();
  auto prefix = at::randn({2, 150, 256}, gpu()), h = at::randn({2, 150, 1024}, gpu()) * 2;
  auto linear = random_linear(1280, 256, gpu());
  linear->quantize(QuantMode::fp8_dynamic);
  auto fused = linear_of_prefix_and_gelu(linear, prefix, h);  // one pass: GELU + row quantization
  set_fused_kernels_enabled(false);
  auto chain = linear(at::cat({prefix, at::gelu(h, "tanh")}, -1));
  // The kernel rounds the GELU to bf16 as at::gelu does and quantizes those values as
  // quantize_rows_fp8 would: the same e4m3 rows, the same GEMM.
  EXPECT_TRUE(at::equal(fused, chain)) << rel_error(f32_cpu(fused), f32_cpu(chain));
}

TEST_F(LinearFusionsGpu, GroupGemmEqualsTheMembers) {
  Linear q = random_linear(384, 384, gpu()), k = random_linear(384, 384, gpu()),
         v = random_linear(384, 384, gpu());
  auto x = at::randn({2, 100, 384}, gpu());
  const std::vector<at::Tensor> separate = {q(x), k(x), v(x)};
  LinearGroup group({q, k, v});
  ASSERT_TRUE(group.serves(x));
  auto y = group.forward(x);
  auto packed = at::empty({2, 130, 3 * 384}, gpu());
  for (int64_t b = 0; b < 2; ++b) group.forward_into(x[b], packed[b].narrow(0, 30, 100));
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_LT(rel_error(f32_cpu(group.member_output(y, i)), f32_cpu(separate[i])), 5e-3);
    EXPECT_LT(
        rel_error(f32_cpu(group.member_output(packed.narrow(1, 30, 100), i)), f32_cpu(separate[i])),
        5e-3);
  }
}

TEST_F(LinearFusionsGpu, GroupFp8GemmEqualsTheMembers) {
  if (!check_quant_mode(QuantMode::fp8_dynamic, at::Device(at::kCUDA)).ok) GTEST_SKIP();
  Linear q = random_linear(384, 384, gpu()), k = random_linear(384, 384, gpu()),
         v = random_linear(384, 384, gpu());
  for (auto* m : {&q, &k, &v}) (*m)->quantize(QuantMode::fp8_dynamic);
  auto x = at::randn({2, 100, 384}, gpu());
  auto shared = quantized_activation(x, true);
  shared.full = at::Tensor();  // as the fused producers hand it over: e4m3 rows only
  const std::vector<at::Tensor> separate = {
      q->forward_quantized(shared), k->forward_quantized(shared), v->forward_quantized(shared)};
  LinearGroup group({q, k, v});
  ASSERT_TRUE(group.serves(shared));
  auto y = group.forward(shared);  // [2, 100, 1152]
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{2, 100, 1152}));
  auto packed = at::zeros({2, 130, 3 * 384}, gpu());
  for (int64_t b = 0; b < 2; ++b)
    group.forward_into(sample_of(shared, b), packed[b].narrow(0, 30, 100));
  for (size_t i = 0; i < 3; ++i) {
    // The same e4m3 operands; cuBLASLt may sum a wider GEMM in another order: bf16 rounding apart.
    EXPECT_LT(rel_error(f32_cpu(group.member_output(y, i)), f32_cpu(separate[i])), 5e-3);
    EXPECT_LT(
        rel_error(f32_cpu(group.member_output(packed.narrow(1, 30, 100), i)), f32_cpu(separate[i])),
        5e-3);
  }
  EXPECT_EQ(packed.narrow(1, 0, 30).abs().sum().item<double>(), 0.0);  // rows before: untouched
  // Switched off with the fused kernels: the members run separately.
  set_fused_kernels_enabled(false);
  EXPECT_FALSE(group.serves(shared));
}

}  // namespace
}  // namespace ditbench
