// PNG frame folders (OpenCV) and video files (FFmpeg): round trips scored with the harness's own
// PSNR against the frames that went in, a PIL-written fixture for channel order, and fitting a
// reference of another shape. Tests that need a library skip in builds without it.
#include <gtest/gtest.h>

#include <unistd.h>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "metrics/frames.h"
#include "metrics/quality.h"
#include "metrics/video.h"
#include "models/common/error.h"
#include "test_util.h"

namespace ditbench {
namespace {

namespace fs = std::filesystem;

class VideoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ditbench_video_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { std::system(("rm -rf '" + dir_.string() + "'").c_str()); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

using testing::input_error_of;

// Smooth moving content, what codecs are built for: [F, H, W, 3] in [0, 1].
at::Tensor smooth_frames(int64_t frames, int64_t height, int64_t width) {
  auto t = at::arange(frames, at::kFloat).view({frames, 1, 1, 1});
  auto y = at::linspace(0, 1, height).view({1, height, 1, 1});
  auto x = at::linspace(0, 1, width).view({1, 1, width, 1});
  auto phase = at::tensor({0.0f, 2.1f, 4.2f}).view({1, 1, 1, 3});
  return 0.5 + 0.35 * at::sin(3.0 * x + 2.0 * y + 0.4 * t + phase);
}

// Worst case of rounding to 8 bits: every value off by half a step, 1/510, so
// MSE <= 1/510^2 and PSNR >= 20 log10(510) = 54.15 dB (above the 48 dB a PNG must keep).
const double kEightBitPsnrBound = 20.0 * std::log10(510.0);

TEST_F(VideoTest, PngFramesRoundTripWithinEightBitRounding) {
#ifndef DITBENCH_HAS_OPENCV
  GTEST_SKIP() << "this build has no OpenCV";
#endif
  auto frames = at::rand({3, 20, 24, 3}, at::TensorOptions().dtype(at::kFloat));
  // Rounding to nearest, not truncation: 100.4 -> 100, 100.6 -> 101.
  frames[0][0][0][0] = 100.4f / 255.0f;
  frames[0][0][0][1] = 100.6f / 255.0f;
  save_frames_png(path("png"), frames);
  ASSERT_TRUE(fs::exists(path("png/frame_00002.png")));
  const auto loaded = load_frames(path("png"));
  ASSERT_EQ(loaded.sizes(), frames.sizes());
  EXPECT_FLOAT_EQ(loaded[0][0][0][0].item<float>() * 255.0f, 100.0f);
  EXPECT_FLOAT_EQ(loaded[0][0][0][1].item<float>() * 255.0f, 101.0f);
  EXPECT_TRUE(at::equal(loaded, quantize_frames(frames).to(at::kFloat) / 255.0));
  const auto quality = compare_frames(frames, loaded);
  EXPECT_GE(quality.psnr_min, kEightBitPsnrBound);
  EXPECT_GE(quality.psnr_min, 48.0);
}

TEST_F(VideoTest, PngFolderWrittenByPilReadsAsRgb) {
#ifndef DITBENCH_HAS_OPENCV
  GTEST_SKIP() << "this build has no OpenCV";
#endif
  // tests/data/video/pil_frames: PIL wrote frame f, pixel (y, x) as
  // (30x + 5f, 40y, (7xy + 100f) mod 256).
  const auto loaded = load_frames(testing::source_dir() + "/tests/data/video/pil_frames");
  ASSERT_EQ(loaded.sizes(), (at::IntArrayRef{2, 6, 8, 3}));
  auto f = at::arange(2).view({2, 1, 1});
  auto y = at::arange(6).view({1, 6, 1});
  auto x = at::arange(8).view({1, 1, 8});
  auto expected = at::stack({(30 * x + 5 * f).expand({2, 6, 8}), (40 * y).expand({2, 6, 8}),
                             at::remainder(7 * x * y + 100 * f, 256).expand({2, 6, 8})},
                            -1);
  EXPECT_TRUE(at::equal(at::round(loaded * 255).to(at::kLong), expected));
}

TEST_F(VideoTest, H264RoundTripKeepsSizeRateAndQuality) {
  if (!h264_encoder_available()) GTEST_SKIP() << "this build has no FFmpeg with libx264";
  const auto frames = smooth_frames(9, 48, 64);
  const auto written = save_video(path("clip.mp4"), frames, 8.0);
  EXPECT_EQ(written.path, path("clip.mp4"));
  EXPECT_EQ(written.codec, "h264");
  EXPECT_FALSE(written.lossless);
  const auto info = probe_video(written.path);
  EXPECT_EQ(info.codec, "h264");
  EXPECT_DOUBLE_EQ(info.fps, 8.0);
  EXPECT_EQ(info.width, 64);
  EXPECT_EQ(info.height, 48);
  const auto decoded = load_frames(written.path);  // through the frame-source dispatch
  ASSERT_EQ(decoded.sizes(), frames.sizes());
  const auto quality = compare_frames(frames, decoded);
  EXPECT_GE(quality.psnr_min, 35.0);
  EXPECT_GE(quality.ssim_min, 0.95);
}

TEST_F(VideoTest, H264KeepsChannelOrderAndOddSizes) {
  if (!h264_encoder_available()) GTEST_SKIP() << "this build has no FFmpeg with libx264";
  // Odd sizes take 4:4:4; flat red, green and blue thirds must come back as themselves.
  auto frames = at::zeros({2, 17, 33, 3});
  frames.narrow(2, 0, 11).select(3, 0).fill_(1.0);
  frames.narrow(2, 11, 11).select(3, 1).fill_(1.0);
  frames.narrow(2, 22, 11).select(3, 2).fill_(1.0);
  const auto written = save_video(path("odd.mp4"), frames, 24.0);
  const auto decoded = load_video(written.path);
  ASSERT_EQ(decoded.sizes(), frames.sizes());
  // Away from the colour edges (the codec's blocks blur them a little).
  for (int64_t third = 0; third < 3; ++third) {
    const auto centre = decoded.narrow(2, third * 11 + 3, 5).mean({0, 1, 2});
    for (int64_t c = 0; c < 3; ++c) {
      EXPECT_NEAR(centre[c].item<float>(), c == third ? 1.0f : 0.0f, 0.03f)
          << "third " << third << " channel " << c;
    }
  }
  EXPECT_DOUBLE_EQ(probe_video(written.path).fps, 24.0);
}

TEST_F(VideoTest, Ffv1RoundTripIsExactToEightBits) {
  if (!video_io_available()) GTEST_SKIP() << "this build has no FFmpeg";
  const auto frames = at::rand({4, 18, 22, 3});
  const auto written = save_video(path("clip.mp4"), frames, 8.0, VideoCodec::kFFV1);
  EXPECT_EQ(written.path, path("clip.mkv"));
  EXPECT_EQ(written.codec, "ffv1");
  EXPECT_TRUE(written.lossless);
  EXPECT_EQ(probe_video(written.path).codec, "ffv1");
  EXPECT_DOUBLE_EQ(probe_video(written.path).fps, 8.0);
  const auto decoded = load_frames(written.path);
  ASSERT_EQ(decoded.sizes(), frames.sizes());
  EXPECT_TRUE(at::equal(decoded, quantize_frames(frames).to(at::kFloat) / 255.0));
  EXPECT_GE(compare_frames(frames, decoded).psnr_min, kEightBitPsnrBound);
}

TEST_F(VideoTest, GrayFramesBecomeGrayVideo) {
  if (!video_io_available()) GTEST_SKIP() << "this build has no FFmpeg";
  const auto gray = at::rand({2, 8, 10, 1});
  const auto written = save_video(path("gray.mkv"), gray, 12.5, VideoCodec::kFFV1);
  const auto decoded = load_video(written.path);
  ASSERT_EQ(decoded.sizes(), (at::IntArrayRef{2, 8, 10, 3}));
  const auto expected = (quantize_frames(gray).to(at::kFloat) / 255.0).expand({2, 8, 10, 3});
  EXPECT_TRUE(at::equal(decoded, expected));
  EXPECT_DOUBLE_EQ(probe_video(written.path).fps, 12.5);
}

TEST_F(VideoTest, BadVideosNameTheFile) {
  if (!video_io_available()) {
    EXPECT_THROW(save_video(path("a.mp4"), at::zeros({1, 8, 8, 3}), 8.0), Unsupported);
    const auto message = input_error_of([&] { load_frames(path("a.mp4")); });
    EXPECT_NE(message.find("FFmpeg"), std::string::npos) << message;
    return;
  }
  auto message = input_error_of([&] { load_frames(path("absent.mp4")); });
  EXPECT_NE(message.find("absent.mp4"), std::string::npos) << message;
  std::system(("echo 'not a video' > '" + path("text.mp4") + "'").c_str());
  message = input_error_of([&] { load_video(path("text.mp4")); });
  EXPECT_NE(message.find("text.mp4"), std::string::npos) << message;
  message = input_error_of([&] { save_video(path("flat.mp4"), at::zeros({8, 8}), 8.0); });
  EXPECT_NE(message.find("flat.mp4"), std::string::npos) << message;
  EXPECT_NE(message.find("[8, 8]"), std::string::npos) << message;
  EXPECT_THROW(save_video(path("still.mp4"), at::zeros({1, 8, 8, 3}), 0.0), InputError);
}

TEST(FitReferenceTest, MismatchedShapesNameBothUnlessResized) {
  const auto reference = at::rand({3, 8, 10, 3});
  EXPECT_TRUE(
      at::equal(fit_reference_frames(reference, {3, 8, 10, 3}, false, "ref.mp4"), reference));
  auto message = input_error_of([&] {
    fit_reference_frames(reference, {3, 4, 5, 3}, false, "ref.mp4");
  });
  EXPECT_NE(message.find("ref.mp4"), std::string::npos) << message;
  EXPECT_NE(message.find("[3, 8, 10, 3]"), std::string::npos) << message;
  EXPECT_NE(message.find("[3, 4, 5, 3]"), std::string::npos) << message;
  message = input_error_of([&] {
    fit_reference_frames(reference, {2, 8, 10, 3}, false, "ref.mp4");
  });
  EXPECT_NE(message.find("[2, 8, 10, 3]"), std::string::npos) << message;
  // Channels never resize.
  message = input_error_of([&] {
    fit_reference_frames(reference, {3, 8, 10, 1}, true, "ref.mp4");
  });
  EXPECT_NE(message.find("channel"), std::string::npos) << message;
}

TEST(FitReferenceTest, ResizeUndoesPixelAndFrameRepetition) {
  // Bilinear with half-pixel centres at scale 2 samples halfway between each pair of repeated
  // pixels, and linear time likewise between repeated frames: the original comes back exactly.
  const auto original = at::rand({3, 5, 6, 3});
  const auto enlarged = original.repeat_interleave(2, 1).repeat_interleave(2, 2);  // [3, 10, 12, 3]
  EXPECT_TRUE(at::allclose(fit_reference_frames(enlarged, original.sizes(), true, "ref"), original,
                           0, 1e-6));
  const auto doubled = original.repeat_interleave(2, 0);  // [6, 5, 6, 3]
  EXPECT_TRUE(at::allclose(fit_reference_frames(doubled, original.sizes(), true, "ref"), original,
                           0, 1e-6));
  // Enlarging: a 1x2 frame of values a, b to 1x4 is a, a + (b - a)/4, b - (b - a)/4, b
  // (half-pixel centres, clamped at the border).
  const auto pair = at::tensor({0.2f, 0.6f}).view({1, 1, 2, 1});
  const auto wide = fit_reference_frames(pair, {1, 1, 4, 1}, true, "ref").flatten();
  EXPECT_TRUE(at::allclose(wide, at::tensor({0.2f, 0.3f, 0.5f, 0.6f}), 0, 1e-6)) << wide;
}

}  // namespace
}  // namespace ditbench
