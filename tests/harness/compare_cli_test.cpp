// `ditbench compare BASE NEW` end to end on result files written here: exit status 0 clean,
// 1 regression, 2 bad input, and the summary file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "harness/cli.h"
#include "harness/record.h"

namespace ditbench {
namespace {
namespace fs = std::filesystem;

class CompareCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ditbench_compare_cli_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::system(("rm -rf '" + dir_.string() + "'").c_str());
    fs::create_directories(dir_);
  }
  void TearDown() override { std::system(("rm -rf '" + dir_.string() + "'").c_str()); }

  static ResultRecord record(const std::string& id, std::vector<double> e2e) {
    ResultRecord r;
    r.suite = "ci-regression";
    r.config_id = id;
    r.env = {{"gpu", "NVIDIA H100 80GB HBM3"}, {"torch", "2.11.0"}, {"git", "abc"}};
    TimingsRecord t;
    t.e2e = summarize(std::move(e2e));
    r.timings = t;
    return r;
  }

  std::string write(const std::string& name, const std::vector<ResultRecord>& records) {
    const fs::path path = dir_ / name;
    std::ofstream out(path);
    for (const auto& r : records) out << to_json(r).dump() << "\n";
    return path.string();
  }

  int compare(std::vector<std::string> args) {
    args.insert(args.begin(), {"ditbench", "compare"});
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    return cli_main(static_cast<int>(argv.size()), argv.data());
  }

  std::string read(const std::string& name) {
    std::ifstream in(dir_ / name);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  fs::path dir_;
};

const std::vector<double> kFive = {1.00, 1.01, 0.99, 1.02, 1.005};
const std::vector<double> kFiveSlower = {1.20, 1.212, 1.188, 1.224, 1.206};  // 20% slower

TEST_F(CompareCli, CleanRunExitsZeroAndWritesTheSummary) {
  auto base = write("base.jsonl", {record("a", kFive), record("b", kFive)});
  auto now = write("new.jsonl", {record("a", kFive), record("b", {1.01, 1.0, 0.995, 1.02, 1.0})});
  const std::string summary = (dir_ / "summary.md").string();
  EXPECT_EQ(compare({base, now, "--summary", summary}), 0);
  const std::string text = read("summary.md");
  EXPECT_NE(text.find("no regression"), std::string::npos);
  EXPECT_NE(text.find("| `b` |"), std::string::npos);
}

TEST_F(CompareCli, SlowdownExitsOneAndThresholdIsAPercentage) {
  auto base = write("base.jsonl", {record("a", kFive)});
  auto now = write("new.jsonl", {record("a", kFiveSlower)});
  EXPECT_EQ(compare({base, now, "--summary", (dir_ / "s.md").string()}), 1);
  EXPECT_NE(read("s.md").find("REGRESSION"), std::string::npos);
  // 20% slower passes a 25% threshold, written either way.
  EXPECT_EQ(compare({base, now, "--max-slowdown", "25", "--summary", (dir_ / "s.md").string()}), 0);
  EXPECT_EQ(compare({base, now, "--max-slowdown", "25%", "--summary", (dir_ / "s.md").string()}),
            0);
}

TEST_F(CompareCli, QualityThresholdOptions) {
  ResultRecord b = record("fb", kFive), n = record("fb", kFive);
  QualityRecord q;
  q.psnr_mean = q.psnr_min = 36.0;
  q.ssim_mean = q.ssim_min = 0.97;
  b.quality = q;
  q.psnr_mean = q.psnr_min = 33.0;
  n.quality = q;
  auto base = write("base.jsonl", {b});
  auto now = write("new.jsonl", {n});
  const std::string summary = (dir_ / "s.md").string();
  EXPECT_EQ(compare({base, now, "--summary", summary}), 0);  // no quality threshold given
  EXPECT_EQ(compare({base, now, "--max-psnr-drop", "2", "--summary", summary}), 1);
  EXPECT_EQ(compare({base, now, "--max-psnr-drop", "4", "--summary", summary}), 0);
  EXPECT_EQ(compare({base, now, "--min-psnr", "34", "--summary", summary}), 1);
}

TEST_F(CompareCli, BadInputExitsTwo) {
  auto good = write("good.jsonl", {record("a", kFive)});
  const std::string summary = (dir_ / "s.md").string();
  std::ofstream(dir_ / "garbage.jsonl") << "{\"schema\": \"ditbench.result/1\"}\nnot json\n";
  EXPECT_EQ(compare({good, (dir_ / "garbage.jsonl").string(), "--summary", summary}), 2);
  EXPECT_EQ(compare({(dir_ / "missing.jsonl").string(), good, "--summary", summary}), 2);
  std::ofstream(dir_ / "empty.jsonl") << "";
  EXPECT_EQ(compare({good, (dir_ / "empty.jsonl").string(), "--summary", summary}), 2);
  EXPECT_EQ(compare({good, good, "--max-slowdown", "five", "--summary", summary}), 2);
  EXPECT_EQ(compare({good}), 2);  // NEW missing
}

}  // namespace
}  // namespace ditbench
