// Shared layers of models/common/ against hand computations from specs/models.md §1.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "models/common/embeddings.h"
#include "models/common/family_pipeline.h"
#include "models/common/layers.h"
#include "models/common/norms.h"
#include "test_util.h"

namespace ditbench {
namespace {

std::set<std::string> parameter_keys(const torch::nn::Module& m) {
  std::set<std::string> keys;
  for (const auto& p : m.named_parameters()) keys.insert(p.key());
  return keys;
}

// Decoded values whose halves plus 0.5 are exact in bf16: the frames are known by hand.
TEST(VideoFrames, DenormalizeClampAndPutTheFirstSamplesChannelsLastOnTheHost) {
  const float values[] = {-1.5f, -1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 1.5f};
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    auto decoded = at::empty({2, 3, 2, 2, 3}, at::kFloat);  // [B, C, F, H, W]
    auto* d = decoded.data_ptr<float>();
    for (int64_t i = 0; i < decoded.numel(); ++i) d[i] = values[(i * 5) % 7];
    auto frames = video_frames(decoded.to(dtype));
    ASSERT_EQ(frames.sizes(), (at::IntArrayRef{2, 2, 3, 3})) << dtype;  // [F, H, W, C]
    ASSERT_EQ(frames.scalar_type(), at::kFloat);
    ASSERT_TRUE(frames.is_contiguous());
    for (int64_t c = 0; c < 3; ++c) {
      for (int64_t f = 0; f < 2; ++f) {
        for (int64_t h = 0; h < 2; ++h) {
          for (int64_t w = 0; w < 3; ++w) {
            const float x = d[((c * 2 + f) * 2 + h) * 3 + w];  // sample 0
            const float expected = std::min(1.0f, std::max(0.0f, x / 2 + 0.5f));
            EXPECT_EQ(frames[f][h][w][c].item<float>(), expected) << dtype << c << f << h << w;
          }
        }
      }
    }
  }
}

TEST(VideoFramesCuda, GpuFramesArePinnedAndEqualTheHostsBitForBit) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  auto decoded = at::randn({1, 3, 5, 16, 24}, at::kFloat).to(at::kBFloat16) * 1.2;
  auto on_gpu = video_frames(decoded.to(at::kCUDA));
  EXPECT_EQ(on_gpu.device(), at::Device(at::kCPU));
  EXPECT_TRUE(on_gpu.is_pinned());  // page-locked: copied without faulting in fresh pages
  EXPECT_TRUE(on_gpu.equal(video_frames(decoded)));
}

TEST(TimestepSinusoid, FlippedCosSinMatchesHandComputation) {
  const double ts[] = {0.0, 1.0, 999.5};
  auto emb = timestep_sinusoid(at::tensor({0.0f, 1.0f, 999.5f}), 8);  // [3, 8]
  ASSERT_EQ(emb.scalar_type(), at::kFloat);
  ASSERT_EQ(emb.sizes(), (at::IntArrayRef{3, 8}));
  for (int b = 0; b < 3; ++b) {
    for (int k = 0; k < 4; ++k) {
      const double f = std::exp(-std::log(10000.0) * k / 4.0);
      EXPECT_NEAR(emb[b][k].item<double>(), std::cos(ts[b] * f), 2e-4) << b << "," << k;
      EXPECT_NEAR(emb[b][4 + k].item<double>(), std::sin(ts[b] * f), 2e-4) << b << "," << k;
    }
  }
}

TEST(TimestepSinusoid, IntegerAndBf16TimestepsAreComputedInFloat32AndOddDimIsPadded) {
  auto from_int = timestep_sinusoid(at::tensor({3, 7}, at::kLong), 7);  // [2, 7]
  auto from_f32 = timestep_sinusoid(at::tensor({3.0f, 7.0f}), 7);
  EXPECT_EQ(from_int.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(from_int, from_f32));
  EXPECT_EQ(from_int.select(1, 6).abs().sum().item<double>(), 0.0);
  // half = 3, no flip: [sin, cos]
  auto unflipped = timestep_sinusoid(at::tensor({2.0f}), 6, /*flip=*/false);
  EXPECT_NEAR(unflipped[0][1].item<double>(), std::sin(2.0 * std::exp(-std::log(1e4) / 3)), 1e-6);
  EXPECT_NEAR(unflipped[0][4].item<double>(), std::cos(2.0 * std::exp(-std::log(1e4) / 3)), 1e-6);
}

TEST(Rope1d, InterleavedTableMatchesHandComputation) {
  auto [cos, sin] = rope_1d(6, at::tensor({0.0f, 1.0f, 5.0f}), 256.0);  // [3, 6]
  ASSERT_EQ(cos.sizes(), (at::IntArrayRef{3, 6}));
  const double pos[] = {0.0, 1.0, 5.0};
  for (int s = 0; s < 3; ++s) {
    for (int i = 0; i < 3; ++i) {
      const double angle = pos[s] / std::pow(256.0, 2.0 * i / 6.0);
      for (int j = 0; j < 2; ++j) {
        EXPECT_NEAR(cos[s][2 * i + j].item<double>(), std::cos(angle), 1e-6);
        EXPECT_NEAR(sin[s][2 * i + j].item<double>(), std::sin(angle), 1e-6);
      }
    }
  }
  // f64 frequencies (FLUX/Wan) still return f32 tables.
  auto [cos64, sin64] = rope_1d(4, at::tensor({3.0}, at::kDouble), 1e4, at::kDouble);
  EXPECT_EQ(cos64.scalar_type(), at::kFloat);
  EXPECT_NEAR(sin64[0][2].item<double>(), std::sin(3.0 / 100.0), 1e-7);
}

TEST(Rope3dGrid, AxesAreConcatenatedWithTimeSlowestAndWidthFastest) {
  auto [cos, sin] = rope_3d_grid(2, 3, 4, {2, 4, 4}, 256.0, at::kCPU);  // [24, 10]
  ASSERT_EQ(cos.sizes(), (at::IntArrayRef{24, 10}));
  for (int t = 0; t < 2; ++t) {
    for (int h = 0; h < 3; ++h) {
      for (int w = 0; w < 4; ++w) {
        const int token = (t * 3 + h) * 4 + w;
        // column 0: t with freq 1; column 2: h with freq 1; column 4: h with 256^-1/2;
        // column 6: w with freq 1; column 8: w with 256^-1/2
        EXPECT_NEAR(sin[token][0].item<double>(), std::sin(t), 1e-6);
        EXPECT_NEAR(sin[token][2].item<double>(), std::sin(h), 1e-6);
        EXPECT_NEAR(sin[token][4].item<double>(), std::sin(h / 16.0), 1e-6);
        EXPECT_NEAR(cos[token][6].item<double>(), std::cos(w), 1e-6);
        EXPECT_NEAR(cos[token][9].item<double>(), std::cos(w / 16.0), 1e-6);
      }
    }
  }
}

TEST(ApplyRotaryEmb, RotatesInterleavedPairsInBothLayouts) {
  at::manual_seed(0);
  auto x = at::randn({1, 3, 2, 4});  // [B, S, H, D]
  auto cos = at::randn({3, 4}), sin = at::randn({3, 4});
  auto out = apply_rotary_emb(x, cos, sin, 1);
  for (int s = 0; s < 3; ++s) {
    for (int h = 0; h < 2; ++h) {
      for (int i = 0; i < 2; ++i) {
        const double x0 = x[0][s][h][2 * i].item<double>(),
                     x1 = x[0][s][h][2 * i + 1].item<double>();
        EXPECT_NEAR(out[0][s][h][2 * i].item<double>(),
                    x0 * cos[s][2 * i].item<double>() - x1 * sin[s][2 * i].item<double>(), 1e-5);
        EXPECT_NEAR(out[0][s][h][2 * i + 1].item<double>(),
                    x0 * sin[s][2 * i + 1].item<double>() + x1 * cos[s][2 * i + 1].item<double>(),
                    1e-5);
      }
    }
  }
  auto out_bhsd = apply_rotary_emb(x.transpose(1, 2), cos, sin, 2);  // [B, H, S, D]
  EXPECT_TRUE(at::allclose(out_bhsd.transpose(1, 2), out));
  EXPECT_EQ(apply_rotary_emb(x.to(at::kBFloat16), cos, sin, 1).scalar_type(), at::kBFloat16);
}

TEST(RMSNorm, FollowsDiffusersDtypeRules) {
  RMSNorm norm(4, 1e-6, true, at::kFloat);
  norm->weight.detach().copy_(at::tensor({1.0f, 2.0f, 0.5f, -1.0f}));
  auto x = at::tensor({1.0f, 2.0f, 3.0f, 4.0f}).reshape({1, 4});
  const double rms = std::sqrt((1 + 4 + 9 + 16) / 4.0 + 1e-6);
  auto y = norm(x);
  EXPECT_NEAR(y[0][1].item<double>(), 2.0 * 2.0 / rms, 1e-6);
  EXPECT_NEAR(y[0][3].item<double>(), -4.0 / rms, 1e-6);
  // f32 weight, bf16 input: the result stays f32.
  EXPECT_EQ(norm(x.to(at::kBFloat16)).scalar_type(), at::kFloat);
  // bf16 weight: cast to bf16 before the weight multiply.
  RMSNorm norm_bf16(4, 1e-6, true, at::kBFloat16);
  norm_bf16->weight.detach().fill_(1.0);
  auto y16 = norm_bf16(x.to(at::kBFloat16));
  EXPECT_EQ(y16.scalar_type(), at::kBFloat16);
  EXPECT_NEAR(y16[0][2].item<double>(), 3.0 / rms, 1e-2);
  RMSNorm plain(4, 1e-6, false, at::kFloat);
  EXPECT_TRUE(parameter_keys(*plain).empty());
  EXPECT_EQ(plain(x.to(at::kBFloat16)).scalar_type(), at::kBFloat16);
}

TEST(AdaLayerNorm, ChunkOrdersFollowDiffusers) {
  at::manual_seed(0);
  const int64_t d = 4;
  auto x = at::randn({1, 3, d});
  auto ln = at::layer_norm(x, {d}, {}, {}, 1e-6);
  // Zero weights: the modulation is the bias alone, chunked in the documented order.
  AdaLayerNormContinuous cont(d, d, at::kFloat);
  cont->linear->weight.detach().zero_();
  cont->linear->bias.detach().copy_(at::cat({at::full({d}, 1.0), at::full({d}, 3.0)}));
  EXPECT_TRUE(
      at::allclose(cont(x, at::randn({1, d})), ln * 2.0 + 3.0, 1e-5, 1e-6));  // scale, shift

  AdaLayerNormZero zero(d, at::kFloat);
  zero->linear->weight.detach().zero_();
  zero->linear->bias.detach().copy_(at::arange(6 * d, at::kFloat).div(d).floor());  // chunk k = k
  auto out = zero(x, at::randn({1, d}));
  EXPECT_TRUE(at::allclose(out.x, ln * 2.0 + 0.0, 1e-5, 1e-6));  // shift 0, scale 1
  EXPECT_EQ(out.gate_msa[0][0].item<float>(), 2.0f);
  EXPECT_EQ(out.shift_mlp[0][0].item<float>(), 3.0f);
  EXPECT_EQ(out.scale_mlp[0][0].item<float>(), 4.0f);
  EXPECT_EQ(out.gate_mlp[0][0].item<float>(), 5.0f);

  AdaLayerNormZeroSingle single(d, at::kFloat);
  single->linear->weight.detach().zero_();
  single->linear->bias.detach().copy_(at::arange(3 * d, at::kFloat).div(d).floor());
  auto s = single(x, at::randn({1, d}));
  EXPECT_TRUE(at::allclose(s.x, ln * 2.0 + 0.0, 1e-5, 1e-6));
  EXPECT_EQ(s.gate[0][0].item<float>(), 2.0f);
}

TEST(FeedForward, KeysSkipTheDropoutIndexAndSwiGLUTakesValueThenGate) {
  FeedForward ff(4, 8, FeedForwardActivation::kGeluTanh, at::kFloat);
  EXPECT_EQ(parameter_keys(*ff), (std::set<std::string>{"net.0.proj.weight", "net.0.proj.bias",
                                                        "net.2.weight", "net.2.bias"}));
  FeedForward swiglu(2, 1, FeedForwardActivation::kSwiGLU, at::kFloat, 1, /*bias=*/false);
  EXPECT_EQ(swiglu->act_proj->proj->weight.sizes(), (at::IntArrayRef{2, 2}));
  swiglu->act_proj->proj->weight.detach().copy_(at::eye(2));
  swiglu->out->weight.detach().fill_(1.0);
  auto y = swiglu(at::tensor({3.0f, -2.0f}).reshape({1, 2}));
  const double expected = 3.0 * (-2.0 / (1.0 + std::exp(2.0)));  // value 3 * silu(gate -2)
  EXPECT_NEAR(y.item<double>(), expected, 1e-6);
  OutProjection to_out(4, 4, true, at::kFloat);
  EXPECT_EQ(parameter_keys(*to_out), (std::set<std::string>{"0.weight", "0.bias"}));
}

TEST(PatchConv3d, UnpatchifyInvertsAnIdentityPatchify) {
  const int64_t c = 3;
  const std::array<int64_t, 3> patch{1, 2, 2};
  const int64_t features = c * 4;
  PatchEmbed3d embed(c, features, patch, at::kFloat);
  EXPECT_EQ(parameter_keys(*embed), (std::set<std::string>{"proj.weight", "proj.bias"}));
  // Feature o = ((c * pt + a) * ph + b) * pw + d picks input (c, a, b, d): (C, pt, ph, pw) order.
  embed->proj->weight.detach().copy_(
      at::eye(features).reshape({features, c, patch[0], patch[1], patch[2]}));
  embed->proj->bias.detach().zero_();
  at::manual_seed(0);
  auto x = at::randn({2, c, 3, 4, 6});
  auto tokens = embed(x);  // [2, 3*2*3, 12]
  ASSERT_EQ(tokens.sizes(), (at::IntArrayRef{2, 18, features}));
  // Row-major tokens: a transposed stream would make every row kernel and GEMM after it copy.
  EXPECT_TRUE(tokens.is_contiguous());
  // token (t=1, h=0, w=2) -> index (1 * 2 + 0) * 3 + 2 = 8; feature of (c=2, b=1, d=0) = 2*4+2
  EXPECT_FLOAT_EQ(tokens[1][8][10].item<float>(), x[1][2][1][1][4].item<float>());
  auto back = unpatchify_channels_first(tokens, {3, 2, 3}, patch, c);
  EXPECT_TRUE(at::equal(back, x));
}

}  // namespace
}  // namespace ditbench
