// The channels-last causal up-sampling and replicate padding gather
// (optimizations/kernels/video_resample.h) on a GPU against ATen's interpolation and padding, bit
// for bit (both copy values); the channel bias kernel against ATen's convolution bias; what they
// decline; without CUDA they decline.
#include <gtest/gtest.h>

#include "optimizations/kernels/fused.h"
#include "optimizations/kernels/video_resample.h"

namespace ditbench {
namespace {

constexpr auto kChannelsLast = at::MemoryFormat::ChannelsLast3d;

// ATen's nearest interpolation by the scale, the first st - 1 frames dropped (the causal
// up-sampling keeps one first frame), then replicate padding.
at::Tensor aten_resample(const at::Tensor& x, const CausalResample& r) {
  at::Tensor up = at::upsample_nearest3d(
      x, {r.scale[0] * x.size(2), r.scale[1] * x.size(3), r.scale[2] * x.size(4)});
  up = up.narrow(2, r.scale[0] - 1, 1 + r.scale[0] * (x.size(2) - 1));
  return at::pad(up, {r.pad_width, r.pad_width, r.pad_height, r.pad_height, r.pad_frames, 0},
                 "replicate");
}

CausalResample resample(std::array<int64_t, 3> scale, int64_t pad_frames, int64_t pad_side) {
  CausalResample r;
  r.scale = scale;
  r.pad_frames = pad_frames;
  r.pad_height = r.pad_width = pad_side;
  return r;
}

TEST(VideoResample, DeclinesOnTheCpu) {
  auto x = at::randn({1, 8, 3, 4, 4}).contiguous(kChannelsLast);
  EXPECT_FALSE(try_causal_resample(x, resample({1, 1, 1}, 2, 1)).defined());
  EXPECT_FALSE(try_add_channel_bias_(x, at::ones({8})));
}

TEST(VideoResampleCuda, MatchesAtenBitForBit) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  // The causal conv's padding; the HunyuanVideo up-sampler (time and space) and its padding;
  // space only; an odd frame size; a batch of 2.
  const CausalResample cases[] = {resample({1, 1, 1}, 2, 1), resample({2, 2, 2}, 2, 1),
                                  resample({1, 2, 2}, 2, 1), resample({2, 1, 1}, 0, 0),
                                  resample({1, 1, 1}, 0, 3)};
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    for (std::vector<int64_t> shape :
         {std::vector<int64_t>{1, 16, 5, 7, 9}, std::vector<int64_t>{2, 64, 3, 12, 10},
          std::vector<int64_t>{1, 512, 2, 4, 6}}) {
      auto x = at::randn(shape, at::TensorOptions().device(at::kCUDA).dtype(dtype))
                   .contiguous(kChannelsLast);
      for (const CausalResample& r : cases) {
        at::Tensor fused = try_causal_resample(x, r);
        ASSERT_TRUE(fused.defined()) << dtype << " " << x.sizes();
        EXPECT_TRUE(fused.is_contiguous(kChannelsLast));
        at::Tensor expected = aten_resample(x.contiguous(), r);
        ASSERT_EQ(fused.sizes(), expected.sizes());
        EXPECT_TRUE(at::equal(fused, expected))
            << dtype << " " << x.sizes() << " scale " << r.scale[0] << r.scale[1] << r.scale[2]
            << " pads " << r.pad_frames << " " << r.pad_height;
      }
    }
  }
}

TEST(VideoResampleCuda, DeclinesWhatItCannotServe) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const auto options = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const CausalResample pad = resample({1, 1, 1}, 2, 1);
  auto x = at::randn({1, 16, 3, 4, 4}, options);
  EXPECT_FALSE(try_causal_resample(x, pad).defined());  // NCDHW
  EXPECT_TRUE(try_causal_resample(x.contiguous(kChannelsLast), pad).defined());
  // 12 bfloat16 channels: 24 bytes, not whole 16-byte vectors.
  EXPECT_FALSE(
      try_causal_resample(at::randn({1, 12, 3, 4, 4}, options).contiguous(kChannelsLast), pad)
          .defined());
  EXPECT_FALSE(try_causal_resample(x.to(at::kHalf).contiguous(kChannelsLast), pad).defined());
  set_fused_kernels_enabled(false);
  EXPECT_FALSE(try_causal_resample(x.contiguous(kChannelsLast), pad).defined());
  set_fused_kernels_enabled(true);
}

// The convolution's bias over a channels-last output: what at::conv3d with the bias computes
// (cuDNN's convolution, then ATen's broadcasting addition), bit for bit.
TEST(ChannelBiasCuda, MatchesAtenConvolutionBiasBitForBit) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    const auto options = at::TensorOptions().device(at::kCUDA).dtype(dtype);
    for (int64_t channels : {16, 64, 256}) {
      auto x = at::randn({2, 32, 3, 6, 5}, options).contiguous(kChannelsLast);
      auto w = (at::randn({channels, 32, 3, 3, 3}, options) * 0.1).contiguous(kChannelsLast);
      auto b = at::randn({channels}, options) * 3;
      at::Tensor expected = at::conv3d(x, w, b);
      at::Tensor y = at::conv3d(x, w, {});
      ASSERT_TRUE(y.is_contiguous(kChannelsLast));
      ASSERT_TRUE(try_add_channel_bias_(y, b)) << dtype << " " << channels;
      EXPECT_TRUE(at::equal(y, expected)) << dtype << " " << channels;
    }
  }
  const auto options = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  auto y = at::zeros({1, 24, 2, 3, 3}, options).contiguous(kChannelsLast);  // 3 vectors
  EXPECT_FALSE(try_add_channel_bias_(y, at::ones({24}, options)));
  EXPECT_TRUE(at::equal(y, at::zeros_like(y)));
  auto y16 = at::zeros({1, 16, 2, 3, 3}, options);
  EXPECT_FALSE(try_add_channel_bias_(y16, at::ones({16}, options)));  // NCDHW
  EXPECT_FALSE(try_add_channel_bias_(y16.contiguous(kChannelsLast), at::ones({8}, options)));
}

}  // namespace
}  // namespace ditbench
