// Frame sources for `ditbench metrics`: file.safetensors:tensor in HWC or FHWC, and the frame
// writers. Image files are covered only where the build has OpenCV.
#include <gtest/gtest.h>

#include <unistd.h>
#include <filesystem>
#include <string>

#include "metrics/frames.h"
#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"
#include "test_util.h"

namespace ditbench {
namespace {

namespace fs = std::filesystem;

// std::filesystem::remove_all crashes in this process: libtorch.so exports its own copy of the
// std::filesystem symbols, and its remove_all jumps through a null pointer. Delete by hand.
void remove_tree(const fs::path& path) {
  if (fs::is_directory(path)) {
    for (const auto& entry : fs::directory_iterator(path)) remove_tree(entry.path());
  }
  fs::remove(path);
}

class FramesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ditbench_frames_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { remove_tree(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

using testing::input_error_of;

TEST_F(FramesTest, SavedFramesLoadBackUnchanged) {
  const auto frames = at::rand({3, 12, 14, 3}, at::kFloat);  // FHWC
  save_frames_safetensors(path("frames.safetensors"), frames);
  const auto named = load_frames(path("frames.safetensors") + ":frames");
  EXPECT_TRUE(at::equal(named, frames));
  // A file with one tensor needs no name.
  EXPECT_TRUE(at::equal(load_frames(path("frames.safetensors")), frames));
}

TEST_F(FramesTest, HwcImageBecomesOneFrame) {
  const auto& fixture = testing::fixtures_dir() + "/diffusers/metrics/frames.safetensors";
  const auto frames = load_frames(fixture + ":pair1.ref");
  EXPECT_EQ(frames.sizes(), (at::IntArrayRef{1, 48, 64, 3}));
  EXPECT_EQ(frames.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(frames[0], load_safetensors(fixture).at("pair1.ref")));
}

TEST_F(FramesTest, Uint8FramesAreScaledToUnitRange) {
  const auto bytes = at::tensor({0, 51, 255, 102}, at::kByte).reshape({1, 2, 2, 1});
  save_safetensors(path("bytes.safetensors"), {{"video", bytes}});
  const auto frames = load_frames(path("bytes.safetensors") + ":video");
  EXPECT_TRUE(at::allclose(frames.flatten(), at::tensor({0.0f, 0.2f, 1.0f, 0.4f})));
}

TEST_F(FramesTest, BadSourcesNameWhatIsWrong) {
  save_safetensors(path("two.safetensors"),
                   {{"a", at::zeros({4, 4, 3})}, {"b", at::zeros({2, 4, 4, 3})}});
  // Two tensors and no name.
  EXPECT_NE(input_error_of([&] { load_frames(path("two.safetensors")); }).find("two.safetensors"),
            std::string::npos);
  // A name the file does not hold: the message lists what it does hold.
  const auto missing = input_error_of([&] { load_frames(path("two.safetensors") + ":c"); });
  EXPECT_NE(missing.find("'c'"), std::string::npos) << missing;
  EXPECT_NE(missing.find("a, b"), std::string::npos) << missing;

  save_safetensors(path("bad.safetensors"), {{"signed", at::full({4, 4, 3}, -1.0)},
                                             {"flat", at::zeros({16})},
                                             {"ints", at::zeros({4, 4, 3}, at::kInt)}});
  const auto range = input_error_of([&] { load_frames(path("bad.safetensors") + ":signed"); });
  EXPECT_NE(range.find("bad.safetensors:signed"), std::string::npos) << range;
  EXPECT_NE(range.find("[0, 1]"), std::string::npos) << range;
  const auto shape = input_error_of([&] { load_frames(path("bad.safetensors") + ":flat"); });
  EXPECT_NE(shape.find("[16]"), std::string::npos) << shape;
  EXPECT_NE(input_error_of([&] { load_frames(path("bad.safetensors") + ":ints"); }).find("Int"),
            std::string::npos);
  EXPECT_THROW(load_frames(path("absent.safetensors") + ":x"), InputError);
}

TEST_F(FramesTest, ImageFilesNeedOpenCv) {
#ifdef DITBENCH_HAS_OPENCV
  const auto frames = at::rand({2, 12, 16, 3}, at::kFloat);
  save_frames_png(path("png"), frames);
  const auto loaded = load_frames(path("png"));
  ASSERT_EQ(loaded.sizes(), frames.sizes());
  EXPECT_LE((loaded - frames).abs().max().item<float>(), 0.5f / 255.0f + 1e-6f);
  EXPECT_TRUE(at::equal(load_frames(path("png/frame_00001.png"))[0], loaded[1]));
#else
  const auto message = input_error_of([&] { load_frames(path("frame.png")); });
  EXPECT_NE(message.find("OpenCV"), std::string::npos) << message;
  EXPECT_THROW(save_frames_png(path("png"), at::zeros({1, 12, 12, 3})), Unsupported);
#endif
}

}  // namespace
}  // namespace ditbench
