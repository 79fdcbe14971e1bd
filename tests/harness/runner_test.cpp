// The run protocol end to end on the CPU with the tiny preset: records, resume, skips, failures,
// and the threshold-0 bit-exactness of a cache through the whole pipeline.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "harness/record.h"
#include "harness/runner.h"
#include "harness/suite.h"
#include "models/common/error.h"

namespace ditbench {
namespace {
namespace fs = std::filesystem;

class RunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ditbench_runner_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { std::system(("rm -rf '" + dir_.string() + "'").c_str()); }

  Suite suite(nlohmann::json axes, nlohmann::json extra = nlohmann::json::object()) {
    nlohmann::json doc = {{"name", "t"},
                          {"model", "hunyuan-video"},
                          {"preset", "hunyuan-video-tiny"},
                          {"weights", "random"},
                          {"dtype", "float32"},
                          {"device", "cpu"},
                          {"height", 32},
                          {"width", 32},
                          {"frames", 5},
                          {"steps", 4},
                          {"warmup", 0},
                          {"repeats", 2},
                          {"prompt", {{"tokens", 6}, {"valid", 4}}},
                          {"axes", axes}};
    for (auto& [k, v] : extra.items()) doc[k] = v;
    return parse_suite(doc, dir_ / "suite.json");
  }
  RunOptions options() {
    RunOptions o;
    o.out_dir = dir_ / "out";
    o.progress = false;
    return o;
  }
  fs::path dir_;
};

TEST_F(RunnerTest, WritesOneRecordPerConfigWithTimingsAndQuality) {
  auto s = suite({{"cache", {"none", "fbcache"}}, {"cache_threshold", {0.0, 0.5}}});
  auto summary = run_suite(s, options());
  EXPECT_EQ(summary.ok, 3);
  EXPECT_EQ(summary.failed, 0);
  auto records = read_results(dir_ / "out" / "results.jsonl");
  ASSERT_EQ(records.size(), 3u);
  EXPECT_TRUE(records[0].baseline);
  for (const auto& r : records) {
    ASSERT_EQ(r.status, RunStatus::kOk) << r.reason;
    ASSERT_TRUE(r.timings);
    EXPECT_EQ(r.timings->e2e.samples_s.size(), 2u);
    ASSERT_EQ(r.timings->steps_s.size(), 2u);
    EXPECT_EQ(r.timings->steps_s[0].size(), 4u);
    EXPECT_TRUE(r.timings->stages.count("denoise"));
    EXPECT_TRUE(r.timings->stages.count("vae_decode"));
    ASSERT_TRUE(r.quality);
    ASSERT_TRUE(r.cache);
    EXPECT_EQ(r.cache->computed_steps + r.cache->reused_steps, 4);
    ASSERT_TRUE(r.weights_note);
    EXPECT_NE(r.weights_note->find("random"), std::string::npos);
    EXPECT_FALSE(r.telemetry) << "GPU telemetry in a CPU run";
  }
  // The baseline against itself, and FBCache at threshold 0, are bit-identical to the baseline.
  EXPECT_TRUE(records[0].quality->identical);
  EXPECT_FALSE(records[0].quality->psnr_mean.has_value());
  const auto& thr0 = records[1];
  EXPECT_EQ(thr0.cache->reused_steps, 0);
  EXPECT_TRUE(thr0.quality->identical) << thr0.config_id;
  EXPECT_TRUE(fs::exists(dir_ / "out" / "report.md"));
  // The transformer's arithmetic per step, the same in every step, kept through the record.
  const auto& full = records[0].timings->step_flops;
  ASSERT_EQ(full.size(), 4u);
  EXPECT_GT(full[0], 0);
  for (double f : full) EXPECT_DOUBLE_EQ(f, full[0]);
  EXPECT_EQ(thr0.timings->step_flops, full);
}

// A reused step computes less: FBCache still runs the first block, so its FLOPs are a fraction
// of a computed step's (threshold 10 reuses every step it may).
TEST_F(RunnerTest, ReusedStepsCountOnlyTheArithmeticTheyRan) {
  auto s = suite({{"cache", {"none", "fbcache"}}, {"cache_threshold", {10.0}}}, {{"repeats", 1}});
  run_suite(s, options());
  auto records = read_results(dir_ / "out" / "results.jsonl");
  ASSERT_EQ(records.size(), 2u);
  const auto& full = records[0].timings->step_flops;
  const auto& reusing = records[1];
  ASSERT_EQ(reusing.status, RunStatus::kOk) << reusing.reason;
  ASSERT_GT(reusing.cache->reused_steps, 0);
  ASSERT_EQ(full.size(), 4u);
  ASSERT_EQ(reusing.timings->step_flops.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    if (reusing.cache->per_step.at(i).reused) {
      EXPECT_LT(reusing.timings->step_flops[i], full[i] / 2) << "step " << i;
      EXPECT_GT(reusing.timings->step_flops[i], 0) << "step " << i;
    } else {
      EXPECT_DOUBLE_EQ(reusing.timings->step_flops[i], full[i]) << "step " << i;
    }
  }
}

TEST_F(RunnerTest, TeaCacheAtThresholdZeroIsBitExactAndRecordsOutputChanges) {
  auto s = suite({{"cache", {"none", "teacache", "fbcache"}}, {"cache_threshold", {0.0}}});
  auto summary = run_suite(s, options());
  EXPECT_EQ(summary.ok, 3);
  auto records = read_results(dir_ / "out" / "results.jsonl");
  ASSERT_EQ(records.size(), 3u);
  for (const auto& r : records) {
    ASSERT_EQ(r.status, RunStatus::kOk) << r.reason;
    EXPECT_TRUE(r.quality->identical) << r.config_id;
    EXPECT_EQ(r.cache->reused_steps, 0) << r.config_id;
    // Every step computed, so every step after the first carries the output's relative change;
    // the three runs computed the same outputs, so they agree on it.
    ASSERT_EQ(r.cache->per_step.size(), 4u);
    EXPECT_FALSE(r.cache->per_step[0].output_change.has_value());
    for (int t = 1; t < 4; ++t) {
      ASSERT_TRUE(r.cache->per_step[t].output_change.has_value()) << r.config_id << " " << t;
      EXPECT_EQ(*r.cache->per_step[t].output_change, *records[0].cache->per_step[t].output_change);
    }
  }
  EXPECT_EQ(records[1].config_id.rfind("cache=teacache/thr=0/", 0), 0u) << records[1].config_id;
  ASSERT_TRUE(records[1].cache->coefficients);
  EXPECT_EQ(*records[1].cache->coefficients, "hunyuan-video");
}

TEST_F(RunnerTest, ResumeRunsOnlyWhatIsMissing) {
  auto s = suite({{"cache", {"none", "teacache"}}, {"cache_threshold", {0.1}}});
  run_suite(s, options());
  const auto path = dir_ / "out" / "results.jsonl";
  ASSERT_EQ(read_results(path).size(), 2u);
  // Drop the last line, as if the run had been killed during that config.
  std::ifstream in(path);
  std::string first;
  std::getline(in, first);
  in.close();
  std::ofstream(path, std::ios::trunc) << first << "\n";
  auto o = options();
  o.resume = true;
  auto summary = run_suite(s, o);
  EXPECT_EQ(summary.resumed, 1);
  EXPECT_EQ(summary.ok, 1);
  auto records = read_results(path);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1].config_id, records[1].config_id);
  // The resumed config is still scored against the baseline's stored frames.
  ASSERT_TRUE(records[1].quality);
}

TEST_F(RunnerTest, FilteredResumePassesAreScoredAgainstTheStoredBaseline) {
  // One run of the whole matrix, and the same matrix in two passes: the baseline alone, then
  // --resume with a filter that leaves the baseline out. The second pass's configs get the same
  // quality numbers as in the whole run.
  auto s = suite({{"cache", {"none", "teacache"}}, {"cache_threshold", {0.2}}});
  auto whole = options();
  whole.out_dir = dir_ / "whole";
  run_suite(s, whole);
  auto passes = options();
  passes.filter = "cache=none";
  run_suite(s, passes);
  passes.filter = "cache=teacache";
  passes.resume = true;
  EXPECT_EQ(run_suite(s, passes).ok, 1);
  auto expected = read_results(whole.out_dir / "results.jsonl");
  auto got = read_results(passes.out_dir / "results.jsonl");
  ASSERT_EQ(expected.size(), 2u);
  ASSERT_EQ(got.size(), 2u);
  ASSERT_TRUE(expected[1].quality);
  ASSERT_TRUE(got[1].quality) << "the filtered pass was not scored";
  EXPECT_EQ(got[1].quality->identical, expected[1].quality->identical);
  EXPECT_EQ(got[1].quality->psnr_mean, expected[1].quality->psnr_mean);
  EXPECT_EQ(got[1].quality->ssim_mean, expected[1].quality->ssim_mean);
}

TEST_F(RunnerTest, GraphsOnTheCpuAreARecordedSkipWithItsReason) {
  auto s = suite({{"graphs", {false, true}}});
  auto summary = run_suite(s, options());
  EXPECT_EQ(summary.ok, 1);
  EXPECT_EQ(summary.skipped, 1);
  auto records = read_results(dir_ / "out" / "results.jsonl");
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1].status, RunStatus::kSkipped);
  EXPECT_NE(records[1].reason.find("CUDA graph capture needs a CUDA device"), std::string::npos)
      << records[1].reason;
  // Under context parallelism the reason is the same: graphs serve 2 ranks where they serve one.
  auto cp = suite({{"gpus", {2}}, {"cp_mode", {"ulysses"}}, {"graphs", {true}}});
  auto o = options();
  o.out_dir = dir_ / "cp";
  EXPECT_EQ(run_suite(cp, o).skipped, 1);
  auto cp_records = read_results(dir_ / "cp" / "results.jsonl");
  ASSERT_EQ(cp_records.size(), 1u);
  EXPECT_EQ(cp_records[0].status, RunStatus::kSkipped);
  EXPECT_NE(cp_records[0].reason.find("CUDA graph capture needs a CUDA device"), std::string::npos)
      << cp_records[0].reason;
}

// A real allocation failure in the middle of one config (DITBENCH_INJECT_OOM asks the device's
// allocator for 1 PiB at step 1 of the FBCache config): that config is recorded as failed with the
// allocator's error, and the configs after it run and are scored. On a CUDA machine the same suite
// runs on the GPU, where the caching allocator raises its out-of-memory error.
TEST_F(RunnerTest, OutOfMemoryInOneConfigIsRecordedAndTheNextConfigRuns) {
  const bool cuda = at::hasCUDA();
  nlohmann::json extra = nlohmann::json::object();
  if (cuda) extra = {{"device", "cuda"}, {"dtype", "bfloat16"}};
  auto s = suite({{"cache", {"none", "fbcache", "teacache"}}, {"cache_threshold", {0.1}}}, extra);
  ::setenv("DITBENCH_INJECT_OOM", "cache=fbcache@1", 1);
  auto summary = run_suite(s, options());
  ::unsetenv("DITBENCH_INJECT_OOM");
  EXPECT_EQ(summary.ok, 2);
  EXPECT_EQ(summary.failed, 1);
  auto records = read_results(dir_ / "out" / "results.jsonl");
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[1].status, RunStatus::kFailed);
  EXPECT_NE(records[1].reason.find(cuda ? "out of memory" : "memory"), std::string::npos)
      << records[1].reason;
  ASSERT_EQ(records[2].status, RunStatus::kOk) << records[2].reason;
  EXPECT_TRUE(records[2].quality) << "the config after the failure is scored";
  ASSERT_TRUE(records[0].peak_bytes && records[2].peak_bytes);
  // Nothing of the failed config stays allocated: the next config peaks where the first did.
  EXPECT_LT(*records[2].peak_bytes, *records[0].peak_bytes * 2) << "memory of the failed config";
  // On a GPU, its clocks and power over the timed repeats (at least the first and last readings).
  if (cuda) {
    ASSERT_TRUE(records[0].telemetry);
    ASSERT_EQ(records[0].telemetry->devices.size(), 1u) << records[0].telemetry->note.value_or("");
    EXPECT_GE(records[0].telemetry->devices[0].samples, 2);
    EXPECT_GT(records[0].telemetry->devices[0].sm_clock_mhz_median, 0);
    EXPECT_GT(records[0].telemetry->devices[0].power_w_mean, 0);
  }
}

TEST_F(RunnerTest, BadOutOfMemoryInjectionIsAnInputError) {
  ::setenv("DITBENCH_INJECT_OOM", "cache=fbcache", 1);
  EXPECT_THROW(run_suite(suite({{"cache", {"none"}}}), options()), InputError);
  ::unsetenv("DITBENCH_INJECT_OOM");
}

TEST_F(RunnerTest, UnservableBackendIsARecordedSkipWithItsReason) {
  auto s = suite({{"attention", {"sdpa", "flash"}}});
  auto summary = run_suite(s, options());
  EXPECT_EQ(summary.skipped, 1);
  auto records = read_results(dir_ / "out" / "results.jsonl");
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1].status, RunStatus::kSkipped);
  EXPECT_NE(records[1].reason.find("flash"), std::string::npos) << records[1].reason;
}

TEST_F(RunnerTest, AFailingConfigIsRecordedAndTheSweepGoesOn) {
  // The config that times out is recorded as failed; the one after it still runs.
  auto s = suite({{"cache", {"none", "fbcache", "teacache"}}, {"cache_threshold", {0.1}}},
                 {{"timeout_s", 1e-9}});
  auto summary = run_suite(s, options());
  EXPECT_EQ(summary.failed, 3);
  auto records = read_results(dir_ / "out" / "results.jsonl");
  ASSERT_EQ(records.size(), 3u);
  for (const auto& r : records) {
    EXPECT_EQ(r.status, RunStatus::kFailed);
    EXPECT_NE(r.reason.find("timed out"), std::string::npos) << r.reason;
  }
}

}  // namespace
}  // namespace ditbench
