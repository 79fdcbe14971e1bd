// Interrupted sweeps through the real binary: `ditbench run` on a multi-config CPU suite is killed
// (SIGKILL) or asked to stop (SIGINT, SIGTERM) after its first record is on disk. results.jsonl
// must stay valid, lose at most the config in flight, and `--resume` must finish the rest so that
// every config ends with exactly one ok record.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cli/child_process.h"
#include "harness/record.h"
#include "harness/suite.h"

namespace ditbench {
namespace {
namespace fs = std::filesystem;
using ditbench::testing::ChildProcess;
using ditbench::testing::lines_of;
using ditbench::testing::read_text;

// Seven configs of the tiny preset with random weights, each a fraction of a second on the CPU.
nlohmann::json sweep_suite() {
  return {{"name", "interrupt"},
          {"model", "hunyuan-video"},
          {"preset", "hunyuan-video-tiny"},
          {"dtype", "float32"},
          {"device", "cpu"},
          {"height", 32},
          {"width", 32},
          {"frames", 5},
          {"steps", 6},
          {"warmup", 0},
          {"repeats", 1},
          {"prompt", {{"tokens", 6}, {"valid", 4}}},
          {"axes",
           {{"cache", {"none", "fbcache", "teacache"}}, {"cache_threshold", {0.05, 0.1, 0.2}}}}};
}

class InterruptedSweep : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ditbench_interrupt_" + std::to_string(::getpid()) + "_" + std::to_string(GetParam()));
    std::system(("rm -rf '" + dir_.string() + "'").c_str());
    fs::create_directories(dir_ / "first");
    fs::create_directories(dir_ / "resume");
    std::ofstream(dir_ / "suite.json") << sweep_suite().dump(1);
    for (const auto& c : expand_matrix(parse_suite(sweep_suite(), dir_ / "suite.json")))
      all_ids_.push_back(c.id);
  }
  void TearDown() override { std::system(("rm -rf '" + dir_.string() + "'").c_str()); }

  std::vector<std::string> run_args(bool resume) const {
    std::vector<std::string> args = {"run", (dir_ / "suite.json").string(), "--out",
                                     (dir_ / "out").string()};
    if (resume) args.push_back("--resume");
    return args;
  }
  fs::path results() const { return dir_ / "out" / "results.jsonl"; }

  // Every line of results.jsonl as a record; fails the test on a line that does not parse.
  std::vector<ResultRecord> parse_every_line() const {
    const std::string text = read_text(results());
    EXPECT_TRUE(text.empty() || text.back() == '\n') << "results.jsonl ends in a partial line";
    std::vector<ResultRecord> records;
    for (const auto& line : lines_of(text)) {
      try {
        records.push_back(record_from_json(nlohmann::json::parse(line)));
      } catch (const std::exception& e) {
        ADD_FAILURE() << "unparsable line in results.jsonl (" << e.what() << "):\n" << line;
      }
    }
    return records;
  }

  fs::path dir_;
  std::vector<std::string> all_ids_;
};

// Ids the runner reported as finished on stderr ("[n/N] <id>: ok, ..."), which it prints only
// after the config's record was written.
std::vector<std::string> reported_ids(const std::string& stderr_text) {
  std::vector<std::string> ids;
  for (const auto& line : lines_of(stderr_text)) {
    if (line.empty() || line[0] != '[') continue;
    const auto start = line.find("] ");
    const auto end = line.find(": ", start);
    if (start != std::string::npos && end != std::string::npos)
      ids.push_back(line.substr(start + 2, end - start - 2));
  }
  return ids;
}

TEST_P(InterruptedSweep, LosesAtMostTheConfigInFlightAndResumeFinishes) {
  const int sig = GetParam();
  ASSERT_EQ(all_ids_.size(), 7u);
  {
    ChildProcess child(run_args(false), dir_ / "first");
    // Wait for the first complete record, then interrupt.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
    while (read_text(results()).find('\n') == std::string::npos) {
      ASSERT_TRUE(child.running()) << "ditbench exited before its first record:\n"
                                   << child.stderr_text();
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no record after 180 s";
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    child.signal(sig);
    const auto signalled = std::chrono::steady_clock::now();
    ASSERT_TRUE(child.wait(std::chrono::seconds(120))) << "ditbench ignored signal " << sig;
    const double seconds_to_exit =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - signalled).count();
    if (sig == SIGKILL) {
      EXPECT_EQ(child.term_signal(), SIGKILL);
    } else {
      // Stopped between steps: the exit status of an interrupted sweep, and the summary line.
      EXPECT_EQ(child.exit_code(), 130) << child.stderr_text();
      EXPECT_NE(child.stderr_text().find("results in"), std::string::npos) << child.stderr_text();
      // "Promptly": a step of this suite takes milliseconds; a sweep that ran on to its end
      // would not be interrupted at all (checked below), so this only catches a hang.
      EXPECT_LT(seconds_to_exit, 60.0);
    }

    const auto records = parse_every_line();
    ASSERT_FALSE(records.empty());
    std::set<std::string> written;
    int ok = 0;
    for (size_t i = 0; i < records.size(); ++i) {
      const auto& r = records[i];
      EXPECT_TRUE(written.insert(r.config_id).second) << "written twice: " << r.config_id;
      if (r.status == RunStatus::kOk) {
        ++ok;
        continue;
      }
      // Only the config in flight may be recorded otherwise, as interrupted, and only last.
      EXPECT_NE(sig, SIGKILL) << r.config_id << ": " << r.reason;
      EXPECT_EQ(r.status, RunStatus::kFailed);
      EXPECT_NE(r.reason.find("interrupted"), std::string::npos) << r.reason;
      EXPECT_EQ(i + 1, records.size()) << "a record after the interrupted one";
    }
    EXPECT_LT(ok, 7) << "the sweep ended before the signal: nothing was interrupted";
    // Every config the runner reported as done is on disk: only the one in flight can be lost.
    const auto reported = reported_ids(child.stderr_text());
    for (const auto& id : reported) EXPECT_TRUE(written.count(id)) << "lost finished config " << id;
    EXPECT_LE(records.size(), reported.size() + 1);
  }

  ChildProcess resume(run_args(true), dir_ / "resume");
  ASSERT_TRUE(resume.wait(std::chrono::seconds(300)));
  ASSERT_EQ(resume.exit_code(), 0) << resume.stderr_text();
  EXPECT_NE(resume.stderr_text().find("already done"), std::string::npos) << resume.stderr_text();

  const auto records = parse_every_line();
  std::map<std::string, int> ok_count, interrupted_count;
  for (const auto& r : records) {
    if (r.status == RunStatus::kOk) {
      ++ok_count[r.config_id];
      // Resumed configs are still scored against the baseline's stored frames.
      EXPECT_TRUE(r.quality.has_value()) << r.config_id;
    } else {
      EXPECT_NE(r.reason.find("interrupted"), std::string::npos) << r.reason;
      ++interrupted_count[r.config_id];
    }
  }
  for (const auto& id : all_ids_) EXPECT_EQ(ok_count[id], 1) << id;
  EXPECT_EQ(ok_count.size(), all_ids_.size());
  if (sig == SIGKILL) EXPECT_EQ(records.size(), all_ids_.size());
  EXPECT_LE(records.size(), all_ids_.size() + 1);
}

INSTANTIATE_TEST_SUITE_P(Signals, InterruptedSweep, ::testing::Values(SIGKILL, SIGINT, SIGTERM),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(info.param == SIGKILL  ? "SIGKILL"
                                              : info.param == SIGINT ? "SIGINT"
                                                                     : "SIGTERM");
                         });

}  // namespace
}  // namespace ditbench
