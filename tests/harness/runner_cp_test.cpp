// Context parallelism through the runner on the CPU: gpus = N runs N in-process rank threads.
// A CP generation must give the single-rank frames, every rank must take the single-rank cache
// decisions, impossible layouts are recorded skips with their reason, and a failing rank is a
// failed record naming it while the sweep goes on.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>

#include "harness/record.h"
#include "harness/runner.h"
#include "harness/suite.h"
#include "metrics/frames.h"
#include "parallel/tiny_cp_suite.h"
#include "test_util.h"

namespace ditbench {
namespace {
namespace fs = std::filesystem;
using ditbench::testing::rel_error;

class RunnerCpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ditbench_runner_cp_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { std::system(("rm -rf '" + dir_.string() + "'").c_str()); }

  Suite suite(nlohmann::json axes, int steps = 4) {
    return parse_suite(testing::tiny_cp_suite("cp", axes, steps), dir_ / "suite.json");
  }
  RunOptions options() {
    RunOptions o;
    o.out_dir = dir_ / "out";
    o.progress = false;
    return o;
  }
  std::vector<ResultRecord> records() { return read_results(dir_ / "out" / "results.jsonl"); }
  at::Tensor frames_of(const ResultRecord& r) {
    EXPECT_TRUE(r.artifacts && r.artifacts->frames) << r.config_id;
    return load_frames((dir_ / "out" / *r.artifacts->frames).string());
  }
  fs::path dir_;
};

std::string axis(const ResultRecord& r, const std::string& name) {
  return r.config["axes"][name].dump();
}

TEST_F(RunnerCpTest, EveryModeOn2And4RanksGivesTheSingleRankFrames) {
  auto s = suite({{"gpus", {1, 2, 4}},
                  {"cp_mode", {"none", "ulysses", "ring", "usp"}},
                  {"ulysses_degree", {1, 2}}},
                 2);
  run_suite(s, options());
  auto all = records();
  ASSERT_FALSE(all.empty());
  ASSERT_TRUE(all[0].baseline);
  const at::Tensor baseline = frames_of(all[0]);
  std::set<std::string> ran;
  for (const auto& r : all) {
    if (r.baseline || r.status != RunStatus::kOk) continue;
    ran.insert(axis(r, "cp_mode") + "/" + axis(r, "gpus"));
    EXPECT_LE(rel_error(frames_of(r), baseline), 1e-5) << r.config_id;
    ASSERT_TRUE(r.quality) << r.config_id;
    EXPECT_TRUE(r.quality->identical || r.quality->psnr_mean.value_or(0) > 80) << r.config_id;
    ASSERT_TRUE(r.timings);
    ASSERT_TRUE(r.timings->stages.count("comm")) << r.config_id;
    EXPECT_GT(r.timings->stages.at("comm").median_s, 0) << r.config_id;
    ASSERT_TRUE(r.extra.contains("parallel"));
    EXPECT_EQ(r.extra["parallel"]["ranks"], r.config["axes"]["gpus"]);
    EXPECT_EQ(r.extra["parallel"]["send_recv"], "in_process") << r.config_id;
  }
  for (const auto& r : all) {
    EXPECT_NE(r.status, RunStatus::kFailed) << r.config_id << ": " << r.reason;
  }
  // ulysses 2, ring 2 and 4, usp 2 x 2 (and usp's one-sided layouts 1 x 2, 2 x 1 and 1 x 4);
  // ulysses 4 needs a degree axis value 4, which 2 heads could not serve anyway.
  EXPECT_EQ(ran, (std::set<std::string>{"\"ulysses\"/2", "\"ring\"/2", "\"ring\"/4", "\"usp\"/2",
                                        "\"usp\"/4"}));
}

TEST_F(RunnerCpTest, CachesTakeTheSingleRankDecisionsOnEveryRank) {
  // Thresholds high enough that both policies reuse steps on one rank.
  auto s = suite({{"gpus", {1, 4}},
                  {"cp_mode", {"none", "usp", "ring"}},
                  {"ulysses_degree", {1, 2}},
                  {"cache", {"none", "fbcache", "teacache"}},
                  {"cache_threshold", {{"fbcache", {0.6}}, {"teacache", {0.5}}}}},
                 8);
  run_suite(s, options());
  std::map<std::string, ResultRecord> single;  // cache policy -> the one-rank record
  auto all = records();
  for (const auto& r : all) {
    if (r.status == RunStatus::kOk && r.config["axes"]["gpus"] == 1) single[r.cache->policy] = r;
  }
  ASSERT_TRUE(single.count("fbcache") && single.count("teacache"));
  int compared = 0;
  for (const auto& r : all) {
    EXPECT_NE(r.status, RunStatus::kFailed) << r.config_id << ": " << r.reason;
    if (r.status != RunStatus::kOk || r.config["axes"]["gpus"] == 1 || r.cache->policy == "none")
      continue;
    const auto& one = single.at(r.cache->policy);
    std::string signals;
    for (const auto& st : one.cache->per_step)
      signals += (st.signal ? std::to_string(*st.signal) : std::string("null")) + "/" +
                 (st.accumulated ? std::to_string(*st.accumulated) : std::string("-")) + " ";
    EXPECT_GT(one.cache->reused_steps, 0)
        << "threshold never reuses: " << one.config_id << " signals " << signals;
    ASSERT_EQ(r.cache->per_step.size(), one.cache->per_step.size());
    for (size_t i = 0; i < r.cache->per_step.size(); ++i) {
      EXPECT_EQ(r.cache->per_step[i].reused, one.cache->per_step[i].reused)
          << r.config_id << " step " << i;
      if (one.cache->per_step[i].signal) {
        ASSERT_TRUE(r.cache->per_step[i].signal);
        EXPECT_NEAR(*r.cache->per_step[i].signal, *one.cache->per_step[i].signal,
                    1e-5 * std::abs(*one.cache->per_step[i].signal))
            << r.config_id << " step " << i;
      }
    }
    EXPECT_LE(rel_error(frames_of(r), frames_of(one)), 1e-5) << r.config_id;
    EXPECT_EQ(r.extra["parallel"]["cache_decisions_agree"], true);
    ++compared;
  }
  // {usp 2 x 2, usp 1 x 4, ring 4} x {fbcache, teacache}
  EXPECT_EQ(compared, 6);
}

// The record of the config run with these axis values (gpus and cp_mode).
const ResultRecord* find(const std::vector<ResultRecord>& all, int gpus, const std::string& cp) {
  for (const auto& r : all) {
    if (r.config["axes"]["gpus"] == gpus && r.config["axes"]["cp_mode"] == cp) return &r;
  }
  return nullptr;
}

TEST_F(RunnerCpTest, HeadsNotDivisibleByTheUlyssesDegreeIsARecordedSkip) {
  auto s = suite({{"gpus", {1, 4}}, {"cp_mode", {"none", "ulysses"}}}, 1);
  run_suite(s, options());
  auto all = records();
  const ResultRecord* ulysses4 = find(all, 4, "ulysses");
  ASSERT_TRUE(ulysses4);
  EXPECT_EQ(ulysses4->status, RunStatus::kSkipped);
  EXPECT_EQ(ulysses4->reason, "ulysses degree 4 does not divide 2 heads");
}

TEST_F(RunnerCpTest, AFailingRankIsAFailedRecordNamingItAndTheNextConfigRuns) {
  auto s = suite({{"gpus", {1, 2}}, {"cp_mode", {"none", "ulysses", "ring"}}}, 2);
  auto o = options();
  o.rank_hook = [](const RunConfig& c, int rank) {
    if (c.axes.cp_mode == "ulysses" && rank == 1) throw std::runtime_error("injected fault");
  };
  auto summary = run_suite(s, o);
  EXPECT_EQ(summary.failed, 1);
  EXPECT_EQ(summary.ok, 2);
  auto all = records();
  const ResultRecord* ulysses = find(all, 2, "ulysses");
  const ResultRecord* ring = find(all, 2, "ring");
  ASSERT_TRUE(ulysses && ring);
  EXPECT_LT(ulysses, ring);  // the failed config ran first, the sweep went on
  EXPECT_EQ(ulysses->status, RunStatus::kFailed);
  EXPECT_EQ(ulysses->reason, "rank 1: injected fault");
  EXPECT_EQ(ring->status, RunStatus::kOk) << ring->reason;
}

TEST_F(RunnerCpTest, CommunicationTimeIsRecordedPerStepUnderCpAndAbsentOnOneRank) {
  nlohmann::json axes = {{"gpus", {1, 2}}, {"cp_mode", {"none", "ring"}}};
  Suite s = suite(axes, 3);
  s.settings.repeats = 2;
  run_suite(s, options());
  auto all = records();
  const ResultRecord* one = find(all, 1, "none");
  const ResultRecord* ring = find(all, 2, "ring");
  ASSERT_TRUE(one && ring);
  ASSERT_EQ(ring->status, RunStatus::kOk) << ring->reason;
  ASSERT_TRUE(one->timings && ring->timings);
  EXPECT_TRUE(one->timings->comm_steps_s.empty());
  EXPECT_FALSE(one->timings->stages.count("comm"));
  // Two repeats of three steps, each step's ring passes K/V: every step communicated, and the
  // steps' sum stays within the generation's total (which adds what ran outside the steps).
  const auto& per_step = ring->timings->comm_steps_s;
  ASSERT_EQ(per_step.size(), 2u);
  const auto& totals = ring->timings->stages.at("comm").samples_s;
  ASSERT_EQ(totals.size(), 2u);
  for (size_t r = 0; r < per_step.size(); ++r) {
    ASSERT_EQ(per_step[r].size(), ring->timings->steps_s.at(r).size());
    ASSERT_EQ(per_step[r].size(), 3u);
    double sum = 0;
    for (size_t i = 0; i < per_step[r].size(); ++i) {
      EXPECT_GT(per_step[r][i], 0) << "repeat " << r << " step " << i;
      EXPECT_LE(per_step[r][i], ring->timings->steps_s[r][i]) << "repeat " << r << " step " << i;
      sum += per_step[r][i];
    }
    EXPECT_LE(sum, totals[r] * (1 + 1e-9)) << "repeat " << r;
  }
  // The report's stage table shows the median per step.
  std::ifstream report(dir_ / "out" / "report.md");
  std::stringstream text;
  text << report.rdbuf();
  EXPECT_NE(text.str().find("| comm | comm/step |"), std::string::npos) << text.str();
}

TEST_F(RunnerCpTest, GpusOptionReplacesTheMultiGpuValuesAndKeepsTheBaseline) {
  auto s = suite({{"gpus", {1, 2}}, {"cp_mode", {"none", "ring"}}}, 1);
  auto o = options();
  o.gpus = 3;
  run_suite(s, o);
  auto all = records();
  EXPECT_FALSE(find(all, 2, "ring"));
  const ResultRecord* ring3 = find(all, 3, "ring");
  ASSERT_TRUE(ring3);
  EXPECT_EQ(ring3->status, RunStatus::kOk) << ring3->reason;
  EXPECT_EQ(ring3->extra["parallel"]["ranks"], 3);
  ASSERT_TRUE(find(all, 1, "none"));
  EXPECT_TRUE(find(all, 1, "none")->baseline);
}

}  // namespace
}  // namespace ditbench
