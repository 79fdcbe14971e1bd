// PSNR and SSIM against scikit-image: the fixture pairs of ../shared/fixtures/diffusers/metrics
// (float and uint8 inputs) and random frames in tests/data/metrics_random.safetensors, whose
// expected values were computed with the venv's scikit-image on the same values in f64:
// peak_signal_noise_ratio(data_range=1.0) and structural_similarity(channel_axis=-1 (None for the
// gray image), gaussian_weights=True, sigma=1.5, use_sample_covariance=False, K1=0.01, K2=0.03,
// data_range=1.0), frame by frame.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <string>

#include "metrics/quality.h"
#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"
#include "test_util.h"

namespace ditbench {
namespace {

const double kInf = std::numeric_limits<double>::infinity();

std::string metrics_fixture_dir() { return testing::fixtures_dir() + "/diffusers/metrics"; }

const std::map<std::string, at::Tensor>& fixture_frames() {
  static const auto tensors = load_safetensors(metrics_fixture_dir() + "/frames.safetensors");
  return tensors;
}

const std::map<std::string, at::Tensor>& random_frames() {
  static const auto tensors =
      load_safetensors(testing::source_dir() + "/tests/data/metrics_random.safetensors");
  return tensors;
}

nlohmann::json fixture_expected() {
  std::ifstream in(metrics_fixture_dir() + "/expected.json");
  return nlohmann::json::parse(in).at("values");
}

// scikit-image's uint8 case: the float images rounded to 8 bits.
at::Tensor to_uint8(const at::Tensor& image) {
  return (image * 255.0).round().clamp(0, 255).to(at::kByte);
}

TEST(Quality, MatchesScikitImageOnFixturePairs) {
  const auto expected = fixture_expected();
  for (int i = 0; i < 4; ++i) {
    const std::string pair = "pair" + std::to_string(i);
    SCOPED_TRACE(pair);
    const auto& ref = fixture_frames().at(pair + ".ref");
    const auto& test = fixture_frames().at(pair + ".test");
    const auto& values = expected.at(pair);
    if (values.at("psnr_float").is_null()) {
      EXPECT_EQ(psnr(ref, test), kInf);
    } else {
      EXPECT_NEAR(psnr(ref, test), values.at("psnr_float").get<double>(), 1e-4);
    }
    EXPECT_NEAR(ssim(ref, test), values.at("ssim_float_gaussian").get<double>(), 1e-4);
    // uint8 input: data range 255 by default, as scikit-image takes it from the dtype.
    EXPECT_NEAR(ssim(to_uint8(ref), to_uint8(test)), values.at("ssim_uint8_gaussian").get<double>(),
                1e-4);
    EXPECT_NEAR(ssim(to_uint8(ref).to(at::kFloat), to_uint8(test).to(at::kFloat), 255.0),
                values.at("ssim_uint8_gaussian").get<double>(), 1e-4);
  }
}

TEST(Quality, RandomFramesMatchScikitImage) {
  const auto& ref = random_frames().at("frames.ref");    // [3, 16, 19, 3]
  const auto& test = random_frames().at("frames.test");  // frame 1 identical to its reference
  const double psnr_expected[] = {25.968596038700277, kInf, 13.707739669841551};
  const double ssim_expected[] = {0.9837121138475321, 1.0, 0.7073850457838254};

  const auto quality = compare_frames(ref, test);
  ASSERT_EQ(quality.psnr.size(), 3u);
  ASSERT_EQ(quality.ssim.size(), 3u);
  for (int f = 0; f < 3; ++f) {
    SCOPED_TRACE("frame " + std::to_string(f));
    if (std::isinf(psnr_expected[f])) {
      EXPECT_EQ(quality.psnr[f], kInf);
    } else {
      EXPECT_NEAR(quality.psnr[f], psnr_expected[f], 1e-9);
    }
    EXPECT_NEAR(quality.ssim[f], ssim_expected[f], 1e-9);
    // The single-image functions agree with the per-frame ones.
    EXPECT_NEAR(ssim(ref[f], test[f]), ssim_expected[f], 1e-9);
  }
  EXPECT_FALSE(quality.identical);
  // Mean over the frames with finite PSNR; the minimum over all frames.
  EXPECT_NEAR(quality.psnr_mean, (psnr_expected[0] + psnr_expected[2]) / 2, 1e-9);
  EXPECT_NEAR(quality.psnr_min, psnr_expected[2], 1e-9);
  EXPECT_NEAR(quality.ssim_mean, (ssim_expected[0] + ssim_expected[1] + ssim_expected[2]) / 3,
              1e-9);
  EXPECT_NEAR(quality.ssim_min, ssim_expected[2], 1e-9);
}

TEST(Quality, GrayImageMatchesScikitImage) {
  const auto& ref = random_frames().at("gray.ref");  // [12, 13]: the smallest side fits 11 taps
  const auto& test = random_frames().at("gray.test");
  EXPECT_NEAR(psnr(ref, test), 20.040454027165225, 1e-9);
  EXPECT_NEAR(ssim(ref, test), 0.9629291195690987, 1e-9);
}

TEST(Quality, IdenticalFrames) {
  const auto& ref = random_frames().at("frames.ref");
  const auto quality = compare_frames(ref, ref.clone());
  EXPECT_TRUE(quality.identical);
  EXPECT_EQ(quality.psnr_mean, kInf);
  EXPECT_EQ(quality.psnr_min, kInf);
  EXPECT_DOUBLE_EQ(quality.ssim_mean, 1.0);
  EXPECT_DOUBLE_EQ(quality.ssim_min, 1.0);
}

TEST(Quality, NaNFrameIsNotHidden) {
  const auto& ref = random_frames().at("frames.ref");
  auto test = random_frames().at("frames.test").clone();
  test[0][0][0][0] = std::nan("");
  const auto quality = compare_frames(ref, test);
  EXPECT_TRUE(std::isnan(quality.psnr_mean));
  EXPECT_TRUE(std::isnan(quality.psnr_min));
  EXPECT_TRUE(std::isnan(quality.ssim_min));
  EXPECT_FALSE(quality.identical);
}

TEST(Quality, BadShapesAreRejected) {
  const auto a = at::zeros({2, 16, 16, 3});
  const auto b = at::zeros({2, 16, 17, 3});
  try {
    compare_frames(a, b);
    FAIL() << "expected InputError";
  } catch (const InputError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("[2, 16, 16, 3]"), std::string::npos) << message;
    EXPECT_NE(message.find("[2, 16, 17, 3]"), std::string::npos) << message;
  }
  EXPECT_THROW(compare_frames(at::zeros({16, 16, 3}), at::zeros({16, 16, 3})), InputError);
  EXPECT_THROW(ssim(at::zeros({10, 16, 3}), at::zeros({10, 16, 3})), InputError);  // < 11 rows
  EXPECT_THROW(psnr(at::zeros({4}), at::zeros({5})), InputError);
}

TEST(Quality, RunsOnTheFramesDevice) {
#ifdef DITBENCH_HAS_CUDA
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const auto& ref = random_frames().at("frames.ref");
  const auto& test = random_frames().at("frames.test");
  const auto on_cpu = compare_frames(ref, test);
  const auto on_gpu = compare_frames(ref.cuda(), test.cuda());
  for (size_t f = 0; f < on_cpu.ssim.size(); ++f) {
    EXPECT_NEAR(on_gpu.ssim[f], on_cpu.ssim[f], 1e-9);
    if (std::isfinite(on_cpu.psnr[f])) EXPECT_NEAR(on_gpu.psnr[f], on_cpu.psnr[f], 1e-9);
  }
  EXPECT_EQ(on_gpu.identical, on_cpu.identical);
#else
  GTEST_SKIP() << "built without CUDA";
#endif
}

}  // namespace
}  // namespace ditbench
