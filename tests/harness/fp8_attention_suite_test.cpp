// The cudnn_fp8 attention backend in suites: an accepted axis value, and on the CPU a recorded
// skip with the backend's own reason.
#include <gtest/gtest.h>

#include "harness/record.h"
#include "harness/runner.h"
#include "harness/suite.h"
#include "optimizations/attention/backends.h"
#include "parallel/tiny_cp_suite.h"
#include "test_util.h"

namespace ditbench {
namespace {

TEST(Fp8AttentionSuite, CpuRunRecordsCudnnFp8AsASkipWithItsReason) {
  testing::TempDir dir("ditbench_fp8_attention");
  auto suite = parse_suite(
      testing::tiny_cp_suite("fp8-attention", {{"attention", {"sdpa", "cudnn_fp8"}}}, 2),
      dir.path() / "suite.json");
  ASSERT_EQ(suite.axes.attention, (std::vector<std::string>{"sdpa", "cudnn_fp8"}));
  RunOptions options;
  options.out_dir = dir.path() / "out";
  options.progress = false;
  auto summary = run_suite(suite, options);
  EXPECT_EQ(summary.ok, 1);
  EXPECT_EQ(summary.skipped, 1);
  auto records = read_results(dir.path() / "out" / "results.jsonl");
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].status, RunStatus::kOk);
  EXPECT_EQ(records[1].status, RunStatus::kSkipped);
  EXPECT_EQ(records[1].reason, check_backend("cudnn_fp8", at::kCPU, at::kFloat, 16, true).reason);
  EXPECT_EQ(records[1].reason.rfind("cudnn_fp8 needs a CUDA", 0), 0u) << records[1].reason;
}

}  // namespace
}  // namespace ditbench
