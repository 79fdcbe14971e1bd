// A config that fails at run time is recorded as failed with its error, and the sweep goes on:
// the configs after it still run and are scored against the baseline. The failure provoked here
// is real and needs no hook: the frames artifact of one config cannot be written because a folder
// already sits at its path (as a full disk or a read-only output folder would fail it).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "cli/child_process.h"
#include "harness/record.h"

namespace ditbench {
namespace {
namespace fs = std::filesystem;
using ditbench::testing::ChildProcess;

TEST(FailureIsolation, AFailedConfigIsRecordedAndTheNextOneRuns) {
  const fs::path dir =
      fs::temp_directory_path() / ("ditbench_isolation_" + std::to_string(::getpid()));
  std::system(("rm -rf '" + dir.string() + "'").c_str());
  fs::create_directories(dir / "cwd");
  const nlohmann::json suite = {
      {"name", "isolation"},
      {"model", "hunyuan-video"},
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
      {"axes", {{"cache", {"none", "fbcache", "teacache"}}, {"cache_threshold", 0.1}}}};
  std::ofstream(dir / "suite.json") << suite.dump(1);
  // The artifact path of the fbcache config (its id with '/' and '=' made '_'), taken by a folder.
  const fs::path blocked =
      dir / "out" / "frames" / "cache_fbcache_thr_0.1_attn_sdpa_quant_none_gpus_1.safetensors";
  fs::create_directories(blocked);
  std::ofstream(blocked / "keep") << "occupied\n";

  ChildProcess child({"run", (dir / "suite.json").string(), "--out", (dir / "out").string()},
                     dir / "cwd");
  ASSERT_TRUE(child.wait(std::chrono::seconds(300)));
  const std::string err = child.stderr_text();
  EXPECT_EQ(child.exit_code(), 1) << "a sweep with a failed config exits 1\n" << err;

  const auto records = read_results(dir / "out" / "results.jsonl");
  ASSERT_EQ(records.size(), 3u) << err;
  EXPECT_EQ(records[0].config_id, "cache=none/attn=sdpa/quant=none/gpus=1");
  EXPECT_EQ(records[0].status, RunStatus::kOk) << records[0].reason;
  EXPECT_EQ(records[1].config_id, "cache=fbcache/thr=0.1/attn=sdpa/quant=none/gpus=1");
  EXPECT_EQ(records[1].status, RunStatus::kFailed);
  EXPECT_NE(records[1].reason.find(blocked.string()), std::string::npos) << records[1].reason;
  // The config after the failure ran and was scored against the baseline.
  EXPECT_EQ(records[2].config_id, "cache=teacache/thr=0.1/attn=sdpa/quant=none/gpus=1");
  EXPECT_EQ(records[2].status, RunStatus::kOk) << records[2].reason;
  ASSERT_TRUE(records[2].quality.has_value());
  EXPECT_EQ(records[2].quality->reference, "baseline");
  EXPECT_TRUE(fs::exists(dir / "out" / "report.md"));
  std::system(("rm -rf '" + dir.string() + "'").c_str());
}

}  // namespace
}  // namespace ditbench
