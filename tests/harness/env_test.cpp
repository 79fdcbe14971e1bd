// The environment block has every documented key, with CPU values on a CPU device.
#include "harness/env.h"

#include <gtest/gtest.h>

#include "build_info.h"

namespace ditbench {
namespace {

TEST(EnvironmentTest, HasTheDocumentedKeys) {
  nlohmann::json env = capture_environment(at::kCPU);
  for (const char* key :
       {"gpu", "gpu_memory_bytes", "compute_capability", "driver", "cuda", "torch", "nccl", "git",
        "version", "host", "cpu", "threads", "deterministic", "build"})
    EXPECT_TRUE(env.contains(key)) << key;
  EXPECT_TRUE(env["gpu"].is_null()) << "a CPU device has no GPU";
  EXPECT_EQ(env["git"], build::kGitCommit);
  ASSERT_TRUE(env["torch"].is_string());
  EXPECT_EQ(env["torch"].get<std::string>().rfind("2.", 0), 0u) << env["torch"];
  EXPECT_GE(env["threads"].get<int>(), 1);
  EXPECT_TRUE(env["deterministic"].is_boolean());
  EXPECT_EQ(env["build"]["cuda"], build::kHasCuda);
  EXPECT_EQ(env["build"]["nccl"], build::kHasNccl);
  EXPECT_EQ(env["build"]["nvtx"], build::kHasNvtx);
  if (build::kHasCuda) EXPECT_TRUE(env["cuda"].is_string()) << "runtime version of a CUDA build";
  if (build::kHasNccl) EXPECT_TRUE(env["nccl"].is_string());
  EXPECT_TRUE(env["host"].is_string());
}

}  // namespace
}  // namespace ditbench
