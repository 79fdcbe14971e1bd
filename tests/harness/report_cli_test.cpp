// `ditbench report`: the Markdown and CSV reports of one or more results files, to stdout or a
// file, and bad inputs exiting 2.
#include <gtest/gtest.h>

#include "harness/cli_test_util.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "harness/cli.h"
#include "harness/record.h"
#include "reports/markdown.h"

namespace ditbench {
namespace {
namespace fs = std::filesystem;

class ReportCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ditbench_report_cli_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { std::system(("rm -rf '" + dir_.string() + "'").c_str()); }

  static ResultRecord record(const std::string& suite, const std::string& id, bool baseline,
                             double e2e, std::optional<double> threshold) {
    ResultRecord r;
    r.suite = suite;
    r.config_id = id;
    r.baseline = baseline;
    r.config = {{"model", "hunyuan-video"}, {"weights", "random"}};
    TimingsRecord t;
    t.e2e = summarize({e2e});
    t.stages["denoise"] = summarize({e2e * 0.8});
    r.timings = t;
    if (threshold) r.cache = CacheRecord{"fbcache", threshold, 3, 1, {}, std::nullopt};
    return r;
  }
  std::string write(const std::string& name, const std::vector<ResultRecord>& records) {
    ResultsWriter writer(dir_ / name);
    for (const auto& r : records) writer.append(r);
    return writer.path().string();
  }
  static int run_cli(std::vector<std::string> args, std::string* out = nullptr) {
    return testing::run_cli(std::move(args), out);
  }
  fs::path dir_;
};

TEST_F(ReportCliTest, MarkdownOfSeveralFilesAndCsvToAFile) {
  const std::vector<ResultRecord> a = {record("a", "cache=none", true, 10, std::nullopt),
                                       record("a", "cache=fbcache/thr=0.1", false, 5, 0.1)};
  const std::vector<ResultRecord> b = {record("b", "cache=none", true, 4, std::nullopt)};
  const std::string file_a = write("a", a), file_b = write("b", b);
  std::string md;
  ASSERT_EQ(run_cli({"report", file_a, file_b}, &md), 0);
  std::vector<ResultRecord> both = read_results(file_a);
  for (auto& r : read_results(file_b)) both.push_back(r);
  EXPECT_EQ(md, markdown_report(both));
  // The speedup table, the stage table and the sweep section of the fbcache config.
  EXPECT_NE(md.find("| `cache=fbcache/thr=0.1` | ok | 5.000 | 2.00x |"), std::string::npos) << md;
  EXPECT_NE(md.find("## Stage medians (s)"), std::string::npos);
  EXPECT_NE(md.find("## Cache threshold sweep"), std::string::npos);

  const std::string csv_file = (dir_ / "report.csv").string();
  std::string stdout_text;
  ASSERT_EQ(run_cli({"report", file_a, "--format", "csv", "--out", csv_file}, &stdout_text), 0);
  EXPECT_EQ(stdout_text, "");
  std::ifstream in(csv_file);
  std::stringstream csv;
  csv << in.rdbuf();
  EXPECT_EQ(csv.str(), csv_report(read_results(file_a)));
}

TEST_F(ReportCliTest, BadInputsExit2) {
  const std::string file = write("a", {record("a", "cache=none", true, 10, std::nullopt)});
  EXPECT_EQ(run_cli({"report", file, "--format", "pdf"}), 2);
  EXPECT_EQ(run_cli({"report", (dir_ / "missing.jsonl").string()}), 2);
  EXPECT_EQ(run_cli({"report"}), 2);
  EXPECT_EQ(run_cli({"report", file, "--out", (dir_ / "no" / "such" / "dir.md").string()}), 2);
}

}  // namespace
}  // namespace ditbench
