// Frame artifacts of runs (PNG folders, videos at the pipeline's or the suite's frame rate, notes
// where the build lacks a library) and scoring against an external reference, end to end on the
// CPU with the tiny preset; the suite keys "fps", "reference" and "reference_resize".
#include <gtest/gtest.h>

#include <unistd.h>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "harness/artifacts.h"
#include "harness/record.h"
#include "harness/runner.h"
#include "harness/suite.h"
#include "metrics/frames.h"
#include "metrics/video.h"
#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"

namespace ditbench {
namespace {
namespace fs = std::filesystem;

bool has_opencv() {
#ifdef DITBENCH_HAS_OPENCV
  return true;
#else
  return false;
#endif
}

// The runner's file name for a config id: characters other than letters, digits, '.' and '-'
// become '_'.
std::string file_name(const std::string& config_id) {
  std::string name;
  for (char c : config_id)
    name += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-') ? c : '_';
  return name;
}

class VideoArtifactsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ditbench_video_artifacts_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { std::system(("rm -rf '" + dir_.string() + "'").c_str()); }

  // One plain config (the baseline) unless `axes` adds more: 5 frames of 32x32.
  nlohmann::json suite_doc(nlohmann::json axes = nlohmann::json::object()) {
    return {{"name", "video"},
            {"preset", "hunyuan-video-tiny"},
            {"dtype", "float32"},
            {"device", "cpu"},
            {"height", 32},
            {"width", 32},
            {"frames", 5},
            {"steps", 3},
            {"warmup", 0},
            {"repeats", 1},
            {"prompt", {{"tokens", 6}, {"valid", 4}}},
            {"axes", axes}};
  }
  RunOptions options(const std::string& out) {
    RunOptions o;
    o.out_dir = dir_ / out;
    o.progress = false;
    return o;
  }
  std::string input_error_of_parse(const nlohmann::json& doc) {
    try {
      parse_suite(doc, dir_ / "suite.json");
    } catch (const InputError& e) {
      return e.what();
    }
    ADD_FAILURE() << "expected InputError for " << doc.dump();
    return "";
  }
  std::string read_text(const fs::path& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  fs::path dir_;
};

TEST_F(VideoArtifactsTest, SuiteKeysParseAndValidate) {
  save_frames_safetensors((dir_ / "ref.safetensors").string(), at::zeros({5, 32, 32, 3}), "video");
  auto doc = suite_doc();
  doc["fps"] = 8;
  doc["reference"] = "ref.safetensors:video";
  doc["reference_resize"] = true;
  const Suite s = parse_suite(doc, dir_ / "suite.json");
  EXPECT_EQ(s.settings.fps, 8.0);
  // Relative to the suite's folder, the tensor name kept.
  EXPECT_EQ(s.settings.reference, (dir_ / "ref.safetensors").string() + ":video");
  EXPECT_TRUE(s.settings.reference_resize);
  EXPECT_FALSE(parse_suite(suite_doc(), dir_ / "suite.json").settings.reference_resize);
  EXPECT_FALSE(parse_suite(suite_doc(), dir_ / "suite.json").settings.fps.has_value());

  auto bad = suite_doc();
  bad["reference"] = "absent.mp4";
  auto message = input_error_of_parse(bad);
  EXPECT_NE(message.find("/reference"), std::string::npos) << message;
  EXPECT_NE(message.find("absent.mp4"), std::string::npos) << message;
  bad = suite_doc();
  bad["fps"] = 0;
  EXPECT_NE(input_error_of_parse(bad).find("/fps"), std::string::npos);
  bad = suite_doc();
  bad["reference"] = "ref.safetensors";
  bad["reference_resize"] = "yes";
  EXPECT_NE(input_error_of_parse(bad).find("/reference_resize"), std::string::npos);
  bad = suite_doc();
  bad["reference"] = "ref.safetensors";
  bad["decode"] = false;
  message = input_error_of_parse(bad);
  EXPECT_NE(message.find("decode"), std::string::npos) << message;
}

TEST_F(VideoArtifactsTest, RunWritesPngFramesAndVideoPerConfigAndLinksThem) {
  const Suite s = parse_suite(suite_doc(), dir_ / "suite.json");
  const auto summary = run_suite(s, options("out"));
  ASSERT_EQ(summary.ok, 1);
  const auto records = read_results(dir_ / "out" / "results.jsonl");
  ASSERT_EQ(records.size(), 1u);
  const ResultRecord& r = records[0];
  ASSERT_EQ(r.status, RunStatus::kOk) << r.reason;
  ASSERT_TRUE(r.artifacts && r.artifacts->frames);
  const std::string name = file_name(r.config_id);
  // The exact frames stay, for --resume, scoring and bit-exact comparisons.
  EXPECT_EQ(*r.artifacts->frames, "frames/" + name + ".safetensors");
  const fs::path exact = dir_ / "out" / *r.artifacts->frames;
  ASSERT_TRUE(fs::exists(exact)) << exact;
  const at::Tensor frames = load_frames(exact.string());
  ASSERT_EQ(frames.sizes(), (at::IntArrayRef{5, 32, 32, 3}));
  const std::string report = read_text(dir_ / "out" / "report.md");

  if (has_opencv()) {
    ASSERT_TRUE(r.artifacts->png);
    EXPECT_EQ(*r.artifacts->png, "frames/" + name + "/");
    ASSERT_TRUE(fs::exists(dir_ / "out" / "frames" / name / "frame_00004.png"));
    EXPECT_FALSE(fs::exists(dir_ / "out" / "frames" / name / "frame_00005.png"));
    // 8-bit PNGs of the exact frames.
    EXPECT_TRUE(at::equal(load_frames((dir_ / "out" / *r.artifacts->png).string()),
                          quantize_frames(frames).to(at::kFloat) / 255.0));
    EXPECT_NE(report.find("[frames](frames/" + name + "/)"), std::string::npos) << report;
  } else {
    EXPECT_FALSE(r.artifacts->png);
    ASSERT_TRUE(r.artifacts->note);
    EXPECT_NE(r.artifacts->note->find("no OpenCV"), std::string::npos) << *r.artifacts->note;
  }
  if (video_io_available()) {
    ASSERT_TRUE(r.artifacts->video);
    const fs::path video = dir_ / "out" / *r.artifacts->video;
    ASSERT_TRUE(fs::exists(video)) << video;
    const auto info = probe_video(video.string());
    EXPECT_DOUBLE_EQ(info.fps, 24.0);  // HunyuanVideo's rate; the suite gave none
    EXPECT_EQ(load_video(video.string()).sizes(), frames.sizes());
    if (h264_encoder_available()) {
      EXPECT_EQ(*r.artifacts->video, "videos/" + name + ".mp4");
      EXPECT_EQ(info.codec, "h264");
    }
    EXPECT_NE(report.find("[video](" + *r.artifacts->video + ")"), std::string::npos) << report;
  } else {
    EXPECT_FALSE(r.artifacts->video);
    ASSERT_TRUE(r.artifacts->note);
    EXPECT_NE(r.artifacts->note->find("no FFmpeg"), std::string::npos) << *r.artifacts->note;
  }
}

TEST_F(VideoArtifactsTest, ExternalReferenceOfAnotherSizeScoresEveryConfig) {
  // The generated frames, then a reference twice their size made by repeating every pixel:
  // bilinear resizing back to 32x32 samples between equal pixels, so the baseline matches its
  // reference bit for bit (hand-derived; see FitReferenceTest).
  auto plain = suite_doc();
  plain["save_frames"] = false;
  ASSERT_EQ(run_suite(parse_suite(plain, dir_ / "suite.json"), options("plain")).ok, 1);
  // With "save_frames": false the baseline still keeps its exact frames, and nothing else.
  const auto baseline = read_results(dir_ / "plain" / "results.jsonl").at(0);
  ASSERT_TRUE(baseline.artifacts && baseline.artifacts->frames);
  EXPECT_FALSE(baseline.artifacts->png || baseline.artifacts->video);
  const at::Tensor generated = load_frames((dir_ / "plain" / *baseline.artifacts->frames).string());
  const at::Tensor enlarged = generated.repeat_interleave(2, 1).repeat_interleave(2, 2);
  save_safetensors((dir_ / "ref.safetensors").string(),
                   {{"video", enlarged}, {"other", at::zeros({1})}});

  // Without a resize the run stops before any config, naming both shapes.
  auto doc = suite_doc({{"cache", {"none", "fbcache"}}, {"cache_threshold", 10.0}});
  doc["reference"] = "ref.safetensors:video";
  doc["fps"] = 8;
  try {
    run_suite(parse_suite(doc, dir_ / "suite.json"), options("strict"));
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("/reference"), std::string::npos) << message;
    EXPECT_NE(message.find("[5, 64, 64, 3]"), std::string::npos) << message;
    EXPECT_NE(message.find("[5, 32, 32, 3]"), std::string::npos) << message;
    EXPECT_NE(message.find("reference_resize"), std::string::npos) << message;
  }
  EXPECT_FALSE(fs::exists(dir_ / "strict" / "results.jsonl") &&
               !read_results(dir_ / "strict" / "results.jsonl").empty());

  doc["reference_resize"] = true;
  const auto summary = run_suite(parse_suite(doc, dir_ / "suite.json"), options("out"));
  ASSERT_EQ(summary.ok, 2);
  const auto records = read_results(dir_ / "out" / "results.jsonl");
  ASSERT_EQ(records.size(), 2u);
  const std::string reference = (dir_ / "ref.safetensors").string() + ":video";
  for (const auto& r : records) {
    ASSERT_EQ(r.status, RunStatus::kOk) << r.reason;
    ASSERT_TRUE(r.quality) << r.config_id;
    EXPECT_EQ(r.quality->reference, reference);
  }
  ASSERT_TRUE(records[0].baseline);
  EXPECT_TRUE(records[0].quality->identical);
  // FBCache at threshold 10 reuses every step after the first, so it differs from its reference.
  EXPECT_GT(records[1].cache->reused_steps, 0);
  EXPECT_FALSE(records[1].quality->identical);
  ASSERT_TRUE(records[1].quality->psnr_mean);
  EXPECT_TRUE(std::isfinite(*records[1].quality->psnr_mean));
  EXPECT_NE(read_text(dir_ / "out" / "report.md").find("Quality reference: `" + reference + "`"),
            std::string::npos);
  if (video_io_available()) {
    ASSERT_TRUE(records[1].artifacts && records[1].artifacts->video);
    EXPECT_DOUBLE_EQ(probe_video((dir_ / "out" / *records[1].artifacts->video).string()).fps, 8.0);
  }
}

TEST(ArtifactsRecordTest, NoteSurvivesTheRecord) {
  ResultRecord r;
  r.suite = "s";
  r.config_id = "c";
  r.artifacts = ArtifactsRecord{"frames/c.safetensors", std::nullopt, std::nullopt,
                                "this build has no FFmpeg: no video", "frames/c/"};
  const auto j = to_json(r);
  EXPECT_EQ(j["artifacts"]["note"], "this build has no FFmpeg: no video");
  EXPECT_EQ(j["artifacts"]["png"], "frames/c/");
  const auto back = record_from_json(j);
  ASSERT_TRUE(back.artifacts && back.artifacts->note && back.artifacts->png);
  EXPECT_EQ(*back.artifacts->note, *r.artifacts->note);
  EXPECT_EQ(*back.artifacts->png, "frames/c/");
  EXPECT_FALSE(back.artifacts->video);
}

}  // namespace
}  // namespace ditbench
