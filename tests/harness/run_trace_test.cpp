// `ditbench run` writes a Chrome trace of each config's last timed repeat to DIR/traces/ and
// records its path in artifacts.trace.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "harness/record.h"
#include "harness/runner.h"
#include "harness/suite.h"

namespace ditbench {
namespace {
namespace fs = std::filesystem;

TEST(RunTrace, LastRepeatOfEachConfigIsTraced) {
  const fs::path dir =
      fs::temp_directory_path() / ("ditbench_run_trace_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  nlohmann::json doc = {{"name", "t"},
                        {"model", "hunyuan-video"},
                        {"preset", "hunyuan-video-tiny"},
                        {"weights", "random"},
                        {"dtype", "float32"},
                        {"device", "cpu"},
                        {"height", 32},
                        {"width", 32},
                        {"frames", 1},
                        {"steps", 3},
                        {"warmup", 0},
                        {"repeats", 2},
                        {"prompt", {{"tokens", 6}, {"valid", 4}}},
                        {"axes", {{"cache", {"none"}}}}};
  RunOptions options;
  options.out_dir = dir / "out";
  options.progress = false;
  ASSERT_EQ(run_suite(parse_suite(doc, dir / "suite.json"), options).ok, 1);

  auto records = read_results(options.out_dir / "results.jsonl");
  ASSERT_EQ(records.size(), 1u);
  const ResultRecord& r = records[0];
  ASSERT_TRUE(r.artifacts && r.artifacts->trace);
  EXPECT_EQ(*r.artifacts->trace, "traces/cache_none_attn_sdpa_quant_none_gpus_1.json");
  std::ifstream in(options.out_dir / *r.artifacts->trace);
  ASSERT_TRUE(in);
  const nlohmann::json trace = nlohmann::json::parse(in);
  int steps = 0;
  std::optional<double> e2e_us;
  for (const auto& e : trace.at("traceEvents")) {
    if (e.at("ph") != "X" || e.at("tid") != 1) continue;
    const std::string name = e.at("name");
    if (name.rfind("step ", 0) == 0) ++steps;
    if (name == "e2e") e2e_us = e.at("dur").get<double>();
  }
  EXPECT_EQ(steps, 3);
  // The e2e span is the last repeat's (CPU: host time is the recorded time).
  ASSERT_TRUE(e2e_us);
  EXPECT_NEAR(*e2e_us, r.timings->e2e.samples_s.back() * 1e6, 1e-3);
  std::system(("rm -rf '" + dir.string() + "'").c_str());
}

}  // namespace
}  // namespace ditbench
