// `ditbench tune`: the decision replay that settles thresholds without running them (hand-derived
// decisions), the search on the trained tiny-shapes model on the CPU, and bad inputs exiting 2.
#include "harness/tune.h"

#include <gtest/gtest.h>

#include "harness/cli_test_util.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "harness/cli.h"
#include "test_util.h"

namespace ditbench {
namespace {
namespace fs = std::filesystem;

CacheRecord recorded(const std::string& policy, const std::vector<std::optional<double>>& signals,
                     const std::vector<bool>& reused) {
  CacheRecord c;
  c.policy = policy;
  for (size_t t = 0; t < signals.size(); ++t)
    c.per_step.push_back({static_cast<int>(t), signals[t], reused[t], std::nullopt, std::nullopt});
  return c;
}

TEST(ReplayCacheDecisions, FirstBlockCacheComparesEachSignal) {
  const CacheRecord run = recorded("fbcache", {std::nullopt, 0.05, 0.2, 0.03, 0.04, 0.01},
                                   {false, false, false, false, false, false});
  const std::array<double, 5> unused{};
  EXPECT_EQ(replay_cache_decisions("fbcache", run, 0.045, {}, unused),
            (std::vector<bool>{false, false, false, true, true, true}));
  EXPECT_EQ(replay_cache_decisions("fbcache", run, 0.0, {}, unused), std::vector<bool>(6, false));
  // Warmup to step 4, at most 2 reuses in a row, at most 2 in all.
  SuiteCacheOptions limits;
  limits.warmup_steps = 4;
  EXPECT_EQ(replay_cache_decisions("fbcache", run, 1.0, limits, unused),
            (std::vector<bool>{false, false, false, false, true, true}));
  limits = {};
  limits.max_consecutive_cached = 2;
  EXPECT_EQ(replay_cache_decisions("fbcache", run, 1.0, limits, unused),
            (std::vector<bool>{false, true, true, false, true, true}));
  limits = {};
  limits.max_cached_steps = 2;
  EXPECT_EQ(replay_cache_decisions("fbcache", run, 1.0, limits, unused),
            (std::vector<bool>{false, true, true, false, false, false}));
}

TEST(ReplayCacheDecisions, TeaCacheAccumulatesRescaledSignals) {
  // poly(x) = 2x: increments 0.1, 0.1, 0.3, 0.05, 0.05, (last step computes).
  const CacheRecord run = recorded("teacache", {std::nullopt, 0.05, 0.05, 0.15, 0.025, 0.025, 0.5},
                                   std::vector<bool>(7, false));
  const std::array<double, 5> twice = {0, 0, 0, 2, 0};
  // Threshold 0.25: acc 0.1 reuse, 0.2 reuse, 0.5 compute (reset), 0.05 reuse, 0.1 reuse, last.
  EXPECT_EQ(replay_cache_decisions("teacache", run, 0.25, {}, twice),
            (std::vector<bool>{false, true, true, false, true, true, false}));
  // Threshold 0.15: 0.1 reuse, 0.2 compute, 0.3 compute, 0.05 reuse, 0.1 reuse.
  EXPECT_EQ(replay_cache_decisions("teacache", run, 0.15, {}, twice),
            (std::vector<bool>{false, true, false, false, true, true, false}));
  SuiteCacheOptions limits;
  limits.warmup_steps = 3;  // TeaCache's ret_steps: steps 0..2 compute
  EXPECT_EQ(replay_cache_decisions("teacache", run, 0.25, limits, twice),
            (std::vector<bool>{false, false, false, false, true, true, false}));
}

class TuneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ditbench_tune_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    const std::string ckpt = testing::source_dir() + "/assets/tiny-shapes";
    doc_ = {{"name", "tune-tiny-shapes"},
            {"model", "hunyuan-video"},
            {"checkpoint", ckpt},
            {"dtype", "float32"},
            {"device", "cpu"},
            {"height", 64},
            {"width", 64},
            {"frames", 5},
            {"steps", 10},
            {"prompt", ckpt + "/prompt_1.safetensors"},
            {"warmup", 0},
            {"repeats", 1},
            {"axes", {{"cache", {"none", "fbcache"}}}}};
    std::ofstream(dir_ / "suite.json") << doc_.dump(2);
  }
  void TearDown() override { std::system(("rm -rf '" + dir_.string() + "'").c_str()); }

  static int run_cli(std::vector<std::string> args, std::string* out = nullptr) {
    return testing::run_cli(std::move(args), out);
  }

  fs::path dir_;
  nlohmann::json doc_;
};

TEST_F(TuneTest, ChosenThresholdMeetsTheFloorAndALargerOneViolatesIt) {
  // On this model, 10 steps at 64x64: FBCache 0.12 and 0.24 keep PSNR above 30 dB (about 45 and
  // 34 dB), 0.48 falls to about 24 dB; three runs find that boundary.
  const double floor_db = 30;
  TuneOptions options;
  options.min_psnr = floor_db;
  options.out_dir = dir_ / "out";
  options.start = 0.12;
  options.max_evaluations = 3;
  std::ostringstream log;
  const TuneResult result =
      tune_cache_threshold(parse_suite(doc_, dir_ / "suite.json"), options, log);
  SCOPED_TRACE(log.str());
  EXPECT_EQ(result.policy, "fbcache");
  ASSERT_TRUE(result.chosen);
  const ResultRecord& chosen = result.records[*result.chosen];
  ASSERT_TRUE(chosen.quality && chosen.cache);
  EXPECT_GT(chosen.cache->reused_steps, 0);
  EXPECT_TRUE(chosen.quality->identical || *chosen.quality->psnr_mean >= floor_db);
  // Every evaluated run that reused more steps (a larger threshold) falls below the floor, and the
  // search found at least one.
  int faster_runs = 0;
  for (const auto& r : result.records) {
    if (r.cache->reused_steps <= chosen.cache->reused_steps) continue;
    ++faster_runs;
    EXPECT_GT(*r.cache->threshold, *chosen.cache->threshold) << r.config_id;
    ASSERT_TRUE(r.quality->psnr_mean) << r.config_id;
    EXPECT_LT(*r.quality->psnr_mean, floor_db) << r.config_id;
  }
  EXPECT_GT(faster_runs, 0);
  // Thresholds settled without running repeat a run's decisions; every run made is on disk with
  // the baseline.
  for (const auto& step : result.steps) EXPECT_LT(step.record, result.records.size());
  const auto on_disk = read_results(dir_ / "out" / "results.jsonl");
  EXPECT_EQ(on_disk.size(), result.records.size() + 1);
  EXPECT_TRUE(on_disk[0].baseline);
  EXPECT_LE(static_cast<int>(result.records.size()), 1 + options.max_evaluations);
}

TEST_F(TuneTest, BadInputsExit2) {
  const std::string suite = (dir_ / "suite.json").string();
  const std::string out = (dir_ / "out").string();
  EXPECT_EQ(run_cli({"tune", suite, "--out", out}), 2);  // no floor
  EXPECT_EQ(run_cli({"tune", suite, "--min-psnr", "30", "--min-ssim", "0.9", "--out", out}), 2);
  EXPECT_EQ(run_cli({"tune", suite, "--min-psnr", "30", "--cache", "none", "--out", out}), 2);
  EXPECT_EQ(run_cli({"tune", suite, "--min-ssim", "1.5", "--out", out}), 2);
  EXPECT_EQ(run_cli({"tune", (dir_ / "missing.json").string(), "--min-psnr", "30"}), 2);
  fs::create_directories(dir_ / "out");
  std::ofstream(dir_ / "out" / "results.jsonl") << "";
  EXPECT_EQ(run_cli({"tune", suite, "--min-psnr", "30", "--out", out}), 2);  // would mix runs
}

}  // namespace
}  // namespace ditbench
