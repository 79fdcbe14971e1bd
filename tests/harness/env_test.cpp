// The environment block has every documented key, with CPU values on a CPU device.
#include "harness/env.h"

#include <gtest/gtest.h>

#include <cctype>
#include <iostream>

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

TEST(EnvironmentTest, NamesTheGpuOnACudaDevice) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  nlohmann::json env = capture_environment(at::Device(at::kCUDA, 0));
  ASSERT_TRUE(env["gpu"].is_string());
  EXPECT_FALSE(env["gpu"].get<std::string>().empty());
  ASSERT_TRUE(env["driver"].is_string());
  // "580.159.04" from the kernel module, or "cuda-driver-api 13.0" without /proc's file.
  const std::string driver = env["driver"].get<std::string>();
  EXPECT_TRUE(std::isdigit(static_cast<unsigned char>(driver[0])) ||
              driver.rfind("cuda-driver-api ", 0) == 0)
      << driver;
  EXPECT_GT(env["gpu_memory_bytes"].get<int64_t>(), 0);
  EXPECT_TRUE(env["compute_capability"].is_string());
  std::cout << "env: " << env.dump() << "\n";  // for the device log
}

}  // namespace
}  // namespace ditbench
