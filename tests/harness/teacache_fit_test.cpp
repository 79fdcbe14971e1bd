// `ditbench fit-teacache`: points from records (only TeaCache steps with a signal and an output
// change), a known polynomial recovered through the CLI, a fit from a real uncached tiny-shapes
// run, and bad inputs exiting 2.
#include "harness/teacache_fit.h"

#include <gtest/gtest.h>

#include "harness/cli_test_util.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "harness/cli.h"
#include "harness/runner.h"
#include "harness/suite.h"
#include "models/common/error.h"
#include "optimizations/cache/cache_policy.h"
#include "test_util.h"

namespace ditbench {
namespace {
namespace fs = std::filesystem;

const std::array<double, 5> kPoly = {300.0, -150.0, 25.0, 0.5, 0.01};

double poly(double x) {
  return (((kPoly[0] * x + kPoly[1]) * x + kPoly[2]) * x + kPoly[3]) * x + kPoly[4];
}

// A TeaCache run whose steps 1.. have signal x_t = x0 + dx t and, where the step and the one
// before it computed, output change poly(x_t). Steps in `reused` reuse (no output change there,
// nor on the step after).
ResultRecord teacache_run(const std::string& id, int steps, double x0, double dx,
                          std::vector<int> reused = {}) {
  ResultRecord r;
  r.suite = "fit";
  r.config_id = id;
  CacheRecord c;
  c.policy = "teacache";
  c.threshold = 0.0;
  for (int t = 0; t < steps; ++t) {
    CacheStepEntry e;
    e.step = t;
    e.reused = std::find(reused.begin(), reused.end(), t) != reused.end();
    const bool previous_reused = std::find(reused.begin(), reused.end(), t - 1) != reused.end();
    if (t > 0) e.signal = x0 + dx * t;
    if (t > 0 && !e.reused && !previous_reused) e.output_change = poly(*e.signal);
    (e.reused ? c.reused_steps : c.computed_steps)++;
    c.per_step.push_back(e);
  }
  r.cache = c;
  return r;
}

using testing::run_cli;

class TeacacheFitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ditbench_fit_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { std::system(("rm -rf '" + dir_.string() + "'").c_str()); }
  std::string write(const std::string& name, const std::vector<ResultRecord>& records) {
    ResultsWriter writer(dir_ / name);
    for (const auto& r : records) writer.append(r);
    return writer.path().string();
  }
  fs::path dir_;
};

TEST_F(TeacacheFitTest, PointsComeOnlyFromTeaCacheStepsWithBothChanges) {
  ResultRecord run = teacache_run("a", 8, 0.01, 0.02, {3});
  ResultRecord fb = teacache_run("fb", 8, 0.5, 0.1);
  fb.cache->policy = "fbcache";  // another signal: never fitted
  ResultRecord failed = teacache_run("failed", 8, 0.5, 0.1);
  failed.status = RunStatus::kFailed;
  const TeacacheFitPoints points = teacache_fit_points({run, fb, failed});
  // Steps 1, 2, 5, 6, 7: step 3 reused, step 4 follows it.
  EXPECT_EQ(points.rel_input,
            (std::vector<double>{0.01 + 0.02, 0.01 + 0.04, 0.01 + 0.1, 0.01 + 0.12, 0.01 + 0.14}));
  ASSERT_EQ(points.rel_output.size(), 5u);
  EXPECT_DOUBLE_EQ(points.rel_output[2], poly(0.11));
  EXPECT_EQ(points.records_used, 1);
}

TEST_F(TeacacheFitTest, KnownPolynomialComesBackThroughTheCli) {
  ResultRecord fb = teacache_run("fb", 8, 0.5, 0.1);
  fb.cache->policy = "fbcache";
  const std::string a = write("a", {teacache_run("a", 12, 0.01, 0.011, {4, 9}), fb});
  const std::string b = write("b", {teacache_run("b", 10, 0.005, 0.023)});
  const std::string out_file = (dir_ / "coefficients.json").string();
  std::string out;
  ASSERT_EQ(run_cli({"fit-teacache", a, b, "--out", out_file}, &out), 0) << out;
  std::istringstream lines(out);
  std::string coefficients_line, json_line;
  std::getline(lines, coefficients_line);
  std::getline(lines, json_line);
  // The first line is what a suite's teacache_coefficients accepts.
  const std::array<double, 5> fitted = parse_teacache_coefficients(coefficients_line);
  for (int k = 0; k < 5; ++k) EXPECT_NEAR(fitted[k], kPoly[k], 1e-6 * std::abs(kPoly[k])) << k;
  const auto summary = nlohmann::json::parse(json_line);
  // Run a: 11 steps with a signal, minus 4 and 5, 9 and 10; run b: 9.
  EXPECT_EQ(summary.at("points"), 7 + 9);
  EXPECT_EQ(summary.at("records"), 2);
  EXPECT_LT(summary.at("residual").get<double>(), 1e-16);
  std::ifstream file(out_file);
  const auto written = nlohmann::json::parse(file);
  EXPECT_EQ(written.at("teacache_coefficients"), coefficients_line);
}

TEST_F(TeacacheFitTest, BadInputsExit2) {
  EXPECT_EQ(run_cli({"fit-teacache", (dir_ / "missing.jsonl").string()}), 2);
  ResultRecord fb = teacache_run("fb", 8, 0.5, 0.1);
  fb.cache->policy = "fbcache";
  EXPECT_EQ(run_cli({"fit-teacache", write("fb-only", {fb})}), 2);
  // Four distinct signals cannot fix a 4th-order polynomial.
  EXPECT_EQ(run_cli({"fit-teacache", write("short", {teacache_run("s", 5, 0.01, 0.02)})}), 2);
  std::ofstream(dir_ / "garbage.jsonl") << "{\"schema\": \"ditbench.result/1\"}\nnot json\n";
  EXPECT_EQ(run_cli({"fit-teacache", (dir_ / "garbage.jsonl").string()}), 2);
  EXPECT_EQ(run_cli({"fit-teacache"}), 2);
}

TEST_F(TeacacheFitTest, RealUncachedTinyShapesRunYieldsAFit) {
  const std::string ckpt = testing::source_dir() + "/assets/tiny-shapes";
  nlohmann::json doc = {{"name", "fit-tiny-shapes"},
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
                        {"axes", {{"cache", {"teacache"}}, {"cache_threshold", {0.0}}}}};
  RunOptions options;
  options.out_dir = dir_ / "out";
  options.progress = false;
  run_suite(parse_suite(doc, dir_ / "suite.json"), options);
  const auto records = read_results(dir_ / "out" / "results.jsonl");
  ASSERT_EQ(records.size(), 1u);
  ASSERT_EQ(records[0].status, RunStatus::kOk) << records[0].reason;

  const TeacacheFitPoints points = teacache_fit_points(records);
  ASSERT_EQ(points.rel_input.size(), 9u);  // every pair of consecutive steps
  for (size_t i = 0; i < points.rel_output.size(); ++i) {
    EXPECT_TRUE(points.rel_input[i] > 0 && std::isfinite(points.rel_input[i])) << i;
    EXPECT_TRUE(points.rel_output[i] > 0 && std::isfinite(points.rel_output[i])) << i;
  }
  const TeacacheFit fit = fit_teacache_from_records(records);
  EXPECT_EQ(fit.points, 9u);
  for (double c : fit.coefficients) EXPECT_TRUE(std::isfinite(c));
  // Least squares over a basis holding the constants fits at least as well as the mean does.
  double mean = 0, spread = 0;
  for (double y : points.rel_output) mean += y / 9;
  for (double y : points.rel_output) spread += (y - mean) * (y - mean);
  EXPECT_LE(fit.residual, spread);
  std::string out;
  EXPECT_EQ(run_cli({"fit-teacache", (dir_ / "out" / "results.jsonl").string()}, &out), 0);
}

}  // namespace
}  // namespace ditbench
