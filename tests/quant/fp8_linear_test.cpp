#include <gtest/gtest.h>

#include <cstdlib>

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#endif

#include "models/common/error.h"
#include "optimizations/quant/linear.h"
#include "optimizations/quant/quant.h"
#include "test_util.h"

namespace ditbench {
namespace {

using testing::rel_error;

at::Tensor floats(std::vector<float> values, std::vector<int64_t> shape) {
  return at::tensor(values).view(shape);
}

TEST(Fp8Quant, ModeNamesRoundTrip) {
  for (const auto& name : quant_mode_names())
    EXPECT_EQ(quant_mode_name(parse_quant_mode(name)), name);
  EXPECT_THROW(parse_quant_mode("fp8"), InputError);
}

// amax = 448 makes the scale exactly 1, so the values are e4m3 roundings of the inputs, worked
// out by hand on the e4m3 grid (3 mantissa bits, min normal 2^-6, subnormal step 2^-9).
TEST(Fp8Quant, E4m3RoundingOfKnownValues) {
  auto row = floats({448.0f, 0.1f, 300.0f, -448.0f, 0.017f, 0.003f, 0.0015f, 0.0009765625f, 1e-4f},
                    {1, 9});
  auto q = quantize_rows_fp8(row);
  EXPECT_EQ(q.values.scalar_type(), at::kFloat8_e4m3fn);
  EXPECT_EQ(q.scale.sizes(), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(q.scale.item<float>(), 1.0f);
  const std::vector<float> expected{
      448.0f,        // the largest finite value
      0.1015625f,    // 0.1 = 1.6 * 2^-4 -> 1.625 * 2^-4
      288.0f,        // step 32 in [256, 448): 300 is nearer 288 than 320
      -448.0f,       //
      0.017578125f,  // 2^-6 + 0.704 steps of 2^-9 -> one step
      0.00390625f,   // subnormal: 0.003 = 1.536 * 2^-9 -> 2 * 2^-9
      0.001953125f,  // 0.768 * 2^-9 -> the smallest subnormal
      0.0f,          // exactly half the smallest subnormal: ties to even (zero)
      0.0f,          // below half the smallest subnormal
  };
  auto got = q.values.to(at::kFloat);
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(got[0][i].item<float>(), expected[i]) << "element " << i;
  }
}

TEST(Fp8Quant, ScalesSaturateAtTheRowMaximumAndZeroRowsStayZero) {
  auto rows = floats({-3.0f, 0.5f, 2.0f, 0.0f, 0.0f, 0.0f}, {2, 3});
  auto q = quantize_rows_fp8(rows);
  EXPECT_FLOAT_EQ(q.scale[0][0].item<float>(), 3.0f / 448.0f);
  EXPECT_EQ(q.values.to(at::kFloat)[0][0].item<float>(), -448.0f);  // amax maps to -448 exactly
  EXPECT_EQ(q.scale[1][0].item<float>(), 1.0f);
  EXPECT_EQ(q.values.to(at::kFloat)[1].abs().max().item<float>(), 0.0f);
  EXPECT_FALSE(dequantize_rows_fp8(q).isnan().any().item<bool>());
}

// Rows of magnitudes below kFp8MinAmax (2^-112) take the scale of that amax, so the reciprocal
// stays finite: zeros stay zero (not 0 * inf = NaN) and 2^-113 maps to 224 exactly.
TEST(Fp8Quant, RowsBelowTheSmallestAmaxKeepAFiniteScale) {
  auto rows = floats({1e-40f, 0.0f, -3e-41f, 0x1p-113f, -0x1p-114f, 0.0f}, {2, 3});
  auto q = quantize_rows_fp8(rows);
  const float scale = 0x1p-112f / 448.0f;
  for (int r = 0; r < 2; ++r) EXPECT_EQ(q.scale[r][0].item<float>(), scale) << "row " << r;
  auto dq = dequantize_rows_fp8(q);
  EXPECT_FALSE(dq.isnan().any().item<bool>());
  EXPECT_EQ(dq[0][1].item<float>(), 0.0f);
  EXPECT_EQ(dq[1][2].item<float>(), 0.0f);
  EXPECT_EQ(q.values.to(at::kFloat)[1][0].item<float>(), 224.0f);
  EXPECT_EQ(q.values.to(at::kFloat)[1][1].item<float>(), -112.0f);
  // Magnitudes this far below 2^-112 round to e4m3's smallest steps: within half of one.
  EXPECT_LE((dq[0] - rows[0]).abs().max().item<float>(), scale * 0x1p-10f);
}

// y = x W^T + b on a 2x4 by 4x2 problem whose quantized operands are derived by hand:
//   x row 0 [2, 1, 0.5, 0.1]:   scale 2/448, x/scale = [448, 224, 112, 22.4] -> 22.4 rounds to 22
//   x row 1 [-3, 0.03, 1.5, 0]: scale 3/448, x/scale = [-448, 4.48, 224, 0]  -> 4.48 rounds to 4.5
//   W row 0 [1, 0, -1, 0.5]:    scale 1/448, exact
//   W row 1 [.25, .25, .25, .26]: scale .26/448, .25/scale = 430.77 rounds to 416 (step 32)
struct HandProblem {
  at::Tensor x = floats({2.0f, 1.0f, 0.5f, 0.1f, -3.0f, 0.03f, 1.5f, 0.0f}, {2, 4});
  at::Tensor w = floats({1.0f, 0.0f, -1.0f, 0.5f, 0.25f, 0.25f, 0.25f, 0.26f}, {2, 4});
  at::Tensor b = floats({0.5f, -1.0f}, {2});
  std::vector<std::vector<double>> x_dq{{2, 1, 0.5, 22 * 2.0 / 448}, {-3, 4.5 * 3.0 / 448, 1.5, 0}};
  std::vector<std::vector<double>> w_dq{
      {1, 0, -1, 0.5}, {416 * 0.26 / 448, 416 * 0.26 / 448, 416 * 0.26 / 448, 0.26}};
  std::vector<double> bias{0.5, -1.0};

  double expected(const std::vector<std::vector<double>>& xs, int i, int j) const {
    double sum = bias[j];
    for (int k = 0; k < 4; ++k) sum += xs[i][k] * w_dq[j][k];
    return sum;
  }
  Linear make_linear() const {
    Linear linear(4, 2, true, at::kFloat);
    linear->weight.set_data(w.clone());
    linear->bias.set_data(b.clone());
    return linear;
  }
};

TEST(Fp8Quant, DynamicEmulationMatchesHandComputation) {
  HandProblem p;
  auto linear = p.make_linear();
  linear->quantize(QuantMode::fp8_dynamic);
  EXPECT_EQ(linear->quant_mode(), QuantMode::fp8_dynamic);
  EXPECT_EQ(linear->weight.numel(), 0);  // the float weight is freed
  EXPECT_EQ(linear->weight_fp8.values.sizes(), (std::vector<int64_t>{2, 4}));
  auto y = linear->forward(p.x);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{2, 2}));
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 2; ++j) {
      EXPECT_NEAR(y[i][j].item<double>(), p.expected(p.x_dq, i, j), 1e-5) << i << "," << j;
    }
  }
}

TEST(Fp8Quant, WeightOnlyDequantizesTheWeightAndKeepsActivations) {
  HandProblem p;
  auto linear = p.make_linear();
  linear->quantize(QuantMode::fp8_weight_only);
  auto y = linear->forward(p.x);
  const std::vector<std::vector<double>> x_exact{{2, 1, 0.5, 0.1}, {-3, 0.03, 1.5, 0}};
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 2; ++j) {
      EXPECT_NEAR(y[i][j].item<double>(), p.expected(x_exact, i, j), 1e-5) << i << "," << j;
    }
  }
}

TEST(Fp8Quant, ModesKeepShapesAndDtypes) {
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    for (auto mode : {QuantMode::none, QuantMode::fp8_dynamic, QuantMode::fp8_weight_only}) {
      SCOPED_TRACE(quant_mode_name(mode) + " " + c10::toString(dtype));
      at::manual_seed(3);
      Linear linear(24, 40, true, at::TensorOptions().dtype(dtype));
      linear->weight.set_data(at::randn({40, 24}).to(dtype) * 0.1);
      linear->bias.set_data(at::randn({40}).to(dtype));
      auto x = at::randn({2, 5, 24}).to(dtype);  // [B, S, in]
      auto reference = linear->forward(x);
      linear->quantize(mode);
      auto y = linear->forward(x);
      EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, 5, 40}));
      EXPECT_EQ(y.scalar_type(), dtype);
      // e4m3 keeps 3 mantissa bits: a few percent of error, never more.
      EXPECT_LT(rel_error(y, reference), 0.08);
    }
  }
}

TEST(Fp8Quant, QuantizingTwiceIsRefused) {
  Linear linear(16, 16, false, at::kFloat);
  linear->weight.set_data(at::randn({16, 16}));
  linear->quantize(QuantMode::fp8_dynamic);
  EXPECT_THROW(linear->quantize(QuantMode::fp8_weight_only), Unsupported);
}

// ---- activations quantized once for several consumers ----

Linear random_linear(int64_t in, int64_t out, at::ScalarType dtype, QuantMode mode,
                     const at::Device& device = at::kCPU) {
  Linear linear(in, out, true, at::TensorOptions().dtype(dtype).device(device));
  linear->weight.set_data((at::randn({out, in}) * 0.1).to(device, dtype));
  linear->bias.set_data(at::randn({out}).to(device, dtype));
  linear->quantize(mode);
  return linear;
}

TEST(Fp8Quant, QuantizedActivationGivesEachModeItsOwnResult) {
  at::manual_seed(12);
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    auto x = at::randn({2, 5, 24}).to(dtype);  // [B, S, K]
    auto none = random_linear(24, 8, dtype, QuantMode::none);
    auto weight_only = random_linear(24, 8, dtype, QuantMode::fp8_weight_only);
    auto dynamic = random_linear(24, 8, dtype, QuantMode::fp8_dynamic);
    EXPECT_FALSE(none->takes_fp8());
    EXPECT_FALSE(weight_only->takes_fp8());
    EXPECT_TRUE(dynamic->takes_fp8());
    EXPECT_FALSE(any_takes_fp8({none.get(), weight_only.get()}));
    auto shared = quantize_for(x, {none.get(), weight_only.get(), dynamic.get()});
    ASSERT_TRUE(shared.fp8.values.defined());
    EXPECT_EQ(shared.fp8.values.sizes(), (std::vector<int64_t>{10, 24}));  // [B*S, K]
    EXPECT_FALSE(quantize_for(x, {none.get()}).fp8.values.defined());
    for (auto* linear : {&none, &weight_only, &dynamic}) {
      auto y = (*linear)->forward_quantized(shared);
      EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, 5, 8}));
      EXPECT_EQ(y.scalar_type(), dtype);
      EXPECT_TRUE(at::equal(y, (*linear)(x))) << quant_mode_name((*linear)->quant_mode());
    }
  }
}

TEST(Fp8Quant, E4m3OnlyActivationServesFp8LinearsAndIsRefusedByOthers) {
  at::manual_seed(13);
  auto x = at::randn({3, 16});
  auto dynamic = random_linear(16, 4, at::kFloat, QuantMode::fp8_dynamic);
  auto none = random_linear(16, 4, at::kFloat, QuantMode::none);
  QuantizedActivation rows_only = quantized_activation(x, true);
  rows_only.full = at::Tensor();  // as a fused producer that skips the full-precision output
  EXPECT_TRUE(at::equal(dynamic->forward_quantized(rows_only), dynamic(x)));
  EXPECT_THROW(none->forward_quantized(rows_only), c10::Error);
  auto narrow = quantized_activation(at::randn({3, 8}), true);  // K = 8 for a K = 16 linear
  narrow.full = at::Tensor();
  EXPECT_THROW(dynamic->forward_quantized(narrow), c10::Error);
}

TEST(Fp8Quant, SampleOfAnActivationIsItsRowsOfTheBatch) {
  at::manual_seed(14);
  auto x = at::randn({3, 4, 16});
  auto shared = quantized_activation(x, true);  // e4m3 rows [12, 16]
  auto second = sample_of(shared, 1);
  EXPECT_EQ(second.shape, (std::vector<int64_t>{4, 16}));
  EXPECT_TRUE(at::equal(second.full, x[1]));
  auto own = quantize_rows_fp8(x[1]);  // a row's scale depends on that row alone
  EXPECT_TRUE(at::equal(second.fp8.values.view(at::kByte), own.values.view(at::kByte)));
  EXPECT_TRUE(at::equal(second.fp8.scale, own.scale));
  shared.full = at::Tensor();
  EXPECT_FALSE(sample_of(shared, 2).full.defined());
  EXPECT_THROW(sample_of(shared, 3), c10::Error);
}

// A module tree named as HunyuanVideo's transformer names its linears, with the pattern data
// that family supplies.
struct Named : torch::nn::Module {
  Linear add(const std::string& name, int64_t in = 16, int64_t out = 16) {
    auto linear = register_module(name, Linear(in, out, true, at::kFloat));
    linear->weight.set_data(at::randn({out, in}));
    linear->bias.set_data(at::zeros({out}));
    return linear;
  }
  std::shared_ptr<Named> child(const std::string& name) {
    return register_module(name, std::make_shared<Named>());
  }
};

TEST(Fp8Quant, ApplyQuantizationSelectsByPatterns) {
  auto root = std::make_shared<Named>();
  root->child("time_text_embed")->add("linear_1");
  root->add("context_embedder");
  auto double_block = root->child("transformer_blocks")->child("0");
  double_block->child("norm1")->add("linear");
  auto attn = double_block->child("attn");
  attn->add("to_q");
  attn->add("add_q_proj");
  attn->child("to_out")->add("0");
  double_block->child("ff")->child("net")->add("2");
  double_block->child("ff_context")->child("net")->add("2");
  auto single_block = root->child("single_transformer_blocks")->child("0");
  single_block->add("proj_mlp");
  single_block->add("proj_out");
  single_block->child("norm")->add("linear");
  single_block->child("attn")->add("to_k");
  root->add("proj_out");

  const std::vector<std::string> include{"attn\\.", "\\.ff\\.", "ff_context", "proj_mlp",
                                         "single_transformer_blocks\\.\\d+\\.proj_out"};
  const std::vector<std::string> exclude{"norm", "embed", "^proj_out"};
  auto names = apply_quantization(*root, QuantMode::fp8_dynamic, include, exclude);
  const std::vector<std::string> expected{
      "transformer_blocks.0.attn.to_q",        "transformer_blocks.0.attn.add_q_proj",
      "transformer_blocks.0.attn.to_out.0",    "transformer_blocks.0.ff.net.2",
      "transformer_blocks.0.ff_context.net.2", "single_transformer_blocks.0.proj_mlp",
      "single_transformer_blocks.0.proj_out",  "single_transformer_blocks.0.attn.to_k"};
  EXPECT_EQ(names, expected);
  for (const auto& item : root->named_modules()) {
    auto* linear = dynamic_cast<LinearImpl*>(item.value().get());
    if (!linear) continue;
    const bool selected = std::find(expected.begin(), expected.end(), item.key()) != expected.end();
    EXPECT_EQ(linear->quant_mode(), selected ? QuantMode::fp8_dynamic : QuantMode::none)
        << item.key();
  }
  // No include pattern selects every remaining Linear; mode none selects nothing.
  EXPECT_TRUE(apply_quantization(*root, QuantMode::none, {}, {}).empty());
  EXPECT_EQ(apply_quantization(*root, QuantMode::fp8_weight_only, {}, {}).size(), 5u);
}

TEST(Fp8Quant, InvalidPatternIsAnInputErrorNamingIt) {
  Named root;
  root.add("to_q");
  try {
    apply_quantization(root, QuantMode::fp8_dynamic, {"attn\\.(", "x"}, {});
    FAIL() << "invalid regex accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'attn\\.('"), std::string::npos) << e.what();
  }
}

// The gated residual in the GEMM's epilogue is a GPU path: on the CPU the Linear declines it
// (the caller runs the chain) and the product's operands alone decide nothing.
TEST(Fp8Quant, GatedResidualEpilogueIsDeclinedOnTheCpu) {
  at::manual_seed(15);
  Linear linear(8192, 32, true, at::TensorOptions().dtype(at::kBFloat16));
  linear->weight.normal_(0, 0.02);
  linear->bias.normal_();
  linear->quantize(QuantMode::fp8_dynamic);
  auto x = at::randn({1, 1024, 8192}).to(at::kBFloat16);
  auto residual = at::randn({1, 1024, 32}).to(at::kBFloat16);
  auto gate = at::randn({1, 32}).to(at::kBFloat16);
  EXPECT_FALSE(
      linear->forward_gated_residual(quantized_activation(x, true), residual, gate).defined());
  auto out = at::empty({1024, 32}, residual.options());
  EXPECT_FALSE(fp8_linear_gated_residual_out(quantized_activation(x[0], true).fp8,
                                             linear->weight_fp8, linear->bias, residual[0], gate[0],
                                             out));
}

TEST(Fp8Quant, CheckQuantModeOnTheCpu) {
  for (auto mode : {QuantMode::none, QuantMode::fp8_dynamic, QuantMode::fp8_weight_only}) {
    EXPECT_TRUE(check_quant_mode(mode, at::kCPU).ok);
  }
}

TEST(Fp8Quant, GemmKernelNamesRoundTrip) {
  for (int k = 0; k < kFp8GemmKernelCount; ++k) {
    const auto kernel = static_cast<Fp8GemmKernel>(k);
    EXPECT_EQ(parse_fp8_gemm_kernel(fp8_gemm_kernel_name(kernel)), kernel);
  }
  EXPECT_FALSE(parse_fp8_gemm_kernel("scaled_mm").has_value());
}

// DITBENCH_FP8_GEMM names the GEMM: at::_scaled_mm, a CUTLASS kernel, or an error listing both.
TEST(Fp8Quant, GemmChoiceFollowsTheEnvironment) {
  ::setenv("DITBENCH_FP8_GEMM", "scaled_mm", 1);
  EXPECT_FALSE(fp8_gemm_choice(25696, 3072, 12288).kernel.has_value());
  ::setenv("DITBENCH_FP8_GEMM", "coop_256x128_c1x2", 1);
  EXPECT_EQ(fp8_gemm_choice(16, 16, 16).kernel, Fp8GemmKernel::coop_256x128_c1x2);
  ::setenv("DITBENCH_FP8_GEMM", "cublas", 1);
  try {
    fp8_gemm_choice(25696, 3072, 12288);
    ADD_FAILURE() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("DITBENCH_FP8_GEMM"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'cublas'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("coop_128x256_c2x1"), std::string::npos) << e.what();
  }
  ::unsetenv("DITBENCH_FP8_GEMM");
  // Unset: small products and K = 3072 stay with at::_scaled_mm, the model's large-K products
  // take a CUTLASS kernel.
  EXPECT_FALSE(fp8_gemm_choice(96, 64, 256).kernel.has_value());
  EXPECT_FALSE(fp8_gemm_choice(25696, 9216, 3072).kernel.has_value());
  EXPECT_TRUE(fp8_gemm_choice(25696, 3072, 12288).kernel.has_value());
  // A product added to a residual takes the gated-residual kernel's tiles at K = 3072 too, small
  // products excepted, and whatever the environment names.
  EXPECT_EQ(fp8_gemm_choice(25440, 3072, 3072, true).kernel, kFp8GemmGatedResidualTiles);
  EXPECT_EQ(fp8_gemm_choice(25440, 3072, 12288, true).kernel, kFp8GemmGatedResidualTiles);
  EXPECT_FALSE(fp8_gemm_choice(256, 3072, 3072, true).kernel.has_value());
  ::setenv("DITBENCH_FP8_GEMM", "scaled_mm", 1);
  EXPECT_FALSE(fp8_gemm_choice(25440, 3072, 3072, true).kernel.has_value());
  ::unsetenv("DITBENCH_FP8_GEMM");
}

// Activations are quantized first unless DITBENCH_FP8_QUANT_SMS asks for the quantization
// beside a CUTLASS GEMM; it takes an even number of SMs (0: quantize first) and nothing else.
TEST(Fp8Quant, QuantSmsFollowTheEnvironment) {
  EXPECT_EQ(fp8_gemm_choice(25696, 3072, 12288).quant_sms, 0);
  ::setenv("DITBENCH_FP8_QUANT_SMS", "24", 1);
  EXPECT_EQ(fp8_gemm_choice(25696, 3072, 12288).quant_sms, 24);
  EXPECT_EQ(fp8_gemm_choice(25696, 9216, 3072).quant_sms, 0);  // at::_scaled_mm: quantize first
  ::setenv("DITBENCH_FP8_QUANT_SMS", "0", 1);
  EXPECT_EQ(fp8_gemm_choice(25696, 3072, 12288).quant_sms, 0);
  ::setenv("DITBENCH_FP8_QUANT_SMS", "24", 1);
  ::setenv("DITBENCH_FP8_GEMM", "scaled_mm", 1);  // no CUTLASS kernel: nothing beside it
  EXPECT_EQ(fp8_gemm_choice(25696, 3072, 12288).quant_sms, 0);
  ::unsetenv("DITBENCH_FP8_GEMM");
  for (const char* bad : {"3", "-2", "many", "8x", ""}) {
    ::setenv("DITBENCH_FP8_QUANT_SMS", bad, 1);
    if (*bad == '\0') {  // empty: as if unset
      EXPECT_EQ(fp8_gemm_choice(25696, 3072, 12288).quant_sms, 0);
      continue;
    }
    try {
      fp8_gemm_choice(25696, 3072, 12288);
      ADD_FAILURE() << "no InputError for '" << bad << "'";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("DITBENCH_FP8_QUANT_SMS"), std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find(std::string("'") + bad + "'"), std::string::npos)
          << e.what();
    }
  }
  ::unsetenv("DITBENCH_FP8_QUANT_SMS");
}

// ---- GPU: at::_scaled_mm against the emulation ----

TEST(Fp8QuantCuda, ScaledMmMatchesEmulation) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  auto check = check_quant_mode(QuantMode::fp8_dynamic, at::kCUDA);
  if (!check.ok) GTEST_SKIP() << check.reason;
  at::manual_seed(5);
  auto x = at::randn({96, 256}).to(at::kCUDA, at::kBFloat16);      // [M, K]
  auto w = quantize_rows_fp8(at::randn({64, 256}).to(at::kCUDA));  // [N, K]
  auto b = at::randn({64}).to(at::kCUDA, at::kBFloat16);
  auto fused = fp8_linear_scaled_mm(x, w, b);
  auto emulated = fp8_linear_emulated(x, w, b);
  EXPECT_EQ(fused.scalar_type(), at::kBFloat16);
  EXPECT_LT(rel_error(fused, emulated), 1e-2);
}

// The fused row quantizer on the GPU rounds exactly as the op-by-op form does on the CPU.
TEST(Fp8QuantCuda, FusedRowQuantizerMatchesCpuBitForBit) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  at::manual_seed(8);
  auto wide = at::randn({67, 3100}) * at::rand({67, 1}) * 10;
  wide[5].zero_();
  for (auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    SCOPED_TRACE(c10::toString(dtype));
    // Row stride 3100 (not a multiple of 8: the scalar kernel for 16-bit inputs) and a
    // contiguous copy (the 16-byte vector kernel).
    auto strided = wide.to(dtype).cuda().narrow(1, 0, 3072);
    for (const auto& rows : {strided, strided.contiguous()}) {
      auto cpu = quantize_rows_fp8(rows.cpu());
      auto gpu = quantize_rows_fp8(rows);
      EXPECT_TRUE(at::equal(gpu.scale.cpu(), cpu.scale));
      EXPECT_TRUE(at::equal(gpu.values.cpu().view(at::kByte), cpu.values.view(at::kByte)));
    }
  }
}

TEST(Fp8QuantCuda, DynamicLinearWithUnalignedDimsMatchesCpuEmulation) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  auto check = check_quant_mode(QuantMode::fp8_dynamic, at::kCUDA);
  if (!check.ok) GTEST_SKIP() << check.reason;
  at::manual_seed(6);
  auto w = at::randn({20, 40}), b = at::randn({20}), x = at::randn({3, 7, 40});
  Linear cpu(40, 20, true, at::kFloat), gpu(40, 20, true, at::TensorOptions().device(at::kCUDA));
  for (auto* l : {&cpu, &gpu}) {
    (*l)->weight.set_data(w.to((*l)->weight.device()));
    (*l)->bias.set_data(b.to((*l)->bias.device()));
    (*l)->quantize(QuantMode::fp8_dynamic);
  }
  EXPECT_EQ(gpu->weight_fp8.values.sizes(), (std::vector<int64_t>{32, 48}));  // padded to 16
  auto y_gpu = gpu->forward(x.cuda());
  auto y_cpu = cpu->forward(x);
  EXPECT_EQ(y_gpu.sizes(), y_cpu.sizes());
  EXPECT_EQ(y_gpu.scalar_type(), at::kFloat);
  EXPECT_LT(rel_error(y_gpu.cpu(), y_cpu), 1e-2);
}

// The e4m3 rows of a shared activation give the GPU linear exactly what its own quantization
// would, also where K is padded to 16 for at::_scaled_mm.
TEST(Fp8QuantCuda, QuantizedActivationMatchesTheLinearsOwnQuantization) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  auto check = check_quant_mode(QuantMode::fp8_dynamic, at::kCUDA);
  if (!check.ok) GTEST_SKIP() << check.reason;
  at::manual_seed(14);
  for (int64_t in : {40, 256}) {
    auto linear = random_linear(in, 48, at::kBFloat16, QuantMode::fp8_dynamic, at::kCUDA);
    auto x = at::randn({2, 33, in}).to(at::kCUDA, at::kBFloat16);
    auto y = linear->forward_quantized(quantize_for(x, {linear.get()}));
    EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, 33, 48}));
    EXPECT_TRUE(at::equal(y, linear(x))) << "K = " << in;
  }
}

// Why fp8_dynamic cannot run on a GPU here, or empty.
std::string no_fp8_gpu() {
  if (!at::hasCUDA()) return "no CUDA device";
  return check_quant_mode(QuantMode::fp8_dynamic, at::kCUDA).reason;
}

// Row-scaled GEMM operands on the GPU from `seed`: x [m, 512] (bf16 rows quantized), the weight
// [272, 512] and a bf16 bias [272]: N fills no whole tile.
struct GemmOperands {
  Fp8Rows x, w;
  at::Tensor b;
};
GemmOperands gemm_operands(int64_t m, uint64_t seed) {
  at::manual_seed(seed);
  auto x = quantize_rows_fp8(at::randn({m, 512}).to(at::kCUDA, at::kBFloat16));  // [M, K]
  auto w = quantize_rows_fp8(at::randn({272, 512}).to(at::kCUDA) * 0.05);        // [N, K]
  return {x, w, at::randn({272}).to(at::kCUDA, at::kBFloat16)};
}

// Every CUTLASS kernel, in every tile order, computes what at::_scaled_mm and the emulation do:
// rows and columns that fill no whole tile (M = 301, N = 272), with and without a bias.
TEST(Fp8QuantCuda, CutlassGemmsMatchScaledMmAndEmulation) {
  if (auto why = no_fp8_gpu(); !why.empty()) GTEST_SKIP() << why;
  const auto [x, w, b] = gemm_operands(301, 9);
  for (bool with_bias : {true, false}) {
    const auto bias = with_bias ? b : at::Tensor();
    const auto reference = fp8_linear_aten_scaled_mm(x, at::kBFloat16, w, bias);
    const auto emulated = fp8_linear_emulated(x, at::kBFloat16, w, bias);
    EXPECT_LT(rel_error(reference.cpu(), emulated.cpu()), 1e-2);
    for (int k = 0; k < kFp8GemmKernelCount; ++k) {
      const auto kernel = static_cast<Fp8GemmKernel>(k);
      for (auto schedule : {Fp8GemmSchedule{}, Fp8GemmSchedule{Fp8GemmRaster::along_m, 8},
                            Fp8GemmSchedule{Fp8GemmRaster::along_n, 2}}) {
        SCOPED_TRACE(std::string(fp8_gemm_kernel_name(kernel)) + " raster " +
                     std::to_string(int(schedule.raster)) + " swizzle " +
                     std::to_string(schedule.swizzle) + (with_bias ? " bias" : " no bias"));
        auto out = fp8_linear_cutlass(x, at::kBFloat16, w, bias, kernel, schedule);
        if (!out.defined()) {
#ifdef DITBENCH_HAS_CUDA
          // Only a device other than compute capability 9.0 (or a build without CUTLASS) refuses.
          const auto* props = at::cuda::getCurrentDeviceProperties();
          EXPECT_FALSE(props->major == 9 && props->minor == 0) << "refused on " << props->name;
#endif
          GTEST_SKIP() << "no CUTLASS FP8 GEMM on this device";
        }
        EXPECT_EQ(out.sizes(), reference.sizes());
        EXPECT_EQ(out.scalar_type(), at::kBFloat16);
        // Same float32 products, other summation order: at most an ulp of bf16 apart.
        EXPECT_LT(rel_error(out.cpu(), reference.cpu()), 4e-3);
        EXPECT_LT((out - reference).abs().max().item<float>(),
                  reference.abs().max().item<float>() * (1.0 / 64));
      }
    }
  }
  // Scales of the wrong length or on another device: refused, not misread.
  EXPECT_FALSE(fp8_linear_cutlass(Fp8Rows{x.values, x.scale.narrow(0, 0, 300)}, at::kBFloat16, w, b,
                                  Fp8GemmKernel::coop_128x256_c2x1)
                   .defined());
  EXPECT_FALSE(fp8_linear_cutlass(Fp8Rows{x.values, x.scale.cpu()}, at::kBFloat16, w, b,
                                  Fp8GemmKernel::coop_128x256_c2x1)
                   .defined());
  // K not a multiple of 16: refused (the Linear pads its weight so that this never happens).
  auto narrow = quantize_rows_fp8(at::randn({64, 40}).to(at::kCUDA));
  EXPECT_FALSE(fp8_linear_cutlass(narrow, at::kBFloat16,
                                  quantize_rows_fp8(at::randn({32, 40}).to(at::kCUDA)),
                                  at::Tensor(), Fp8GemmKernel::coop_128x256_c2x1)
                   .defined());
}

// fp8_linear_scaled_mm_out into a row range of a larger bf16 buffer (the GEMM writes there
// itself) and into a float32 tensor (copied in): what fp8_linear_scaled_mm returns, at K = 512
// (cuBLASLt) and with the CUTLASS kernel named.
TEST(Fp8QuantCuda, ScaledMmOutWritesARowRangeOfABuffer) {
  if (auto why = no_fp8_gpu(); !why.empty()) GTEST_SKIP() << why;
  const auto [x, w, b] = gemm_operands(300, 10);
  for (const char* gemm : {"scaled_mm", "coop_128x256_c2x1"}) {
    SCOPED_TRACE(gemm);
    setenv("DITBENCH_FP8_GEMM", gemm, 1);
    const auto expected = fp8_linear_scaled_mm(x, at::kBFloat16, w, b);
    auto buffer = at::zeros({2, 340, 272}, expected.options());
    fp8_linear_scaled_mm_out(x, w, b, buffer[1].narrow(0, 25, 300));
    EXPECT_LT(rel_error(buffer[1].narrow(0, 25, 300).cpu(), expected.cpu()), 4e-3);
    EXPECT_EQ(buffer[1].narrow(0, 0, 25).abs().sum().item<double>(), 0.0);
    EXPECT_EQ(buffer[0].abs().sum().item<double>(), 0.0);
    auto wide = at::empty({300, 272}, expected.options().dtype(at::kFloat));
    fp8_linear_scaled_mm_out(x, w, b, wide);
    EXPECT_TRUE(at::equal(wide, fp8_linear_scaled_mm(x, at::kFloat, w, b)));
    EXPECT_THROW(fp8_linear_scaled_mm_out(x, w, b, wide.narrow(0, 0, 299)), c10::Error);
  }
  unsetenv("DITBENCH_FP8_GEMM");
}

#ifdef DITBENCH_HAS_CUDA
int device_sms() { return at::cuda::getCurrentDeviceProperties()->multiProcessorCount; }

// The row quantization beside the GEMM gives what quantizing first and running the same kernel
// on the SMs left over gives, bit for bit (the cooperative kernels add each tile's products in
// one order whatever the grid): M = 1000 (eight 128-row blocks, the last partial), float32,
// bfloat16 and strided rows, 2 and 16 quantizing SMs, with and without bias.
TEST(Fp8QuantCuda, OverlappedQuantizationMatchesQuantizingFirst) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const auto* props = at::cuda::getCurrentDeviceProperties();
  if (!(props->major == 9 && props->minor == 0)) GTEST_SKIP() << "no sm_90a device";
  at::manual_seed(12);
  auto wide = (at::randn({1000, 1088}) * at::exp(at::randn({1000, 1}))).cuda();  // [M, 1088]
  auto w = quantize_rows_fp8(at::randn({272, 1024}).to(at::kCUDA) * 0.05);       // [N, K]
  auto b = at::randn({272}).to(at::kCUDA, at::kBFloat16);
  const std::vector<std::pair<std::string, at::Tensor>> inputs{
      {"bf16", wide.narrow(1, 0, 1024).contiguous().to(at::kBFloat16)},
      {"float32", wide.narrow(1, 0, 1024).contiguous()},
      {"strided bf16", wide.to(at::kBFloat16).narrow(1, 0, 1024)}};
  for (const auto& [what, x] : inputs) {
    for (int quant_sms : {2, 16}) {
      for (bool with_bias : {true, false}) {
        SCOPED_TRACE(what + ", " + std::to_string(quant_sms) + " SMs" +
                     (with_bias ? ", bias" : ", no bias"));
        const auto bias = with_bias ? b : at::Tensor();
        Fp8GemmSchedule schedule;
        schedule.sm_count = device_sms() - quant_sms;
        auto first = fp8_linear_cutlass(quantize_rows_fp8(x), x.scalar_type(), w, bias,
                                        Fp8GemmKernel::coop_128x256_c2x1, schedule);
        auto beside =
            fp8_linear_overlapped(x, w, bias, Fp8GemmKernel::coop_128x256_c2x1, {}, quant_sms);
        ASSERT_TRUE(beside.defined());
        EXPECT_EQ(beside.scalar_type(), x.scalar_type());
        EXPECT_TRUE(at::equal(beside, first));
      }
    }
  }
  // Stream-K splits tiles by the grid too: equal up to summation order.
  const auto& x = inputs[0].second;
  auto streamk = fp8_linear_overlapped(x, w, b, Fp8GemmKernel::streamk_128x256_c2x1, {}, 16);
  ASSERT_TRUE(streamk.defined());
  auto reference = fp8_linear_aten_scaled_mm(quantize_rows_fp8(x), at::kBFloat16, w, b);
  EXPECT_LT(rel_error(streamk.cpu(), reference.cpu()), 4e-3);
  // Refused: an odd number of SMs, none left to the GEMM, rows too long to hold (K = 32,784
  // bf16: 4098 vectors), a weight of another K.
  EXPECT_FALSE(fp8_linear_overlapped(x, w, b, Fp8GemmKernel::coop_128x256_c2x1, {}, 3).defined());
  EXPECT_FALSE(
      fp8_linear_overlapped(x, w, b, Fp8GemmKernel::coop_128x256_c2x1, {}, device_sms()).defined());
  auto long_rows = at::randn({4, 32784}).to(at::kCUDA, at::kBFloat16);
  auto long_w = quantize_rows_fp8(at::randn({16, 32784}).to(at::kCUDA));
  EXPECT_FALSE(fp8_linear_overlapped(long_rows, long_w, at::Tensor(),
                                     Fp8GemmKernel::coop_128x256_c2x1, {}, 16)
                   .defined());
  EXPECT_FALSE(
      fp8_linear_overlapped(x.narrow(1, 0, 512), w, b, Fp8GemmKernel::coop_128x256_c2x1, {}, 16)
          .defined());
}

// A Linear given a large-K bf16 activation takes the overlapped path where the environment asks
// for it: the same result as from rows quantized beforehand, bit for bit.
TEST(Fp8QuantCuda, LinearQuantizesLargeKBesideTheGemm) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const auto* props = at::cuda::getCurrentDeviceProperties();
  if (!(props->major == 9 && props->minor == 0)) GTEST_SKIP() << "no sm_90a device";
  at::manual_seed(13);
  Linear linear(8192, 256, true, at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16));
  linear->weight.normal_(0, 0.02);
  linear->bias.normal_();
  linear->quantize(QuantMode::fp8_dynamic);
  auto x = at::randn({2, 1100, 8192}, at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16));
  ::setenv("DITBENCH_FP8_QUANT_SMS", "16", 1);
  ASSERT_EQ(fp8_gemm_choice(2200, 256, 8192).quant_sms, 16);
  auto y = linear(x);
  ::unsetenv("DITBENCH_FP8_QUANT_SMS");
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, 1100, 256}));
  EXPECT_TRUE(at::equal(y, linear->forward_quantized(quantized_activation(x, true))));
  EXPECT_TRUE(at::equal(y, linear(x)));  // quantized first: the same bits
}

// The gated-residual epilogue: residual + gate * product, each step rounded as the bfloat16 chain
// rounds it on the same kernel's product, so equal to the chain bit for bit; rows and columns
// that fill no whole tile (M = 301, N = 272), with and without a bias. Operands it cannot take
// are refused, not misread.
TEST(Fp8QuantCuda, GatedResidualEpilogueEqualsTheChainBitForBit) {
  if (auto why = no_fp8_gpu(); !why.empty()) GTEST_SKIP() << why;
  const auto* props = at::cuda::getCurrentDeviceProperties();
  if (!(props->major == 9 && props->minor == 0)) GTEST_SKIP() << "no sm_90a device";
  const auto [x, w, b] = gemm_operands(301, 11);
  auto residual = at::randn({301, 272}).to(at::kCUDA, at::kBFloat16) * 4;  // [M, N]
  auto gate = at::randn({272}).to(at::kCUDA, at::kBFloat16);               // [N]
  for (bool with_bias : {true, false}) {
    SCOPED_TRACE(with_bias ? "bias" : "no bias");
    const auto bias = with_bias ? b : at::Tensor();
    auto product = fp8_linear_cutlass(x, at::kBFloat16, w, bias, kFp8GemmGatedResidualTiles);
    ASSERT_TRUE(product.defined());
    auto out = at::full_like(residual, 7);
    ASSERT_TRUE(fp8_linear_gated_residual_out(x, w, bias, residual, gate, out));
    EXPECT_TRUE(at::equal(out, residual + product * gate));
    EXPECT_FALSE(at::equal(out, residual));  // the branch arrived
  }
  auto out = at::empty_like(residual);
  EXPECT_FALSE(fp8_linear_gated_residual_out(x, w, b, residual, residual, out));  // gate [M, N]
  EXPECT_FALSE(fp8_linear_gated_residual_out(x, w, b, residual.to(at::kFloat), gate, out));
  EXPECT_FALSE(fp8_linear_gated_residual_out(x, w, b, residual, gate, residual));  // in place
  EXPECT_FALSE(fp8_linear_gated_residual_out(x, w, b, residual.t().contiguous().t(), gate, out));
}

// A Linear adds the gated residual in its GEMM's epilogue for a product fp8_gemm_choice sends to
// CUTLASS (M = 1100 a sample, K = 8192), one GEMM a sample of the batch: the chain's result bit
// for bit. A product left to cuBLASLt, or a gate of another batch, is declined.
TEST(Fp8QuantCuda, LinearAddsAGatedResidualInItsGemmEpilogue) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const auto* props = at::cuda::getCurrentDeviceProperties();
  if (!(props->major == 9 && props->minor == 0)) GTEST_SKIP() << "no sm_90a device";
  at::manual_seed(14);
  const auto options = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  Linear linear(8192, 256, true, options);
  linear->weight.normal_(0, 0.02);
  linear->bias.normal_();
  linear->quantize(QuantMode::fp8_dynamic);
  auto h = quantized_activation(at::randn({2, 1100, 8192}, options), true);
  auto residual = at::randn({2, 1100, 256}, options);
  auto gate = at::randn({2, 256}, options);
  auto fused = linear->forward_gated_residual(h, residual, gate);
  ASSERT_TRUE(fused.defined());
  EXPECT_EQ(fused.sizes(), residual.sizes());
  EXPECT_TRUE(at::equal(fused, residual + linear->forward_quantized(h) * gate.unsqueeze(1)));
  EXPECT_FALSE(linear->forward_gated_residual(h, residual, gate.narrow(0, 0, 1)).defined());
  ::setenv("DITBENCH_FP8_GEMM", "scaled_mm", 1);
  EXPECT_FALSE(linear->forward_gated_residual(h, residual, gate).defined());
  ::unsetenv("DITBENCH_FP8_GEMM");
}

// The CUTLASS kernels inside a CUDA graph (the `graphs` axis captures the transformer step): the
// replay computes what the eager call did, stream-K's workspace included.
TEST(Fp8QuantCuda, CutlassGemmsReplayInCudaGraphs) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const auto* props = at::cuda::getCurrentDeviceProperties();
  if (!(props->major == 9 && props->minor == 0)) GTEST_SKIP() << "no sm_90a device";
  at::manual_seed(10);
  auto x = quantize_rows_fp8(at::randn({2048, 8192}).to(at::kCUDA, at::kBFloat16));  // [M, K]
  auto w = quantize_rows_fp8(at::randn({512, 8192}).to(at::kCUDA) * 0.02);           // [N, K]
  auto b = at::randn({512}).to(at::kCUDA, at::kBFloat16);
  c10::cuda::CUDAStreamGuard stream_guard(c10::cuda::getStreamFromPool());
  for (auto kernel : {Fp8GemmKernel::coop_128x256_c2x1, Fp8GemmKernel::streamk_128x256_c2x1}) {
    SCOPED_TRACE(fp8_gemm_kernel_name(kernel));
    auto eager = fp8_linear_cutlass(x, at::kBFloat16, w, b, kernel);
    ASSERT_TRUE(eager.defined());
    at::cuda::CUDAGraph graph;
    graph.capture_begin();
    auto captured = fp8_linear_cutlass(x, at::kBFloat16, w, b, kernel);
    graph.capture_end();
    ASSERT_TRUE(captured.defined());
    captured.zero_();
    graph.replay();
    EXPECT_LT(rel_error(captured.cpu(), eager.cpu()), 1e-6);
  }
  // The quantization beside the GEMM: its side stream, counters and zeroing are captured too.
  auto rows = at::randn({2048, 8192}).to(at::kCUDA, at::kBFloat16);
  auto eager = fp8_linear_overlapped(rows, w, b, Fp8GemmKernel::coop_128x256_c2x1, {}, 16);
  ASSERT_TRUE(eager.defined());
  at::cuda::CUDAGraph graph;
  graph.capture_begin();
  auto captured = fp8_linear_overlapped(rows, w, b, Fp8GemmKernel::coop_128x256_c2x1, {}, 16);
  graph.capture_end();
  ASSERT_TRUE(captured.defined());
  captured.zero_();
  graph.replay();
  EXPECT_TRUE(at::equal(captured, eager));
}
#endif

}  // namespace
}  // namespace ditbench
