// Same seed, same build, same device: the baseline's frames are bit-identical run after run, in
// separate processes as a user would run them; and every record says whether deterministic
// algorithms were on, since on a GPU that decides whether the same holds there.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "cli/child_process.h"
#include "harness/record.h"
#include "models/checkpoint/safetensors.h"

namespace ditbench {
namespace {
namespace fs = std::filesystem;
using ditbench::testing::ChildProcess;
using ditbench::testing::read_text;

class Reproducibility : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ditbench_repro_" + std::to_string(::getpid()));
    std::system(("rm -rf '" + dir_.string() + "'").c_str());
    fs::create_directories(dir_);
    const nlohmann::json suite = {{"name", "repro"},
                                  {"model", "hunyuan-video"},
                                  {"preset", "hunyuan-video-tiny"},
                                  {"dtype", "float32"},
                                  {"device", "cpu"},
                                  {"height", 32},
                                  {"width", 48},
                                  {"frames", 5},
                                  {"steps", 4},
                                  {"seed", 1234},
                                  {"warmup", 0},
                                  {"repeats", 1},
                                  {"prompt", {{"tokens", 7}, {"valid", 5}}}};
    std::ofstream(dir_ / "suite.json") << suite.dump(1);
  }
  void TearDown() override { std::system(("rm -rf '" + dir_.string() + "'").c_str()); }

  // Runs the suite into dir_/<name> and returns its single record.
  ResultRecord run(const std::string& name) {
    fs::create_directories(dir_ / (name + "_cwd"));
    ChildProcess child({"run", (dir_ / "suite.json").string(), "--out", (dir_ / name).string()},
                       dir_ / (name + "_cwd"));
    EXPECT_TRUE(child.wait(std::chrono::seconds(300)));
    EXPECT_EQ(child.exit_code(), 0) << child.stderr_text();
    auto records = read_results(dir_ / name / "results.jsonl");
    EXPECT_EQ(records.size(), 1u);
    return records.empty() ? ResultRecord{} : records.front();
  }
  fs::path dir_;
};

TEST_F(Reproducibility, SameSeedGivesBitIdenticalBaselineFramesAcrossRuns) {
  const auto first = run("a");
  const auto second = run("b");
  ASSERT_EQ(first.status, RunStatus::kOk) << first.reason;
  ASSERT_EQ(second.status, RunStatus::kOk) << second.reason;
  ASSERT_TRUE(first.artifacts && first.artifacts->frames);
  ASSERT_TRUE(second.artifacts && second.artifacts->frames);
  const auto a = load_safetensors((dir_ / "a" / *first.artifacts->frames).string());
  const auto b = load_safetensors((dir_ / "b" / *second.artifacts->frames).string());
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  const at::Tensor& frames_a = a.begin()->second;
  const at::Tensor& frames_b = b.begin()->second;
  // [F, H, W, 3]: the decoded video of the suite's size, not an empty or constant tensor.
  EXPECT_EQ(frames_a.sizes(), at::IntArrayRef({5, 32, 48, 3}));
  EXPECT_GT(frames_a.std().item<double>(), 0.0);
  EXPECT_TRUE(at::equal(frames_a, frames_b))
      << "max |a - b| = " << (frames_a - frames_b).abs().max().item<double>();
  // Bit-identical down to the file: same header, same bytes.
  EXPECT_EQ(read_text(dir_ / "a" / *first.artifacts->frames),
            read_text(dir_ / "b" / *second.artifacts->frames));
}

TEST_F(Reproducibility, RecordsWhetherDeterministicAlgorithmsWereOn) {
  const auto record = run("a");
  ASSERT_TRUE(record.env.contains("deterministic")) << record.env.dump();
  EXPECT_TRUE(record.env["deterministic"].is_boolean()) << record.env.dump();
  EXPECT_TRUE(record.env.contains("device"));
}

}  // namespace
}  // namespace ditbench
